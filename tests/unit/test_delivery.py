"""Delivery terms are one model: the client, job files and the HTTP API refuse the same terms alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from producers.client import Client, JobSpec
from producers.gateway.schemas import BatchItem, SubmitRequest
from producers.jsonl import read_lines
from shared.delivery import DeliveryTerms
from shared.errors import InvalidJob
from shared.settings import Settings

REPLY = {"customer_message": "Where is my parcel?"}
BAD_TERMS: list[tuple[dict[str, Any], str, str]] = [
    ({"priority": 10}, "priority", "must be an integer from 0 (least urgent) to 9 (most urgent)"),
    ({"priority": "soon"}, "priority", "must be an integer from 0 (least urgent) to 9 (most urgent)"),
    ({"deadline_s": 0}, "deadline_s", "must be a positive number of seconds, at most 604800 (7 days)"),
    ({"deadline_s": 8 * 86400}, "deadline_s", "must be a positive number of seconds, at most 604800 (7 days)"),
    ({"idempotency_key": ""}, "idempotency_key", "must be a string of 1 to 200 characters"),
    ({"idempotency_key": "k" * 201}, "idempotency_key", "must be a string of 1 to 200 characters"),
]


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    c = Client(Settings())
    yield c
    c.close()


@pytest.mark.parametrize(("terms", "field", "problem"), BAD_TERMS)
def test_each_entry_point_refuses_the_same_terms_alike(
    client: Client, terms: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(InvalidJob) as raised:
        DeliveryTerms.parse(terms)
    assert raised.value.errors == [(field, problem)]

    with pytest.raises(InvalidJob) as raised:
        client.prepare(JobSpec("reply", REPLY, **terms))
    assert raised.value.errors == [(field, problem)]

    (line,) = read_lines([json.dumps({"job": REPLY, **terms})], "reply")
    assert line.error is not None and line.error.errors == [(field, problem)]

    for model, body in ((SubmitRequest, {"job": REPLY}), (BatchItem, {"type": "reply", "job": REPLY})):
        with pytest.raises(ValidationError) as invalid:
            model.model_validate({**body, **terms})
        assert [(e["loc"], e["msg"]) for e in invalid.value.errors()] == [((field,), problem)]


def test_good_terms_reach_the_envelope(client: Client) -> None:
    envelope = client.prepare(JobSpec("reply", REPLY, idempotency_key="t-1", priority=0, deadline_s=7 * 86400))
    assert (envelope.priority, envelope.idempotency_key) == (0, "t-1")
    assert envelope.deadline_at == pytest.approx(envelope.submitted_at + 7 * 86400)
    assert client.prepare(JobSpec("strategy", {"period": "p", "metrics": {}})).priority == 2  # the type's default
    (line,) = read_lines([json.dumps({"job": REPLY, "priority": 9, "deadline_s": 30})], "reply")
    assert line.spec is not None and (line.spec.priority, line.spec.deadline_s) == (9, 30.0)
