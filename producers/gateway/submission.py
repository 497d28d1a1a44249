"""Accepting jobs: validate each into an envelope, publish, and record who owns it and where its callback goes.

A submission runs in three steps, so that callback host lookups wait on the event loop, not in a thread:
`admit_one`/`admit_batch` (limits, in a thread), `admission.callback_problems` (async), then
`enqueue_one`/`enqueue_batch` (validate, publish and record, in a thread).
"""

from __future__ import annotations

import time

from greenq.producers.client import JobSpec
from greenq.producers.gateway.admission import admit
from greenq.producers.gateway.errors import ApiError, error_body
from greenq.producers.gateway.schemas import Accepted, BatchAccepted, BatchEntry, BatchRequest, SubmitRequest
from greenq.producers.gateway.state import GatewayState
from greenq.producers.gateway.tenants import Tenant
from greenq.shared.envelope import Envelope
from greenq.shared.errors import BrokerUnavailable, GreenqError, IdempotencyConflict, InvalidJob, NotAllEnqueued
from greenq.shared.job_types import JobType
from greenq.shared.keys import OWNER_KEY_PREFIX

Problems = dict[str, str | None]  # callback URL → why it is refused (None: it is not)


def admit_one(state: GatewayState, job_type: JobType, body: SubmitRequest, who: Tenant, header_key: str | None) -> None:
    if header_key and body.idempotency_key and header_key != body.idempotency_key:
        raise ApiError(
            422,
            "invalid_request",
            "two different idempotency keys",
            [("idempotency_key", "differs from the Idempotency-Key header; send one of them")],
        )
    admit(state, who, [job_type])


def enqueue_one(
    state: GatewayState, job_type: JobType, body: SubmitRequest, who: Tenant, header_key: str | None, problems: Problems
) -> Accepted:
    envelope = prepare(state, who, job_type, body, header_key or body.idempotency_key, problems)
    job_id = enqueue(state, who, [(envelope, body)])[0]
    status = "deferred" if state.client.deferral_of(envelope) is not None else "queued"
    return Accepted(id=job_id, status=status, links={"self": f"/v1/jobs/{job_id}"})


def admit_batch(state: GatewayState, body: BatchRequest, who: Tenant) -> None:
    if len(body.jobs) > state.settings.gateway_max_batch_jobs:
        raise ApiError(
            422,
            "too_many_jobs",
            f"at most {state.settings.gateway_max_batch_jobs} jobs per batch",
            [("jobs", f"has {len(body.jobs)} items")],
        )
    admit(state, who, [item.type for item in body.jobs])


def enqueue_batch(state: GatewayState, body: BatchRequest, who: Tenant, problems: Problems) -> BatchAccepted:
    """Each valid job enqueued, each other one an error entry; 422 only if none is valid."""
    entries: list[BatchEntry] = []
    prepared: list[tuple[Envelope, SubmitRequest]] = []
    positions: list[int] = []
    for index, item in enumerate(body.jobs):
        try:
            prepared.append((prepare(state, who, item.type, item, item.idempotency_key, problems), item))
            positions.append(index)
        except ApiError as exc:
            fields = [(f"jobs.{index}.{f}", p) for f, p in exc.fields]
            entries.append(BatchEntry(index=index, error=error_body(exc.code, exc.message, fields)["error"]))
    if not prepared:
        raise ApiError(
            422,
            "invalid_job",
            "no job in the batch is valid",
            [(f["field"], f["problem"]) for e in entries for f in (e.error or {}).get("fields", [])],
        )
    failed: dict[int, GreenqError] = {}
    try:
        enqueued = dict(enumerate(enqueue(state, who, prepared)))
    except NotAllEnqueued as exc:
        if not exc.enqueued:  # nothing was enqueued: answer as for one job (409 or 503)
            if isinstance(exc, BrokerUnavailable):
                raise
            raise ApiError(409, "idempotency_conflict", str(exc)) from None
        enqueued, failed = exc.enqueued, exc.failed
    for index, job_id in enqueued.items():
        entries.append(BatchEntry(index=positions[index], id=job_id))
    for index, reason in failed.items():
        error = (
            error_body("idempotency_conflict", str(reason))
            if isinstance(reason, IdempotencyConflict)
            else error_body("broker_unavailable", "the job queue became unreachable; resubmit this job")
        )
        entries.append(BatchEntry(index=positions[index], error=error["error"]))
    return BatchAccepted(jobs=sorted(entries, key=lambda e: e.index))


def prepare(
    state: GatewayState, who: Tenant, job_type: JobType, body: SubmitRequest, key: str | None, problems: Problems
) -> Envelope:
    """The job's envelope, its idempotency key scoped to the tenant; 422 for a bad job or a refused callback."""
    scoped = f"{who.name}:{key}" if key else None
    problem = problems[body.callback_url] if body.callback_url is not None else None  # checked before: required
    try:
        envelope = state.client.prepare(
            JobSpec(job_type, body.job, scoped, body.priority, body.deadline_s, body.run_by, body.carbon_aware)
        )
    except InvalidJob as exc:
        fields = [(f.replace("payload.", "job.", 1), p) for f, p in exc.errors]
        fields += [("callback_url", problem)] if problem else []
        raise ApiError(422, "invalid_job", "the job does not match its schema", fields) from None
    if problem:
        raise ApiError(422, "invalid_callback", "the callback URL is refused", [("callback_url", problem)])
    return envelope


def enqueue(state: GatewayState, who: Tenant, prepared: list[tuple[Envelope, SubmitRequest]]) -> list[str]:
    """Publish; a batch enqueued in part raises NotAllEnqueued once its enqueued jobs are recorded."""
    # A job its idempotency key already named was recorded by the submit that enqueued it: recording it
    # again would lengthen its owner record past its result and send a delivered callback again.
    known: set[int] = set()
    try:
        ids = state.client.publish([envelope for envelope, _ in prepared], pipelined=len(prepared) > 1, known=known)
    except NotAllEnqueued as exc:
        jobs = [(job_id, *prepared[index]) for index, job_id in exc.enqueued.items() if index not in known]
        record(state, who, jobs)
        raise
    except IdempotencyConflict as exc:
        raise ApiError(409, "idempotency_conflict", str(exc)) from None
    record(state, who, [(job_id, *prepared[index]) for index, job_id in enumerate(ids) if index not in known])
    return ids


def record(state: GatewayState, who: Tenant, jobs: list[tuple[str, Envelope, SubmitRequest]]) -> None:
    """Owner, callback and outstanding count; a deferred job keeps them until its run_by, plus the result TTL."""
    ttl_s = state.settings.result_ttl_s
    now = time.time()
    until = {job_id: max(now, envelope.run_by or now) for job_id, envelope, _ in jobs}
    pipe = state.store.pipeline()
    for job_id, _, _ in jobs:
        pipe.set(f"{OWNER_KEY_PREFIX}{job_id}", who.name, ex=ttl_s + int(until[job_id] - now))
    pipe.execute()
    for job_id, envelope, body in jobs:
        if body.callback_url:  # kept as long as the job can finish: its run_by or deadline, plus the result TTL
            finish_by = max(until[job_id], envelope.deadline_at or now)
            state.callbacks.register(job_id, body.callback_url, who.name, ttl_s + int(finish_by - now))
    state.outstanding.add(who.name, until)
