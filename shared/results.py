"""The result record stored for every job: text, token counts, where it ran, timings, energy."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Literal

from celery import states
from pydantic import BaseModel, ConfigDict, Field

from greenq.shared.errors import JobNotComputed
from greenq.shared.job_types import KnownJobType
from greenq.shared.redact import redact_text


class JobStatus(str, enum.Enum):
    succeeded = "succeeded"
    failed = "failed"
    expired = "expired"
    rejected = "rejected"  # never enqueued: the producer refused it
    cancelled = "cancelled"  # withdrawn before a worker started it

    @property
    def is_success(self) -> bool:
        return self is JobStatus.succeeded


class Timings(BaseModel):
    """Seconds spent in each stage; `end_to_end_s` runs from submission (a deferred job: its release) to the result."""

    model_config = ConfigDict(frozen=True)

    deferred_s: float = 0.0  # a deferred job: from submission to its release by the scheduler
    queue_s: float = 0.0
    batch_wait_s: float = 0.0
    compute_s: float = 0.0
    end_to_end_s: float = 0.0
    first_token_s: float | None = None  # from submission (or release) to its first decoded text; None: none


class JobResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    job_id: str
    job_type: KnownJobType | None  # None only when a broken message named no known type
    status: JobStatus
    text: str = ""
    finish_reason: Literal["stop", "length"] | None = None
    prompt_tokens: int = 0
    generated_tokens: int = 0
    model: str | None = None
    worker: str | None = None
    device: str | None = None
    batch_size: int = 0
    timings: Timings = Field(default_factory=Timings)
    finished_at: float | None = None  # Unix seconds when the result was made
    energy_j: float | None = None
    co2e_g: float | None = None
    energy_source: str | None = None
    intensity_g_per_kwh: float | None = None  # grid intensity when it ran
    # A deferred job: the intensity when it was submitted, and the carbon running then would have added.
    intensity_at_submission_g_per_kwh: float | None = None
    co2e_avoided_g: float | None = None  # negative when it ran on a dirtier grid than at submission
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)  # e.g. green claims the seller never stated

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def result_from_meta(job_id: str, meta: dict[str, Any]) -> JobResult:
    """A Celery result-backend record → greenq's result record."""
    status = meta.get("status")
    value = meta.get("result")
    if status == states.SUCCESS:
        return JobResult.model_validate(value)
    if status == states.FAILURE:
        # Celery hands back the exception rebuilt (get_many) or as its JSON form (raw meta).
        if isinstance(value, BaseException):
            name, args = type(value).__name__, list(value.args)
        elif isinstance(value, dict):
            name, args = str(value.get("exc_type", "error")), value.get("exc_message") or []
        else:
            name, args = "error", [value]
        if name == JobNotComputed.__name__ and args and isinstance(args[0], dict):
            return JobResult.model_validate(args[0])
        error = f"{name}: {', '.join(map(str, args))}"
    else:
        error = f"task ended in state {status}"
    return JobResult(job_id=job_id, job_type=None, status=JobStatus.failed, error=redact_text(error))


FINAL_STATES = frozenset({states.SUCCESS, states.FAILURE})  # Celery's states for a stored final result


def is_final(meta: Mapping[str, Any]) -> bool:
    """A job's stored meta says it is over: succeeded, failed, expired or cancelled."""
    return meta.get("status") in FINAL_STATES
