"""The HTTP API: thin routes over the Python client, with tenants, limits and JSON errors.

POST   /v1/jobs/{type}     one job → 202 {id, status, links}
POST   /v1/jobs:batch      many jobs → 202, one entry per job (id or error)
GET    /v1/jobs/{id}       status and result; ?wait=N long-polls up to N seconds
DELETE /v1/jobs/{id}       cancel a job no worker has started
GET    /healthz /readyz /metrics /openapi.json
"""

import time
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from kombu.exceptions import KombuError
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producers.client import Client, JobSpec
from producers.gateway import callbacks
from producers.gateway.limits import Outstanding, QueueDepth, allow_request
from producers.gateway.metrics import GatewayMetrics
from producers.gateway.tenants import Tenant, TenantRegistry
from shared import claims
from shared.errors import BrokerUnavailable, IdempotencyConflict, InvalidJob, JobNotComputed
from shared.jobs import JobType
from shared.redact import redact_text
from shared.redis_client import redis_client
from shared.results import JobResult, JobStatus, result_from_meta
from shared.settings import Settings

OWNER_KEY_PREFIX = "greenq:owner:"
POLL_S = 0.1
MAX_DEADLINE_S = 7 * 86400


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


class SubmitRequest(BaseModel):
    """One job: its payload (see the job type's schema) and optional delivery terms."""

    model_config = ConfigDict(extra="forbid")

    job: dict[str, Any] = Field(description="the job payload, validated against the job type's schema")
    priority: int | None = Field(default=None, ge=0, le=9, description="0 least urgent … 9 most urgent")
    deadline_s: float | None = Field(default=None, gt=0, le=MAX_DEADLINE_S, description="expire after this long")
    callback_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://",
        description="POSTed the result, signed, when the job finishes",
    )


class BatchItem(SubmitRequest):
    type: JobType
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[BatchItem] = Field(min_length=1)


class Accepted(BaseModel):
    id: str
    status: str = "queued"
    links: dict[str, str]


class BatchEntry(BaseModel):
    index: int
    id: str | None = None
    error: dict[str, Any] | None = None


class BatchAccepted(BaseModel):
    jobs: list[BatchEntry]


class JobView(BaseModel):
    id: str
    status: str = Field(description="queued, running, succeeded, failed, expired or cancelled")
    result: JobResult | None = None


class BodyLimit:
    """Refuse bodies over the limit (413) before they are read into memory, chunked ones included."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(error_body("body_too_large", f"request body over {self.max_bytes} bytes"), 413)
        await response({"type": "http"}, _no_receive, send)


class _TooLarge(Exception):
    pass


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(settings: Settings, tenants: TenantRegistry, dispatch_callbacks: bool = True) -> FastAPI:
    client = Client(settings)
    store = redis_client(settings.backend_url, settings.tls_ca_file, sentinel_master=settings.sentinel_master)
    broker = redis_client(settings.broker_url, settings.tls_ca_file, sentinel_master=settings.sentinel_master)
    backend = client.app.backend
    outstanding = Outstanding(store, backend)
    depth = QueueDepth(broker)
    metrics = GatewayMetrics(CollectorRegistry())
    dispatcher = callbacks.CallbackDispatcher(
        store, backend, tenants.secrets(), settings.gateway_callback_attempts, on_outcome=metrics.callbacks
    )

    app = FastAPI(title="greenq", version="1", description="LLM jobs for online stores, with energy receipts.")
    app.add_middleware(BodyLimit, max_bytes=settings.gateway_max_body_bytes)

    @app.on_event("startup")
    def _start() -> None:
        if dispatch_callbacks:
            dispatcher.start()

    @app.on_event("shutdown")
    def _stop() -> None:
        dispatcher.stop()
        client.close()

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
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

    def admit(who: Tenant, job_types: list[JobType]) -> None:
        if not allow_request(store, who.name, who.rate_limit_per_s):
            raise ApiError(
                429, "rate_limited", f"over {who.rate_limit_per_s} requests per second", headers={"Retry-After": "1"}
            )
        for job_type in set(job_types):
            if depth(job_type) >= settings.gateway_max_queue_depth:
                raise ApiError(
                    429, "queue_full", f"the {job_type.value} queue is full; retry later", headers={"Retry-After": "10"}
                )
        if not outstanding.has_room(who.name, len(job_types), who.max_outstanding):
            raise ApiError(
                429, "too_many_outstanding", f"over {who.max_outstanding} unfinished jobs", headers={"Retry-After": "5"}
            )

    def prepare(who: Tenant, job_type: JobType, body: SubmitRequest, key: str | None) -> Any:
        scoped = f"{who.name}:{key}" if key else None
        try:
            return client.prepare(JobSpec(job_type, body.job, scoped, body.priority, body.deadline_s))
        except InvalidJob as exc:
            fields = [(f.replace("payload.", "job.", 1), p) for f, p in exc.errors]
            raise ApiError(422, "invalid_job", "the job does not match its schema", fields) from None

    def enqueue(who: Tenant, prepared: list[tuple[Any, SubmitRequest]]) -> list[str]:
        try:
            ids = client.publish([envelope for envelope, _ in prepared], pipelined=len(prepared) > 1)
        except IdempotencyConflict as exc:
            raise ApiError(409, "idempotency_conflict", str(exc)) from None
        pipe = store.pipeline()
        for job_id in ids:
            pipe.set(f"{OWNER_KEY_PREFIX}{job_id}", who.name, ex=settings.result_ttl_s)
        pipe.execute()
        for job_id, (_, body) in zip(ids, prepared, strict=True):
            if body.callback_url:
                callbacks.register(store, job_id, body.callback_url, who.name, settings.result_ttl_s)
        outstanding.add(who.name, ids)
        return ids

    def owned(who: Tenant, job_id: str) -> None:
        owner = store.get(f"{OWNER_KEY_PREFIX}{job_id}")
        if owner is None or owner.decode() != who.name:
            raise ApiError(404, "not_found", f"no job {job_id}")

    def view(job_id: str) -> JobView:
        meta = backend.get_task_meta(job_id, cache=False)
        if meta.get("status") in ("SUCCESS", "FAILURE"):
            result = result_from_meta(job_id, meta)
            return JobView(id=job_id, status=result.status.value, result=result)
        started = claims.state(store, job_id) == claims.RECEIVED
        return JobView(id=job_id, status="running" if started else "queued")

    Caller = Annotated[Tenant, Depends(tenant)]
    JobTypePath = Annotated[JobType, Path(description="description, reply or strategy")]
    JobIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]

    @app.post(
        "/v1/jobs:batch",
        status_code=202,
        response_model=BatchAccepted,
        responses={401: {}, 413: {}, 422: {}, 429: {}, 503: {}},
    )
    def submit_batch(body: BatchRequest, who: Caller) -> BatchAccepted:
        if len(body.jobs) > settings.gateway_max_batch_jobs:
            raise ApiError(
                422,
                "too_many_jobs",
                f"at most {settings.gateway_max_batch_jobs} jobs per batch",
                [("jobs", f"has {len(body.jobs)} items")],
            )
        admit(who, [item.type for item in body.jobs])
        entries: list[BatchEntry] = []
        prepared: list[tuple[Any, SubmitRequest]] = []
        positions: list[int] = []
        for index, item in enumerate(body.jobs):
            try:
                prepared.append((prepare(who, item.type, item, item.idempotency_key), item))
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
        for index, job_id in zip(positions, enqueue(who, prepared), strict=True):
            entries.append(BatchEntry(index=index, id=job_id))
        return BatchAccepted(jobs=sorted(entries, key=lambda e: e.index))

    @app.post(
        "/v1/jobs/{job_type}",
        status_code=202,
        response_model=Accepted,
        responses={401: {}, 409: {}, 413: {}, 422: {}, 429: {}, 503: {}},
    )
    def submit(
        job_type: JobTypePath,
        body: SubmitRequest,
        who: Caller,
        idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
    ) -> Accepted:
        admit(who, [job_type])
        job_id = enqueue(who, [(prepare(who, job_type, body, idempotency_key), body)])[0]
        return Accepted(id=job_id, links={"self": f"/v1/jobs/{job_id}"})

    @app.get("/v1/jobs/{job_id}", response_model=JobView, responses={401: {}, 404: {}, 503: {}})
    def get_job(
        job_id: JobIdPath,
        who: Caller,
        wait: Annotated[float, Query(ge=0, le=600, description="long-poll up to this many seconds")] = 0,
    ) -> JobView:
        owned(who, job_id)
        deadline = time.monotonic() + min(wait, settings.gateway_max_wait_s)
        current = view(job_id)
        while current.result is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
            current = view(job_id)
        return current

    @app.delete("/v1/jobs/{job_id}", response_model=JobView, responses={401: {}, 404: {}, 409: {}, 503: {}})
    def cancel_job(job_id: JobIdPath, who: Caller) -> JobView:
        owned(who, job_id)
        if not claims.cancel(store, job_id, settings.result_ttl_s):
            current = view(job_id)
            raise ApiError(409, "already_started", f"job {job_id} is {current.status}; it can no longer be cancelled")
        record = JobResult(
            job_id=job_id,
            job_type=None,
            status=JobStatus.cancelled,
            error="cancelled before a worker started it",
            finished_at=time.time(),
        )
        backend.mark_as_failure(job_id, JobNotComputed(record.to_json()))
        return JobView(id=job_id, status=JobStatus.cancelled.value, result=record)

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
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
