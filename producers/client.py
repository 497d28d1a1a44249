"""The Python client: submit jobs, wait for results, stream thousands of them.

>>> from producers import Client
>>> client = Client()                      # settings from GREENQ_* variables
>>> job_id = client.submit("reply", {"customer_message": "Where is my parcel?"})
>>> client.result(job_id, timeout_s=60).text
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu.exceptions import KombuError, OperationalError

from producers.idempotency import IdempotencyStore
from shared.celery_app import make_celery
from shared.envelope import Envelope
from shared.errors import BrokerUnavailable, ConfigError, ResultTimeout
from shared.jobs import JobType, parse_job, parse_job_type
from shared.queues import broker_priority, is_redis_url, queue_name, task_name
from shared.redact import redact_text, redact_url
from shared.redis_client import redis_client
from shared.results import JobResult, result_from_meta
from shared.settings import Settings

PUBLISH_RETRY_POLICY = {"max_retries": 4, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}
RESULT_POLL_S = 0.05
PUBLISH_BATCH_SIZE = 500


@dataclass(frozen=True)
class JobSpec:
    """One job to submit: its type and payload, and optional delivery terms."""

    job_type: JobType | str
    payload: dict[str, Any]
    idempotency_key: str | None = None
    priority: int | None = None  # 0..9, 9 most urgent; None: the job type's default
    deadline_s: float | None = None  # seconds from submission after which it is not computed


class Client:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.app = make_celery(self.settings, name="greenq-producer", producer=True)
        self._idempotency: IdempotencyStore | None = None

    def close(self) -> None:
        self.app.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- submitting ---------------------------------------------------------------------

    def submit(
        self,
        job_type: JobType | str,
        payload: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        priority: int | None = None,
        deadline_s: float | None = None,
        deadline: datetime | None = None,
    ) -> str:
        """Validate and enqueue one job; returns its id at once. Raises InvalidJob with field errors."""
        if deadline is not None:
            deadline_s = deadline.timestamp() - time.time()
        spec = JobSpec(job_type, payload, idempotency_key, priority, deadline_s)
        return self.publish([self.prepare(spec)], pipelined=False)[0]

    def submit_many(self, jobs: Iterable[JobSpec], progress: bool = False) -> list[str]:
        """Validate every job first, then enqueue them all through one pipelined connection."""
        envelopes = [self.prepare(spec) for spec in jobs]
        return self.publish(envelopes, progress=progress)

    def prepare(self, spec: JobSpec) -> Envelope:
        """Validate a spec into the envelope that goes on the wire (nothing is sent)."""
        job_type = parse_job_type(spec.job_type.value if isinstance(spec.job_type, JobType) else spec.job_type)
        job = parse_job(job_type, spec.payload, self.settings.max_payload_bytes)
        payload = job.model_dump(mode="json")
        now = time.time()
        priority = self.settings.priority[job_type] if spec.priority is None else spec.priority
        return Envelope.decode(
            {
                "job_id": "pending",
                "job_type": job_type.value,
                "payload": payload,
                "submitted_at": now,
                "deadline_at": None if spec.deadline_s is None else now + spec.deadline_s,
                "priority": priority,
                "idempotency_key": spec.idempotency_key,
            }
        )

    def publish(self, envelopes: list[Envelope], progress: bool = False, pipelined: bool = True) -> list[str]:
        """Enqueue prepared envelopes; returns their job ids in the same order.

        `pipelined` sends up to PUBLISH_BATCH_SIZE messages per Redis round trip.
        """
        job_ids: list[str] = []
        bar = _progress(len(envelopes), "submitting", progress)
        try:
            with self.app.producer_or_acquire() as producer:
                with producer.batch(PUBLISH_BATCH_SIZE) if pipelined else nullcontext():
                    for envelope in envelopes:
                        job_ids.append(self._publish_one(envelope, producer))
                        bar.update(1)
        except (KombuError, redis.RedisError, OSError) as exc:
            raise BrokerUnavailable(
                f"could not reach the broker at {redact_url(self.settings.broker_url)} after retries: "
                f"{redact_text(str(exc))}. {len(job_ids)} of {len(envelopes)} jobs were enqueued before it failed."
            ) from None
        finally:
            bar.close()
        return job_ids

    def _publish_one(self, envelope: Envelope, producer: Any) -> str:
        job_type = envelope.job_type
        key = envelope.idempotency_key
        if key is not None:
            job_id, must_send = self._idempotency_store().claim(job_type, key, envelope.payload)
            if not must_send:
                return job_id
        else:
            job_id = _new_job_id()
        body = envelope.model_copy(update={"job_id": job_id}).encode()
        try:
            self.app.send_task(
                task_name(job_type),
                args=[body],
                task_id=job_id,
                queue=queue_name(job_type),
                priority=broker_priority(envelope.priority, self.settings.broker_url),
                producer=producer,
                retry=True,
                retry_policy=PUBLISH_RETRY_POLICY,
            )
        except Exception:
            if key is not None:
                self._idempotency_store().release(job_type, key)
            raise
        return job_id

    def _idempotency_store(self) -> IdempotencyStore:
        if self._idempotency is None:
            if not is_redis_url(self.settings.backend_url):
                raise ConfigError("idempotency keys need a Redis result backend (GREENQ_RESULT_BACKEND_URL)")
            client = redis_client(
                self.settings.backend_url, self.settings.tls_ca_file, sentinel_master=self.settings.sentinel_master
            )
            self._idempotency = IdempotencyStore(client, self.settings.result_ttl_s)
        return self._idempotency

    # -- results ------------------------------------------------------------------------

    def result(self, job_id: str, timeout_s: float | None = None) -> JobResult:
        """Wait for one job's final result. Raises ResultTimeout."""
        for result in self.as_completed([job_id], timeout_s=timeout_s):
            return result
        raise ResultTimeout(f"job {job_id} has no result")  # unreachable: as_completed raises first

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


def _new_job_id() -> str:
    return str(uuid.uuid4())


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
