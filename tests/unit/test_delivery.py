"""Delivery terms are one model: the client, job files and the HTTP API refuse the same terms alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from greenq.producers.client import Client, JobSpec
from greenq.producers.gateway.schemas import BatchItem, SubmitRequest
from greenq.producers.jsonl import read_lines
from greenq.shared import job_types
from greenq.shared.delivery import RUN_BY_PROBLEM, DeliveryTerms
from greenq.shared.errors import InvalidJob
from greenq.shared.settings import Settings

REPLY = {"customer_message": "Where is my parcel?"}
BAD_TERMS: list[tuple[dict[str, Any], str, str]] = [
    ({"priority": 10}, "priority", "must be an integer from 0 (least urgent) to 9 (most urgent)"),
    ({"priority": "soon"}, "priority", "must be an integer from 0 (least urgent) to 9 (most urgent)"),
    ({"deadline_s": 0}, "deadline_s", "must be a positive number of seconds, at most 604800 (7 days)"),
    ({"deadline_s": 8 * 86400}, "deadline_s", "must be a positive number of seconds, at most 604800 (7 days)"),
    ({"idempotency_key": ""}, "idempotency_key", "must be a string of 1 to 200 characters"),
    ({"idempotency_key": "k" * 201}, "idempotency_key", "must be a string of 1 to 200 characters"),
    ({"run_by": 0}, "run_by", RUN_BY_PROBLEM),
    ({"run_by": 8 * 86400}, "run_by", RUN_BY_PROBLEM),
    ({"run_by": "tomorrow"}, "run_by", RUN_BY_PROBLEM),
    ({"run_by": "2026-12-01T06:00:00"}, "run_by", RUN_BY_PROBLEM),  # no zone
    ({"run_by": True}, "run_by", RUN_BY_PROBLEM),
    ({"carbon_aware": "maybe"}, "carbon_aware", "must be true or false"),
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


def test_run_by_defers_the_carbon_aware_types_only(client: Client) -> None:
    description = job_types.get("description").samples[0]
    deferred = client.prepare(JobSpec("description", dict(description), run_by=3600))
    assert deferred.carbon_aware and deferred.run_by == pytest.approx(deferred.submitted_at + 3600)
    objective_s = client.settings.latency_objective_s["description"]
    kept_s = objective_s + client.settings.scheduler_tick_s  # its objective, and a tick's lateness
    assert client.deferral_of(deferred) == pytest.approx(deferred.run_by - kept_s)
    reply = client.prepare(JobSpec("reply", REPLY, run_by=3600))
    assert not reply.carbon_aware and client.deferral_of(reply) is None  # off for replies unless asked
    asked = client.prepare(JobSpec("reply", REPLY, run_by=3600, carbon_aware=True))
    assert asked.carbon_aware and client.deferral_of(asked) is not None
    opted_out = client.prepare(JobSpec("description", dict(description), run_by=3600, carbon_aware=False))
    assert client.deferral_of(opted_out) is None
    near = client.prepare(JobSpec("description", dict(description), run_by=objective_s / 2))
    assert client.deferral_of(near) is None  # too close to its deadline to wait: goes to its queue now
    at = datetime.now(UTC) + timedelta(hours=2)
    assert client.prepare(JobSpec("description", dict(description), run_by=at)).run_by == pytest.approx(at.timestamp())


@pytest.mark.parametrize(
    ("terms", "field", "problem"),
    [
        ({"carbon_aware": True}, "carbon_aware", "needs a run_by: the time by which the job must have run"),
        ({"run_by": "2020-01-01T00:00:00Z"}, "run_by", "is in the past; give a later time, or seconds from now"),
        ({"run_by": "2099-01-01T00:00:00Z"}, "run_by", "is more than 604800 s (7 days) away"),
        (
            {"run_by": 7200, "deadline_s": 3600},
            "run_by",
            "is after the job's deadline (deadline_s); the job would expire before it ran",
        ),
    ],
)
def test_deferral_terms_that_cannot_hold_are_refused(
    client: Client, terms: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(InvalidJob) as raised:
        client.prepare(JobSpec("description", dict(job_types.get("description").samples[0]), **terms))
    assert raised.value.errors == [(field, problem)]
