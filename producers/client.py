"""The Python client: submit jobs, wait for results, stream thousands of them.

>>> from greenq.producers import Client
>>> client = Client()                      # settings from GREENQ_* variables
>>> job_id = client.submit("reply", {"customer_message": "Where is my parcel?"})
>>> client.result(job_id, timeout_s=60).text
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import redis
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu.exceptions import KombuError, OperationalError

from greenq.producers.backoff import call_backend
from greenq.producers.idempotency import (
    PENDING_TTL_S,
    IdempotencyStore,
    Reservation,
    ReservationState,
    ReservationTicket,
)
from greenq.shared import job_types
from greenq.shared.celery_app import make_celery, send_job
from greenq.shared.deferral import DeferredJob, DeferredStore, release_by_s
from greenq.shared.delivery import MAX_DEADLINE_S, DeliveryTerms
from greenq.shared.envelope import Envelope
from greenq.shared.errors import (
    BatchBrokerUnavailable,
    BatchIdempotencyConflict,
    BrokerUnavailable,
    ConfigError,
    GreenqError,
    IdempotencyConflict,
    InvalidJob,
    ResultBackendUnavailable,
    ResultTimeout,
)
from greenq.shared.job_types import JobType
from greenq.shared.jobs import parse_job, parse_job_type
from greenq.shared.queues import is_redis_url
from greenq.shared.redact import redact_text, redact_url
from greenq.shared.redis_client import redis_client
from greenq.shared.results import JobResult, is_final, result_from_meta
from greenq.shared.settings import Settings
from greenq.shared.token_stream import FIRST_ID, StreamedText, TokenStreams

RESULT_POLL_S = 0.05
STREAM_BLOCK_S = 0.5  # how long one read of a token stream waits before the result is checked
PUBLISH_BATCH_SIZE = 500
_NO_AUTO_FLUSH = 1 << 30  # kombu's batch limit counts Redis commands; publish ends each batch itself

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class JobSpec:
    """One job to submit: its type and payload, and optional delivery terms (checked by `DeliveryTerms`)."""

    job_type: JobType
    payload: dict[str, Any]
    idempotency_key: str | None = None
    priority: int | None = None  # 0..9, 9 most urgent; None: the job type's default
    deadline_s: float | None = None  # seconds from submission after which it is not computed
    run_by: float | datetime | None = None  # seconds from submission, or a time: a deferrable job
    carbon_aware: bool | None = None  # None: the job type's default when run_by is given


class Client:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.app = make_celery(self.settings, name="greenq-producer", producer=True)
        self._idempotency: IdempotencyStore | None = None
        self._redis: Any = None

    def close(self) -> None:
        self.app.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- submitting ---------------------------------------------------------------------

    def submit(
        self,
        job_type: JobType,
        payload: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        priority: int | None = None,
        deadline_s: float | None = None,
        deadline: datetime | None = None,
        run_by: float | datetime | None = None,
        carbon_aware: bool | None = None,
    ) -> str:
        """Validate and enqueue one job; returns its id at once. Raises InvalidJob with field errors.

        With `run_by` (seconds from now, or an aware datetime), a carbon-aware job waits in Redis for
        the cleanest grid hours before it (see `greenq scheduler`) instead of going to its queue now.
        """
        if deadline is not None:
            deadline_s = deadline.timestamp() - time.time()
        spec = JobSpec(job_type, payload, idempotency_key, priority, deadline_s, run_by, carbon_aware)
        return self.publish([self.prepare(spec)], pipelined=False)[0]

    def submit_many(self, jobs: Iterable[JobSpec], progress: bool = False) -> list[str]:
        """Validate every job first, then enqueue them all through one pipelined connection."""
        envelopes = [self.prepare(spec) for spec in jobs]
        return self.publish(envelopes, progress=progress)

    def prepare(self, spec: JobSpec) -> Envelope:
        """Validate a spec into the envelope that goes on the wire (nothing is sent). Raises InvalidJob."""
        job_type = parse_job_type(spec.job_type)
        job = parse_job(job_type, spec.payload, self.settings.max_payload_bytes)
        terms = DeliveryTerms.parse(
            {
                "priority": spec.priority,
                "deadline_s": spec.deadline_s,
                "idempotency_key": spec.idempotency_key,
                "run_by": spec.run_by,
                "carbon_aware": spec.carbon_aware,
            }
        )
        now = time.time()
        deadline_at = None if terms.deadline_s is None else now + terms.deadline_s
        run_by = terms.run_by_at(now)
        carbon_aware = job_types.get(job_type).carbon_aware if terms.carbon_aware is None else terms.carbon_aware
        problems = _deferral_problems(now, run_by, deadline_at, carbon_aware and terms.carbon_aware is not None)
        if problems:
            raise InvalidJob(problems)
        return Envelope.decode(
            {
                "job_id": "pending",
                "job_type": job_type,
                "payload": job.model_dump(mode="json"),
                "submitted_at": now,
                "deadline_at": deadline_at,
                "priority": self.settings.priority[job_type] if terms.priority is None else terms.priority,
                "idempotency_key": terms.idempotency_key,
                "run_by": run_by,
                "carbon_aware": carbon_aware and run_by is not None,
            }
        )

    def deferral_of(self, envelope: Envelope, now: float | None = None) -> float | None:
        """The latest release time if this envelope waits for the scheduler; None if it goes to its queue now."""
        # Released jobs are due within their objective, and a release can come up to a tick late.
        kept_s = self.settings.latency_objective_s[envelope.job_type] + self.settings.scheduler_tick_s
        release_by = release_by_s(envelope, kept_s)
        return release_by if release_by is not None and release_by > (time.time() if now is None else now) else None

    def publish(
        self, envelopes: list[Envelope], progress: bool = False, pipelined: bool = True, known: set[int] | None = None
    ) -> list[str]:
        """Enqueue prepared envelopes; returns their job ids in the same order.

        `known`, if given, gets the index of each job whose idempotency key already named an enqueued job
        (nothing was pushed for it), so a caller can leave what it recorded for that job as it is.

        `pipelined` sends up to PUBLISH_BATCH_SIZE messages per Redis round trip. A job counts as enqueued,
        and its idempotency key names it, only once the flush that carried it has returned. A conflicting
        key fails its own job only; a broker failure fails that flush and every later job. Then the error
        is a NotAllEnqueued (BatchIdempotencyConflict or BatchBrokerUnavailable) that says which jobs
        were enqueued; a single job raises its own IdempotencyConflict or BrokerUnavailable.
        """
        run = _Publication(_progress(len(envelopes), "submitting", progress), known=set() if known is None else known)
        try:
            with self.app.producer_or_acquire() as producer:
                # A transport that cannot batch sends each message as it is published.
                run.buffered = pipelined and producer.supports_batch_publish
                with producer.batch(_NO_AUTO_FLUSH) if pipelined else nullcontext() as batch:
                    for index, envelope in enumerate(envelopes):
                        self._publish_one(index, envelope, producer, batch, run)
                        if len(run.unflushed) >= (PUBLISH_BATCH_SIZE if pipelined else 1):
                            self._flush(batch, run)
                    self._flush(batch, run)
        except ResultBackendUnavailable as exc:  # named for the backend, after the same back-off as a push
            run.failed.update((i, exc) for i in range(len(envelopes)) if i not in run.enqueued and i not in run.failed)
        except (KombuError, redis.RedisError, OSError) as exc:
            reason = BrokerUnavailable(
                f"could not reach the broker at {redact_url(self.settings.broker_url)} after retries: "
                f"{redact_text(str(exc))}"
            )
            run.failed.update(
                (i, reason) for i in range(len(envelopes)) if i not in run.enqueued and i not in run.failed
            )
        finally:
            # Not confirmed: their keys must not name them. One whose message may be on the broker (its
            # flush raised: perhaps only the reply was lost) keeps its claim, stale, so a retry with the
            # same payload pushes it under the same job id; a job computed twice would be worse.
            in_doubt = [claim for index, _, claim in run.unflushed if claim is not None and index in run.sent]
            unsent = [claim for index, _, claim in run.unflushed if claim is not None and index not in run.sent]
            if in_doubt:
                self._settle(in_doubt, abandon=True)
            if unsent:
                self._settle(unsent, abandon=False)
            run.bar.close()
        return run.job_ids(len(envelopes))

    def _publish_one(self, index: int, envelope: Envelope, producer: Any, batch: Any, run: _Publication) -> None:
        job_id, claim = _new_job_id(), None
        release_by = self.deferral_of(envelope)
        if envelope.idempotency_key is not None:
            claim = self._claim(index, envelope, batch, run)
            if claim is None:
                return
            job_id = claim.job_id
            if release_by is not None and envelope.run_by is not None:  # the key names the job until it has run
                claim = replace(claim, extra_ttl_s=max(0, int(envelope.run_by - time.time())))
        run.unflushed.append((index, job_id, claim))
        envelope = envelope.model_copy(update={"job_id": job_id})
        if release_by is None:
            if not run.buffered:
                run.sent.add(index)
            send_job(self.app, envelope, self.settings.broker_url, producer)
        else:
            run.deferred.append(DeferredJob(envelope, release_by))

    def _claim(self, index: int, envelope: Envelope, batch: Any, run: _Publication) -> Reservation | None:
        """Claim the job's key for this caller to push; None (and the outcome recorded) when not to push it."""
        assert envelope.idempotency_key is not None
        store = self._idempotency_store()
        ticket = ReservationTicket.new()  # one for all tries: a retry after a lost reply finds its own claim
        while True:
            try:
                claim = self._on_backend(
                    partial(store.reserve, envelope.job_type, envelope.idempotency_key, envelope.payload, ticket)
                )
            except IdempotencyConflict as exc:
                run.failed[index] = exc
                return None
            if claim.state is ReservationState.MINE:
                return claim
            if claim.state is ReservationState.ENQUEUED:
                run.enqueued[index] = claim.job_id
                run.known.add(index)
                return None
            # Another producer, or this batch, is pushing it. Flush first: two producers that each wait
            # while holding pending claims could wait on each other.
            self._flush(batch, run)
            self._on_backend(partial(store.wait_settled, claim))

    def _flush(self, batch: Any, run: _Publication) -> None:
        """Send what is buffered; only then do those jobs count as enqueued, and their keys name them."""
        if run.deferred:
            store = DeferredStore(self._backend_redis())
            now_g_per_kwh = self._on_backend(store.carbon_now)
            jobs = [replace(job, submitted_g_per_kwh=now_g_per_kwh) for job in run.deferred]
            deferred_ids = {job.envelope.job_id for job in jobs}
            run.sent.update(index for index, job_id, _ in run.unflushed if job_id in deferred_ids)
            self._on_backend(lambda: store.defer(jobs, self.settings.scheduler_slot_s))
            run.deferred.clear()
        if batch is not None:
            run.sent.update(index for index, _, _ in run.unflushed)
            batch.flush()
        claims = [claim for _, _, claim in run.unflushed if claim is not None]
        if claims:
            keys = self._idempotency_store()
            try:
                self._on_backend(partial(keys.confirm, claims))
            except ResultBackendUnavailable as exc:  # the jobs are enqueued all the same
                log.warning(
                    "could not confirm %d idempotency keys (a retry takes them over after %d s, same job ids): %s",
                    len(claims),
                    PENDING_TTL_S,
                    exc,
                )
        run.enqueued.update((index, job_id) for index, job_id, _ in run.unflushed)
        run.bar.update(len(run.unflushed))
        run.unflushed.clear()
        run.sent.clear()

    def _settle(self, claims: list[Reservation], abandon: bool) -> None:
        """Release claims of jobs not pushed, or abandon (mark stale) those whose push may have arrived."""
        store = self._idempotency_store()
        try:
            self._on_backend(partial(store.abandon if abandon else store.release, claims))
        except ResultBackendUnavailable as exc:  # a retry takes them over once they are stale
            log.warning(
                "could not %s %d idempotency keys (a retry takes them over after %d s): %s",
                "abandon" if abandon else "release",
                len(claims),
                PENDING_TTL_S,
                exc,
            )

    def _on_backend(self, call: Callable[[], T]) -> T:
        """A call to the result backend, retried like a push; raises ResultBackendUnavailable naming it."""
        return call_backend(call, self.settings.backend_url)

    def _idempotency_store(self) -> IdempotencyStore:
        if self._idempotency is None:
            self._idempotency = IdempotencyStore(self._backend_redis(), self.settings.result_ttl_s)
        return self._idempotency

    def _backend_redis(self) -> Any:
        """The result backend's Redis: idempotency keys and deferred jobs live there."""
        if self._redis is None:
            if not is_redis_url(self.settings.backend_url):
                raise ConfigError(
                    "idempotency keys and deferred jobs need a Redis result backend (GREENQ_RESULT_BACKEND_URL)"
                )
            self._redis = redis_client(
                self.settings.backend_url, self.settings.tls_ca_file, sentinel_master=self.settings.sentinel_master
            )
        return self._redis

    # -- results ------------------------------------------------------------------------

    def result(self, job_id: str, timeout_s: float | None = None) -> JobResult:
        """Wait for one job's final result. Raises ResultTimeout."""
        for result in self.as_completed([job_id], timeout_s=timeout_s):
            return result
        raise ResultTimeout(f"job {job_id} has no result")  # unreachable: as_completed raises first

    def stream(self, job_id: str, timeout_s: float | None = None) -> Iterator[str | JobResult]:
        """Yield the job's text as it decodes, a piece at a time, then its final `JobResult`, always last.

        The pieces add up to the result's text (for a job that fails, to what it decoded before
        failing, if anything). A job that finished before the call replays from its start; one still
        queued or deferred is waited for. Raises ResultTimeout after `timeout_s` in all.

        >>> for piece in client.stream(job_id, timeout_s=60):
        ...     print(piece if isinstance(piece, str) else "", end="", flush=True)
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        streams = TokenStreams(self._backend_redis(), self.settings.stream.max_entries, self.settings.result_ttl_s)
        shown = StreamedText()
        after = FIRST_ID
        while not shown.ended:
            left_s = None if deadline is None else deadline - time.monotonic()
            if left_s is not None and left_s <= 0:
                raise ResultTimeout(f"job {job_id} has no result after {timeout_s} s")
            block_s = STREAM_BLOCK_S if left_s is None else min(STREAM_BLOCK_S, left_s)
            entries = streams.read(job_id, after, block_ms=max(1, int(block_s * 1000)))
            for entry in entries:
                after = entry.entry_id
                if piece := shown.add(entry):
                    yield piece
            if not entries and is_final(self.app.backend.get_task_meta(job_id, cache=False)):
                break  # it streamed nothing more (streaming off, the stream expired, or it never ran)
        left_s = None if deadline is None else max(0.0, deadline - time.monotonic())
        result = self.result(job_id, timeout_s=left_s)
        if tail := shown.finish(result.text or ""):
            yield tail
        yield result

    def as_completed(
        self, job_ids: Iterable[str], timeout_s: float | None = None, progress: bool = False
    ) -> Iterator[JobResult]:
        """Yield each job's final result as soon as it is stored, in completion order."""
        ids = list(dict.fromkeys(job_ids))
        bar = _progress(len(ids), "completed", progress)
        remaining = set(ids)
        try:
            for job_id, meta in self.app.backend.get_many(ids, timeout=timeout_s, interval=RESULT_POLL_S):
                remaining.discard(job_id)
                bar.update(1)
                yield result_from_meta(job_id, meta)
        except CeleryTimeout:
            raise ResultTimeout(
                f"{len(remaining)} of {len(ids)} jobs had no result after {timeout_s} s "
                "(are workers running for their queues?)"
            ) from None
        except (OperationalError, redis.ConnectionError) as exc:
            raise BrokerUnavailable(f"result backend unreachable: {redact_text(str(exc))}") from None
        finally:
            bar.close()


def _deferral_problems(
    now: float, run_by: float | None, deadline_at: float | None, carbon_aware_asked: bool
) -> list[tuple[str, str]]:
    if run_by is None:
        asked = [("carbon_aware", "needs a run_by: the time by which the job must have run")]
        return asked if carbon_aware_asked else []
    if run_by <= now:
        return [("run_by", "is in the past; give a later time, or seconds from now")]
    if run_by - now > MAX_DEADLINE_S:
        return [("run_by", f"is more than {MAX_DEADLINE_S} s (7 days) away")]
    if deadline_at is not None and deadline_at < run_by:
        return [("run_by", "is after the job's deadline (deadline_s); the job would expire before it ran")]
    return []


def _new_job_id() -> str:
    return str(uuid.uuid4())


@dataclass
class _Publication:
    """One `publish` call: jobs enqueued, jobs failed and why, and jobs sent since the last flush."""

    bar: Any
    enqueued: dict[int, str] = field(default_factory=dict)
    failed: dict[int, GreenqError] = field(default_factory=dict)
    unflushed: list[tuple[int, str, Reservation | None]] = field(default_factory=list)
    sent: set[int] = field(default_factory=set)  # of `unflushed`, those that may have reached the broker
    buffered: bool = False  # messages wait in a batch for the flush (else each is sent as it is published)
    deferred: list[DeferredJob] = field(default_factory=list)  # of `unflushed`, those waiting for the scheduler
    known: set[int] = field(default_factory=set)  # of `enqueued`, those a key already named: nothing pushed

    def job_ids(self, total: int) -> list[str]:
        if not self.failed:
            return [self.enqueued[index] for index in range(total)]
        if total == 1:
            raise self.failed[0]
        broken = any(isinstance(reason, BrokerUnavailable) for reason in self.failed.values())
        error = BatchBrokerUnavailable if broken else BatchIdempotencyConflict
        raise error(total, self.enqueued, self.failed)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, unit: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit=" jobs", desc=unit, leave=False)
