"""The HTTP API: thin routes over the Python client, with tenants, limits and JSON errors.

POST   /v1/jobs/{type}     one job → 202 {id, status, links}; one route per job type, each with its own schema
POST   /v1/jobs:batch      many jobs → 202, one entry per job (id or error)
GET    /v1/jobs/{id}       status and result; ?wait=N long-polls up to N seconds
GET    /v1/jobs/{id}/events  its text as it decodes, then its result: Server-Sent Events (events.py)
DELETE /v1/jobs/{id}       cancel a job no worker has started
GET    /healthz /readyz /metrics /openapi.json
"""

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from kombu.exceptions import KombuError
from prometheus_client import CollectorRegistry, generate_latest
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from producers.client import Client, JobSpec
from producers.gateway.addresses import AllowList, CallbackRefused, check_url
from producers.gateway.bodylimit import BodyLimit
from producers.gateway.callbacks import CallbackQueue
from producers.gateway.dispatcher import CallbackDispatcher, DeliveryPolicy
from producers.gateway.events import RESULT_EVENT_ID, OpenStreams, held, job_events, resume_after
from producers.gateway.finished import FinishedFeed, OwnerRecords
from producers.gateway.limits import Outstanding, QueueDepth, allow_request
from producers.gateway.metrics import GatewayMetrics
from producers.gateway.resolver import Lookups, RecentAnswers
from producers.gateway.schemas import (
    Accepted,
    BatchAccepted,
    BatchEntry,
    BatchRequest,
    JobView,
    SubmitRequest,
    submit_request_for,
)
from producers.gateway.stream_hub import StreamHub
from producers.gateway.tenants import Tenant, TenantRegistry
from producers.gateway.waiting import ResultWaiter, finished_among
from shared import claims, job_types
from shared.deferral import DeferredStore
from shared.delivery import IdempotencyKey
from shared.envelope import Envelope
from shared.errors import (
    BrokerUnavailable,
    GreenqError,
    IdempotencyConflict,
    InvalidJob,
    NotAllEnqueued,
)
from shared.job_types import JobType, JobTypeSpec, KnownJobType
from shared.keys import OWNER_KEY_PREFIX
from shared.redact import redact_text
from shared.redis_client import redis_client
from shared.result_store import ResultStore
from shared.results import JobResult, JobStatus, is_final, result_from_meta
from shared.settings import Settings
from shared.token_stream import TokenStreams


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = fields or []
        self.headers = headers or {}


def error_body(code: str, message: str, fields: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": message, "fields": [{"field": f, "problem": p} for f, p in (fields or [])]}
    }


SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {401: {}, 409: {}, 413: {}, 422: {}, 429: {}, 503: {}}


def create_app(settings: Settings, tenants: TenantRegistry, dispatch_callbacks: bool = True) -> FastAPI:
    client = Client(settings)
    store = redis_client(settings.backend_url, settings.tls_ca_file, sentinel_master=settings.sentinel_master)
    broker = redis_client(settings.broker_url, settings.tls_ca_file, sentinel_master=settings.sentinel_master)
    backend = client.app.backend
    outstanding = Outstanding(store, backend, settings.result_ttl_s)
    depth = QueueDepth(broker)
    metrics = GatewayMetrics(CollectorRegistry())
    allow = AllowList.parse(settings.gateway_callback_allow)
    lookups = Lookups(settings.gateway_callback_resolve_concurrency)  # submits and attempts share each tenant's bound
    answers = RecentAnswers(
        lookups, settings.gateway_callback_resolve_timeout_s, settings.gateway_callback_resolve_queue_s
    )
    callbacks = CallbackQueue(
        store, backend, settings.result_ttl_s, settings.gateway_callback_sweep_s, outcomes=metrics.callbacks
    )
    policy = DeliveryPolicy(
        allow=allow,
        timeout_s=settings.gateway_callback_timeout_s,
        concurrency=settings.gateway_callback_concurrency,
        max_attempts=settings.gateway_callback_attempts,
        resolve_timeout_s=settings.gateway_callback_resolve_timeout_s,
    )
    dispatcher = CallbackDispatcher(callbacks, tenants.secrets(), policy, on_outcome=metrics.callbacks, lookups=lookups)
    waiter = ResultWaiter(backend)
    deferred = DeferredStore(store)
    streams = TokenStreams(store, settings.stream.max_entries, settings.result_ttl_s)
    owners = OwnerRecords(store, backend)
    hub = StreamHub(streams, lambda job_ids: finished_among(backend, job_ids))
    open_streams = OpenStreams(settings.gateway_max_streams_per_tenant, metrics.event_streams)

    def on_finished(job_ids: list[str]) -> None:
        callbacks.wake(job_ids, time.time())
        owners.expire_with_results(job_ids)

    finished = FinishedFeed(store, backend.task_keyprefix.decode(), on_finished)

    typed_routes: set[str] = set()  # POST /v1/jobs/<type>, one per registered type

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if dispatch_callbacks:
            finished.start()
            dispatcher.start()
        try:
            yield
        finally:
            dispatcher.stop()
            finished.stop()
            client.close()

    app = FastAPI(
        title="greenq",
        version="1",
        description="LLM jobs for online stores, with energy receipts.",
        lifespan=lifespan,
    )
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.gateway_max_body_bytes,
        refusal=lambda n: error_body("body_too_large", f"request body over {n} bytes"),
    )

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        path = "/v1/jobs/{job_type}" if path in typed_routes else path  # one series for every type's submissions
        metrics.requests.labels(path, request.method, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.fields), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        return JSONResponse(error_body("invalid_request", "the request does not match the API", fields), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body("http_error", str(exc.detail)), exc.status_code)

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            error_body("broker_unavailable", "the job queue is unreachable; retry shortly"),
            503,
            headers={"Retry-After": "5"},
        )

    for unavailable in (BrokerUnavailable, redis.RedisError, KombuError, OSError):
        app.add_exception_handler(unavailable, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body("internal", redact_text(f"{type(exc).__name__}: {exc}")), 500)

    def tenant(
        authorization: Annotated[str | None, Header()] = None, x_api_key: Annotated[str | None, Header()] = None
    ) -> Tenant:
        key = x_api_key or (authorization[7:] if authorization and authorization.startswith("Bearer ") else None)
        found = tenants.authenticate(key) if key else None
        if found is None:
            raise ApiError(
                401,
                "unauthorized",
                "a valid API key is required (Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return found

    def throttle(who: Tenant, cost: int = 1) -> None:
        if cost > who.rate_limit_per_s:  # could never fit in one second's window
            raise ApiError(
                422,
                "batch_over_rate_limit",
                f"a batch counts as one request per job; at most {who.rate_limit_per_s} per second for this tenant",
                [("jobs", f"has {cost} items; split it")],
            )
        if not allow_request(store, who.name, who.rate_limit_per_s, cost):
            raise ApiError(
                429, "rate_limited", f"over {who.rate_limit_per_s} requests per second", headers={"Retry-After": "1"}
            )

    def admit(who: Tenant, types: list[JobType]) -> None:
        throttle(who, len(types))
        for job_type in dict.fromkeys(types):
            if depth(job_type) >= settings.gateway_max_queue_depth:
                raise ApiError(
                    429, "queue_full", f"the {job_type} queue is full; retry later", headers={"Retry-After": "10"}
                )
        if not outstanding.has_room(who.name, len(types), who.max_outstanding):
            raise ApiError(
                429, "too_many_outstanding", f"over {who.max_outstanding} unfinished jobs", headers={"Retry-After": "5"}
            )

    async def callback_problems(who: Tenant, urls: list[str | None]) -> dict[str, str | None]:
        """Why each distinct callback URL is refused (None: it is not), checked at once on the event loop.

        Lookups wait here, not in a worker thread: a tenant whose names resolve slowly holds only its own
        lookup slots (resolver.py), never the threads every tenant's requests run in.
        """
        wanted = list(dict.fromkeys(url for url in urls if url is not None))
        if not who.callback_secret:
            problem = (
                "this tenant has no callback_secret to sign callbacks with; add one to its entry in the tenants "
                "file (`greenq gateway-key` makes one)"
            )
            return dict.fromkeys(wanted, problem)
        resolver = functools.partial(answers.resolve, who.name)

        async def problem_of(url: str) -> str | None:
            try:
                await check_url(url, allow, resolver)
            except CallbackRefused as exc:
                return str(exc)
            return None

        return dict(zip(wanted, await asyncio.gather(*map(problem_of, wanted)), strict=True))

    def prepare(
        who: Tenant, job_type: JobType, body: SubmitRequest, key: str | None, problems: dict[str, str | None]
    ) -> Envelope:
        scoped = f"{who.name}:{key}" if key else None
        problem = problems[body.callback_url] if body.callback_url is not None else None  # checked before: required
        try:
            envelope = client.prepare(
                JobSpec(job_type, body.job, scoped, body.priority, body.deadline_s, body.run_by, body.carbon_aware)
            )
        except InvalidJob as exc:
            fields = [(f.replace("payload.", "job.", 1), p) for f, p in exc.errors]
            fields += [("callback_url", problem)] if problem else []
            raise ApiError(422, "invalid_job", "the job does not match its schema", fields) from None
        if problem:
            raise ApiError(422, "invalid_callback", "the callback URL is refused", [("callback_url", problem)])
        return envelope

    def enqueue(who: Tenant, prepared: list[tuple[Envelope, SubmitRequest]]) -> list[str]:
        """Publish; a batch enqueued in part raises NotAllEnqueued once its enqueued jobs are recorded."""
        # A job its idempotency key already named was recorded by the submit that enqueued it: recording it
        # again would lengthen its owner record past its result and send a delivered callback again.
        known: set[int] = set()
        try:
            ids = client.publish([envelope for envelope, _ in prepared], pipelined=len(prepared) > 1, known=known)
        except NotAllEnqueued as exc:
            record(who, [(job_id, *prepared[index]) for index, job_id in exc.enqueued.items() if index not in known])
            raise
        except IdempotencyConflict as exc:
            raise ApiError(409, "idempotency_conflict", str(exc)) from None
        record(who, [(job_id, *prepared[index]) for index, job_id in enumerate(ids) if index not in known])
        return ids

    def record(who: Tenant, jobs: list[tuple[str, Envelope, SubmitRequest]]) -> None:
        """Owner, callback and outstanding count; a deferred job keeps them until its run_by, plus the result TTL."""
        now = time.time()
        until = {job_id: max(now, envelope.run_by or now) for job_id, envelope, _ in jobs}
        pipe = store.pipeline()
        for job_id, _, _ in jobs:
            pipe.set(f"{OWNER_KEY_PREFIX}{job_id}", who.name, ex=settings.result_ttl_s + int(until[job_id] - now))
        pipe.execute()
        for job_id, envelope, body in jobs:
            if body.callback_url:  # kept as long as the job can finish: its run_by or deadline, plus the result TTL
                finish_by = max(until[job_id], envelope.deadline_at or now)
                callbacks.register(job_id, body.callback_url, who.name, settings.result_ttl_s + int(finish_by - now))
        outstanding.add(who.name, until)

    def owned(who: Tenant, job_id: str) -> None:
        owner = store.get(f"{OWNER_KEY_PREFIX}{job_id}")
        if owner is None or owner != who.name.encode():
            raise ApiError(
                404,
                "not_found",
                f"no job {job_id} (or its result expired: results are kept {settings.result_ttl_s} s after a job ends)",
            )

    def look_up(who: Tenant, job_id: str) -> JobView:
        throttle(who)
        owned(who, job_id)
        current = view(job_id)
        if current.result is not None:  # in case this job's notification was missed (finished.py)
            owners.expire_with_results([job_id])
        return current

    def view(job_id: str) -> JobView:
        meta = backend.get_task_meta(job_id, cache=False)
        if is_final(meta):
            result = result_from_meta(job_id, meta)
            return JobView(id=job_id, status=result.status.value, result=result)
        started = claims.state(store, job_id) == claims.RECEIVED
        if not started:
            waiting = deferred.status(job_id)
            if waiting is not None and not waiting.releasing:
                return JobView(
                    id=job_id, status="deferred", run_by=waiting.run_by, planned_start_at=waiting.planned_start_s
                )
        return JobView(id=job_id, status="running" if started else "queued")

    Caller = Annotated[Tenant, Depends(tenant)]
    JobTypePath = Annotated[KnownJobType, Path(description="a registered job type")]
    IdempotencyHeader = Annotated[IdempotencyKey | None, Header()]
    JobIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]

    @app.post(
        "/v1/jobs:batch",
        status_code=202,
        response_model=BatchAccepted,
        responses={401: {}, 413: {}, 422: {}, 429: {}, 503: {}},
    )
    async def submit_batch(body: BatchRequest, who: Caller) -> BatchAccepted:
        await run_in_threadpool(admit_batch, body, who)
        problems = await callback_problems(who, [item.callback_url for item in body.jobs])
        return await run_in_threadpool(enqueue_batch, body, who, problems)

    def admit_batch(body: BatchRequest, who: Tenant) -> None:
        if len(body.jobs) > settings.gateway_max_batch_jobs:
            raise ApiError(
                422,
                "too_many_jobs",
                f"at most {settings.gateway_max_batch_jobs} jobs per batch",
                [("jobs", f"has {len(body.jobs)} items")],
            )
        admit(who, [item.type for item in body.jobs])

    def enqueue_batch(body: BatchRequest, who: Tenant, problems: dict[str, str | None]) -> BatchAccepted:
        entries: list[BatchEntry] = []
        prepared: list[tuple[Envelope, SubmitRequest]] = []
        positions: list[int] = []
        for index, item in enumerate(body.jobs):
            try:
                prepared.append((prepare(who, item.type, item, item.idempotency_key, problems), item))
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
            enqueued = dict(enumerate(enqueue(who, prepared)))
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

    async def submit(job_type: JobType, body: SubmitRequest, who: Tenant, header_key: str | None) -> Accepted:
        await run_in_threadpool(admit_one, job_type, body, who, header_key)
        problems = await callback_problems(who, [body.callback_url])
        return await run_in_threadpool(enqueue_one, job_type, body, who, header_key, problems)

    def admit_one(job_type: JobType, body: SubmitRequest, who: Tenant, header_key: str | None) -> None:
        if header_key and body.idempotency_key and header_key != body.idempotency_key:
            raise ApiError(
                422,
                "invalid_request",
                "two different idempotency keys",
                [("idempotency_key", "differs from the Idempotency-Key header; send one of them")],
            )
        admit(who, [job_type])

    def enqueue_one(
        job_type: JobType, body: SubmitRequest, who: Tenant, header_key: str | None, problems: dict[str, str | None]
    ) -> Accepted:
        envelope = prepare(who, job_type, body, header_key or body.idempotency_key, problems)
        job_id = enqueue(who, [(envelope, body)])[0]
        status = "deferred" if client.deferral_of(envelope) is not None else "queued"
        return Accepted(id=job_id, status=status, links={"self": f"/v1/jobs/{job_id}"})

    def add_typed_submit_route(spec: JobTypeSpec[Any]) -> None:
        async def submit_typed(body: SubmitRequest, who: Caller, idempotency_key: IdempotencyHeader = None) -> Accepted:
            return await submit(spec.name, body, who, idempotency_key)

        # FastAPI takes the body's schema from the annotation: this type's model documents `job` as its payload.
        submit_typed.__annotations__["body"] = submit_request_for(spec)
        app.post(
            f"/v1/jobs/{spec.name}",
            status_code=202,
            response_model=Accepted,
            responses=SUBMIT_RESPONSES,
            operation_id=f"submit_{spec.name}",
            summary=f"Submit a {spec.name} job",
            description=f"{spec.summary[0].upper()}{spec.summary[1:]}.",
        )(submit_typed)
        typed_routes.add(f"/v1/jobs/{spec.name}")

    for spec in job_types.specs():
        add_typed_submit_route(spec)

    @app.post(
        "/v1/jobs/{job_type}",
        status_code=202,
        response_model=Accepted,
        responses=SUBMIT_RESPONSES,
        include_in_schema=False,  # documented per type above; this route answers 422 for unknown types
    )
    async def submit_any(
        job_type: JobTypePath, body: SubmitRequest, who: Caller, idempotency_key: IdempotencyHeader = None
    ) -> Accepted:
        return await submit(job_type, body, who, idempotency_key)

    @app.get("/v1/jobs/{job_id}", response_model=JobView, responses={401: {}, 404: {}, 429: {}, 503: {}})
    async def get_job(
        job_id: JobIdPath,
        who: Caller,
        wait: Annotated[float, Query(ge=0, le=600, description="long-poll up to this many seconds")] = 0,
    ) -> JobView:
        current = await run_in_threadpool(look_up, who, job_id)
        wait_s = min(wait, settings.gateway_max_wait_s)
        if current.result is None and wait_s > 0:  # waits on the event loop, holding no thread
            await waiter.wait(job_id, wait_s)
            current = await run_in_threadpool(view, job_id)
        return current

    @app.get(
        "/v1/jobs/{job_id}/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}, 204: {}, 401: {}, 404: {}, 429: {}, 503: {}},
    )
    async def job_events_route(
        job_id: JobIdPath,
        who: Caller,
        last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    ) -> Response:
        """The job's text as it decodes, as Server-Sent Events (see producers/gateway/events.py)."""
        current = await run_in_threadpool(look_up, who, job_id)
        if last_event_id == RESULT_EVENT_ID and current.result is not None:
            return Response(status_code=204)  # the EventSource saw the result: stop reconnecting
        release = open_streams.take(who.name)
        if release is None:
            raise ApiError(
                429,
                "too_many_streams",
                f"this tenant already has {open_streams.cap} event streams open on this gateway "
                "(GREENQ_GATEWAY_MAX_STREAMS_PER_TENANT); close one, or long-poll GET /v1/jobs/{id}?wait=N",
                headers={"Retry-After": "5"},
            )
        after = resume_after(last_event_id)
        events = held(job_events(hub, streams, view, job_id, after, settings.gateway_max_wait_s), release)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering
        # The background task gives the slot back too if the client left before the body started.
        return StreamingResponse(
            events, media_type="text/event-stream", headers=headers, background=BackgroundTask(release)
        )

    @app.delete("/v1/jobs/{job_id}", response_model=JobView, responses={401: {}, 404: {}, 409: {}, 429: {}, 503: {}})
    def cancel_job(job_id: JobIdPath, who: Caller) -> JobView:
        throttle(who)
        owned(who, job_id)
        record = JobResult(
            job_id=job_id,
            job_type=None,
            status=JobStatus.cancelled,
            error="cancelled before a worker started it",
            finished_at=time.time(),
        )
        if not ResultStore(backend, settings.result_ttl_s).cancel(record):  # write-once, as a worker's result
            current = view(job_id)
            raise ApiError(409, "already_started", f"job {job_id} is {current.status}; it can no longer be cancelled")
        deferred.withdraw(job_id)  # if it was waiting for the scheduler; released or not, no worker will run it
        return JobView(id=job_id, status=JobStatus.cancelled.value, result=record)

    @app.get("/healthz", response_class=PlainTextResponse)
    async def healthz() -> str:
        return "ok\n"

    @app.get("/readyz", response_class=PlainTextResponse, responses={503: {}})
    def readyz() -> Response:
        try:
            broker.ping()
        except redis.RedisError:
            return PlainTextResponse("broker unreachable\n", 503)
        return PlainTextResponse("ok\n")

    @app.get("/metrics", response_class=PlainTextResponse)
    def serve_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4")

    app.state.dispatcher = dispatcher
    return app
