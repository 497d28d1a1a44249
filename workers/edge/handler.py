"""One job's path through a worker: decode → validate → prompt → batch → result record.

Knows nothing of Celery: the task in `greenq.workers.edge.tasks` passes the raw message body in and
stores whatever record comes out. Every outcome, including bad input, is a `JobResult`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from greenq.shared import job_types
from greenq.shared.envelope import Envelope
from greenq.shared.errors import InvalidJob
from greenq.shared.job_types import JobType
from greenq.shared.jobs import parse_job
from greenq.shared.redact import redact_text
from greenq.shared.results import JobResult, JobStatus, Timings
from greenq.shared.settings import Settings
from greenq.workers.energy.accountant import EnergyShare
from greenq.workers.model.prompts import build_messages
from greenq.workers.model.types import GenerationRequest, ModelRuntime
from greenq.workers.serving.batcher import Batcher, BatchOutcome, JobExpiredInBatcher, LeaseLost, Requeue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerIdentity:
    worker: str  # Celery node name, e.g. "cuda0@host"
    device: str  # physical device, e.g. "cuda:0" or "cpu"


class JobHandler:
    def __init__(
        self,
        settings: Settings,
        runtimes: Mapping[str, ModelRuntime],
        batcher: Batcher,
        identity: WorkerIdentity,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._runtimes = runtimes
        self._batcher = batcher
        self._identity = identity
        self._clock = clock

    def decode(self, job_type: JobType, body: Any) -> tuple[Envelope, BaseModel]:
        """The envelope and validated job in a message body; raises InvalidJob."""
        envelope = Envelope.decode(body)
        if envelope.job_type != job_type:
            raise InvalidJob([("envelope.job_type", f"is {envelope.job_type} but the task is {job_type}")])
        return envelope, parse_job(job_type, envelope.payload, self._settings.max_payload_bytes)

    def invalid(self, job_type: JobType, job_id: str, error: InvalidJob) -> JobResult:
        return self._final(job_id, job_type, JobStatus.failed, error=f"invalid job: {error}")

    def crashed(self, job_type: JobType, job_id: str, exc: Exception) -> JobResult:
        """An error greenq did not expect (a bug, not the job's input): the job fails with it, once."""
        return self._final(job_id, job_type, JobStatus.failed, error=redact_text(f"internal error: {exc!r}"))

    def cancelled(self, job_type: JobType, job_id: str) -> JobResult:
        return self._final(job_id, job_type, JobStatus.cancelled, error="cancelled before a worker started it")

    def given_up(self, job_type: JobType, job_id: str, attempts: int) -> JobResult:
        return self._final(
            job_id,
            job_type,
            JobStatus.failed,
            error=f"gave up after {attempts} attempts: the worker died while computing it each time",
        )

    def unexpect(self, job_id: str) -> None:
        """The job will not reach the batcher (`Batcher.expect`)."""
        self._batcher.unexpect(job_id)

    def handle(self, job_type: JobType, job_id: str, body: Any, solo: bool = False) -> JobResult:
        """Compute one job. Raises InvalidJob for a bad body, Requeue if the worker is stopping, LeaseLost if
        its lease was lost before its batch started."""
        received_at = self._clock()
        envelope, job = self.decode(job_type, body)
        submitted_at = min(envelope.clock_from, received_at)  # a deferred job: its release
        queue_s = received_at - submitted_at
        if envelope.is_expired(received_at):
            return self._final(
                job_id,
                job_type,
                JobStatus.expired,
                error="deadline passed while queued",
                timings=Timings(queue_s=queue_s, end_to_end_s=queue_s),
            )

        model = self._settings.model_for(job_type)
        runtime = self._runtimes[model]
        generation = self._settings.generation[job_type]
        messages = build_messages(job_type, job, self._settings.prompt_templates_dir)
        prompt_ids = tuple(runtime.encode(runtime.render(messages)))
        problem = self._check_limits(len(prompt_ids), generation.max_new_tokens, runtime)
        if problem:
            return self._final(job_id, job_type, JobStatus.failed, error=problem, prompt_tokens=len(prompt_ids))

        request = GenerationRequest(prompt_ids, generation.max_new_tokens, generation)
        future = self._batcher.submit(
            job_id, job_type, model, request, envelope.priority, envelope.deadline_at, solo, submitted_at
        )
        try:
            outcome = future.result()
        except (Requeue, LeaseLost):  # not this job's outcome: the task hands it back, or waits for its holder
            raise
        except JobExpiredInBatcher as exc:
            now = self._clock()
            timings = Timings(queue_s=queue_s, batch_wait_s=now - received_at, end_to_end_s=now - submitted_at)
            return self._final(job_id, job_type, JobStatus.expired, error=str(exc), timings=timings)
        except Exception as exc:  # the batcher isolated it: this job fails alone (an expected outcome: one line)
            log.warning("job %s failed on its own: %s", job_id, redact_text(f"{type(exc).__name__}: {exc}"))
            return self._final(
                job_id,
                job_type,
                JobStatus.failed,
                error=redact_text(f"{type(exc).__name__}: {exc}"),
                prompt_tokens=len(prompt_ids),
                model=model,
            )
        result = self._succeeded(job_id, job_type, model, len(prompt_ids), outcome, submitted_at, received_at)
        if envelope.released_at is not None:
            result = deferral_receipt(result, envelope, outcome.energy)
        warnings = [warning for check in job_types.get(job_type).checks for warning in check(job, result.text)]
        return result.model_copy(update={"warnings": warnings}) if warnings else result

    def _check_limits(self, prompt_tokens: int, max_new_tokens: int, runtime: ModelRuntime) -> str | None:
        if prompt_tokens > self._settings.max_prompt_tokens:
            return (
                f"prompt is {prompt_tokens} tokens; the limit is {self._settings.max_prompt_tokens} "
                "(GREENQ_MAX_PROMPT_TOKENS): shorten the payload"
            )
        if prompt_tokens + max_new_tokens > runtime.max_context_tokens:
            return (
                f"prompt ({prompt_tokens}) + max new tokens ({max_new_tokens}) exceed the model's context of "
                f"{runtime.max_context_tokens} tokens"
            )
        return None

    def _succeeded(
        self,
        job_id: str,
        job_type: JobType,
        model: str,
        prompt_tokens: int,
        outcome: BatchOutcome,
        submitted_at: float,
        received_at: float,
    ) -> JobResult:
        timings = Timings(
            queue_s=received_at - submitted_at,
            batch_wait_s=max(0.0, outcome.started_at - received_at),
            compute_s=outcome.finished_at - outcome.started_at,
            end_to_end_s=outcome.finished_at - submitted_at,
            first_token_s=None if outcome.first_text_at is None else outcome.first_text_at - submitted_at,
        )
        energy = outcome.energy
        return JobResult(
            job_id=job_id,
            job_type=job_type,
            status=JobStatus.succeeded,
            energy_j=energy.energy_j if energy else None,
            co2e_g=energy.co2e_g if energy else None,
            energy_source=energy.source if energy else None,
            intensity_g_per_kwh=energy.intensity_g_per_kwh if energy else None,
            text=outcome.generation.text,
            finish_reason=outcome.generation.finish_reason,
            prompt_tokens=prompt_tokens,
            generated_tokens=outcome.generation.generated_tokens,
            model=model,
            worker=self._identity.worker,
            device=self._identity.device,
            batch_size=outcome.batch_size,
            timings=timings,
            finished_at=outcome.finished_at,
        )

    def _final(
        self,
        job_id: str,
        job_type: JobType,
        status: JobStatus,
        *,
        error: str,
        timings: Timings | None = None,
        prompt_tokens: int = 0,
        model: str | None = None,
    ) -> JobResult:
        return JobResult(
            job_id=job_id,
            job_type=job_type,
            status=status,
            error=error,
            prompt_tokens=prompt_tokens,
            model=model,
            worker=self._identity.worker,
            device=self._identity.device,
            timings=timings or Timings(),
            finished_at=self._clock(),
        )


def deferral_receipt(result: JobResult, envelope: Envelope, energy: EnergyShare | None) -> JobResult:
    """A deferred job's receipt: how long it waited, and the carbon its wait saved (or cost)."""
    deferred_s = max(0.0, (envelope.released_at or envelope.submitted_at) - envelope.submitted_at)
    update: dict[str, Any] = {"timings": result.timings.model_copy(update={"deferred_s": deferred_s})}
    then = envelope.intensity_at_submission_g_per_kwh
    if then is not None:
        update["intensity_at_submission_g_per_kwh"] = then
        if energy is not None:
            update["co2e_avoided_g"] = energy.co2e_at(then) - energy.co2e_g
    return result.model_copy(update=update)
