"""Job schemas: limits, unknown fields, field-level errors; fuzzed with hypothesis."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenq.shared import job_types
from greenq.shared.envelope import Envelope
from greenq.shared.errors import InvalidJob
from greenq.shared.job_types import JobType
from greenq.shared.jobs import parse_job, parse_job_type


@pytest.mark.parametrize("job_type", list(job_types.names()))
def test_samples_are_valid(job_type: JobType) -> None:
    for payload in job_types.get(job_type).samples:
        assert parse_job(job_type, payload).schema_version == 1


def test_unknown_field_is_named() -> None:
    with pytest.raises(InvalidJob) as info:
        parse_job("reply", {"customer_message": "hi", "mood": "angry"})
    assert info.value.errors == [("payload.mood", "unknown field (not part of the schema; check the spelling)")]


def test_nested_errors_name_the_path() -> None:
    payload = {"customer_message": "hi", "order": {"order_id": "1", "status": "lost", "items": [{"sku": "a"}]}}
    with pytest.raises(InvalidJob) as info:
        parse_job("reply", payload)
    fields = {field for field, _ in info.value.errors}
    assert {"payload.order.status", "payload.order.items.0.title", "payload.order.items.0.quantity"} <= fields


def test_size_limits() -> None:
    with pytest.raises(InvalidJob, match="payload.title"):
        parse_job("description", {"sku": "a", "title": "x" * 201, "category": "c"})
    with pytest.raises(InvalidJob, match="limit is 1024"):
        parse_job(
            "description",
            {"sku": "a", "title": "t", "category": "c", "attributes": {"k": "v" * 2000}},
            max_payload_bytes=1024,
        )
    with pytest.raises(InvalidJob, match="payload.goals"):
        parse_job("strategy", {"period": "p", "metrics": {}, "goals": ["g"] * 11})


def test_languages_and_negative_numbers() -> None:
    assert parse_job("description", {"sku": "a", "title": "t", "category": "c", "language": "zh"})
    with pytest.raises(InvalidJob, match="payload.language"):
        parse_job("description", {"sku": "a", "title": "t", "category": "c", "language": "fr"})
    with pytest.raises(InvalidJob, match="payload.metrics.units_sold"):
        parse_job("strategy", {"period": "p", "metrics": {"units_sold": -1}})


def test_unknown_type_and_bad_json() -> None:
    with pytest.raises(InvalidJob, match="unknown job type 'poem'"):
        parse_job_type("poem")
    with pytest.raises(InvalidJob, match="not valid JSON"):
        parse_job("reply", "{nope")


def test_envelope_round_trip_and_errors() -> None:
    env = Envelope(job_id="j", job_type="reply", payload={"a": 1}, submitted_at=1.0, priority=8)
    assert Envelope.decode(json.loads(json.dumps(env.encode()))) == env
    with pytest.raises(InvalidJob) as info:
        Envelope.decode({"job_id": "j", "job_type": "reply", "payload": {}, "submitted_at": 1, "priority": 12})
    assert [f for f, _ in info.value.errors] == ["envelope.priority"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(job_type=st.sampled_from(list(job_types.names())), payload=json_values)
def test_fuzz_validation_never_crashes(job_type: JobType, payload: object) -> None:
    try:
        parse_job(job_type, payload)
    except InvalidJob as exc:
        assert exc.errors and all(field and problem for field, problem in exc.errors)
