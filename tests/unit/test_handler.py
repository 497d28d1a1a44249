"""JobHandler with the in-package fake runtime and a real batcher thread: every outcome is a JobResult."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from greenq.shared import job_types
from greenq.shared.envelope import Envelope
from greenq.shared.errors import InvalidJob
from greenq.shared.job_types import JobType
from greenq.shared.results import JobStatus
from greenq.shared.settings import Settings
from greenq.workers.edge.handler import JobHandler, WorkerIdentity
from greenq.workers.model.types import Generation, GenerationRequest
from greenq.workers.serving.batcher import Batcher, Requeue
from tests.fake_runtime import EchoRuntime

SETTINGS = Settings(model="echo", max_prompt_tokens=4096)
IDENTITY = WorkerIdentity(worker="test@host", device="cpu")


def body(job_type: JobType = "reply", **changes: Any) -> dict[str, Any]:
    envelope = Envelope(
        job_id="job-1",
        job_type=job_type,
        payload=dict(job_types.get(job_type).samples[0]),
        submitted_at=time.time() - 1.0,
        priority=5,
    )
    return {**envelope.encode(), **changes}


class Says(EchoRuntime):
    """Answers every request with the same text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def generate(self, requests: Sequence[GenerationRequest], on_text: object = None) -> list[Generation]:
        super().generate(requests)
        return [Generation(self._text, "stop", len(self._text)) for _ in requests]


@contextmanager
def running(runtime: EchoRuntime, settings: Settings = SETTINGS) -> Iterator[JobHandler]:
    """A handler over a started batcher, stopped afterwards."""
    batcher = Batcher({"echo": runtime}, settings.batch)
    batcher.start()
    try:
        yield JobHandler(settings, {"echo": runtime}, batcher, IDENTITY)
    finally:
        batcher.stop(timeout_s=5)


@pytest.fixture
def runtime() -> EchoRuntime:
    return EchoRuntime()


@pytest.fixture
def handler(runtime: EchoRuntime) -> Iterator[JobHandler]:
    with running(runtime) as h:
        yield h


@pytest.mark.parametrize("job_type", job_types.names())
def test_a_valid_job_is_computed_in_a_batch(handler: JobHandler, runtime: EchoRuntime, job_type: JobType) -> None:
    result = handler.handle(job_type, "job-1", body(job_type))
    assert result.status is JobStatus.succeeded
    assert (result.job_id, result.job_type, result.model) == ("job-1", job_type, "echo")
    assert (result.worker, result.device, result.batch_size) == ("test@host", "cpu", 1)
    assert result.text and result.generated_tokens == len(result.text)
    assert result.prompt_tokens > 0
    assert 0.9 < result.timings.queue_s < result.timings.end_to_end_s
    assert runtime.batches == [1]


def test_a_body_that_is_not_an_envelope_is_invalid(handler: JobHandler) -> None:
    with pytest.raises(InvalidJob) as caught:
        handler.handle("reply", "job-1", {"args": [], "kwargs": {}})
    assert any(field.startswith("envelope") for field, _ in caught.value.errors)


def test_an_envelope_for_another_type_is_invalid(handler: JobHandler) -> None:
    with pytest.raises(InvalidJob) as caught:
        handler.handle("strategy", "job-1", body("reply"))
    assert caught.value.errors[0][0] == "envelope.job_type"


def test_a_payload_that_breaks_its_schema_is_invalid(handler: JobHandler) -> None:
    with pytest.raises(InvalidJob):
        handler.handle("reply", "job-1", body(payload={"customer_message": ""}))


def test_a_deadline_passed_in_the_queue_expires_without_computing(handler: JobHandler, runtime: EchoRuntime) -> None:
    result = handler.handle("reply", "job-1", body(deadline_at=time.time() - 0.5))
    assert result.status is JobStatus.expired
    assert result.error == "deadline passed while queued"
    assert runtime.batches == []


def test_a_prompt_over_the_limit_fails_with_what_to_do(runtime: EchoRuntime) -> None:
    settings = Settings(model="echo", max_prompt_tokens=16)
    with running(runtime, settings) as handler:
        result = handler.handle("reply", "job-1", body())
        assert result.status is JobStatus.failed
        assert result.error is not None and "GREENQ_MAX_PROMPT_TOKENS" in result.error
    assert runtime.batches == []


def test_a_prompt_past_the_models_context_fails() -> None:
    with running(EchoRuntime(max_context_tokens=64)) as handler:
        result = handler.handle("reply", "job-1", body())
        assert result.status is JobStatus.failed
        assert result.error is not None and "context of 64 tokens" in result.error


def test_a_batch_that_raises_fails_the_job_with_a_redacted_reason() -> None:
    def explode(requests: Sequence[GenerationRequest]) -> None:
        raise RuntimeError("model broke, see redis://:secret@cache:6379/0")

    with running(EchoRuntime(fail_when=explode)) as handler:
        result = handler.handle("reply", "job-1", body())
    assert result.status is JobStatus.failed
    assert result.error is not None and result.error.startswith("RuntimeError: model broke")
    assert "secret" not in result.error


def test_a_stopping_batcher_hands_the_job_back(runtime: EchoRuntime) -> None:
    batcher = Batcher({"echo": runtime}, SETTINGS.batch)
    batcher.start()
    batcher.stop(timeout_s=5)
    handler = JobHandler(SETTINGS, {"echo": runtime}, batcher, IDENTITY)
    with pytest.raises(Requeue):
        handler.handle("reply", "job-1", body())


def test_a_description_with_an_unstated_green_claim_carries_a_warning() -> None:
    with running(Says("A lovely organic cotton shirt.")) as handler:
        payload = {**job_types.get("description").samples[0], "certifications": [], "materials": ["cotton"]}
        result = handler.handle("description", "job-1", body("description", payload=payload))
    assert result.status is JobStatus.succeeded
    assert result.warnings and "organic" in result.warnings[0]


@pytest.mark.parametrize(
    ("make", "status", "error"),
    [
        (lambda h: h.cancelled("reply", "job-1"), JobStatus.cancelled, "cancelled before a worker started it"),
        (lambda h: h.given_up("reply", "job-1", 3), JobStatus.failed, "gave up after 3 attempts"),
        (lambda h: h.crashed("reply", "job-1", KeyError("x")), JobStatus.failed, "internal error: KeyError('x')"),
        (lambda h: h.invalid("reply", "job-1", InvalidJob([("f", "bad")])), JobStatus.failed, "invalid job"),
    ],
)
def test_final_records_name_the_worker_and_the_reason(
    handler: JobHandler, make: Any, status: JobStatus, error: str
) -> None:
    result = make(handler)
    assert result.status is status
    assert result.error is not None and result.error.startswith(error)
    assert (result.worker, result.device) == ("test@host", "cpu")
    assert result.finished_at is not None


def test_a_deferred_job_counts_its_latency_from_its_release(handler: JobHandler) -> None:
    now = time.time()
    deferred = body(
        "description",
        submitted_at=now - 3600,
        released_at=now - 1.0,
        run_by=now + 3600,
        carbon_aware=True,
        intensity_at_submission_g_per_kwh=400.0,
    )
    result = handler.handle("description", "job-1", deferred)
    assert result.status is JobStatus.succeeded
    assert result.timings.deferred_s == pytest.approx(3599, abs=1)
    assert 0.9 < result.timings.queue_s < result.timings.end_to_end_s < 60  # from release, not submission
    assert result.intensity_at_submission_g_per_kwh == 400.0


def test_a_deferred_receipt_prices_the_same_energy_at_both_intensities() -> None:
    from greenq.shared.results import JobResult
    from greenq.workers.edge.handler import deferral_receipt
    from greenq.workers.energy.accountant import EnergyShare
    from greenq.workers.energy.carbon import co2e_grams

    envelope = Envelope.decode(body("description", released_at=time.time(), intensity_at_submission_g_per_kwh=400.0))
    energy = EnergyShare(36.0, co2e_grams(36.0, 100.0), "estimate", 100.0)
    ran = JobResult(job_id="job-1", job_type="description", status=JobStatus.succeeded, co2e_g=energy.co2e_g)
    receipt = deferral_receipt(ran, envelope, energy)
    assert receipt.co2e_avoided_g == pytest.approx(co2e_grams(36.0, 400.0) - co2e_grams(36.0, 100.0))
    dirtier = deferral_receipt(ran, envelope, EnergyShare(36.0, co2e_grams(36.0, 500.0), "estimate", 500.0))
    assert dirtier.co2e_avoided_g is not None and dirtier.co2e_avoided_g < 0
