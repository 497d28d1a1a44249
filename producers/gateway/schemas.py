"""The HTTP API's bodies. Each job type gets its own documented request schema, from its declaration.

Job payloads are validated by the client (`parse_job`), not by the request models, so that a bad
job is a field-level `invalid_job` error (and in a batch, fails alone); the API document still
types every `job` with its type's payload schema, so storefronts can generate typed clients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, TypeAdapter
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from greenq.shared.delivery import DeliveryTerms
from greenq.shared.job_types import JobTypeSpec, KnownJobType
from greenq.shared.job_types.variants import PayloadField, per_type_model, per_type_union
from greenq.shared.results import JobResult


@dataclass(frozen=True)
class DocumentedAs:
    """Field metadata: show the field in JSON Schemas as `shape()`; validation keeps the field's own type.

    `shape` is called when a schema is generated, so it sees every job type registered by then.
    """

    shape: Callable[[], Any]

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        # Through a one-item list, so that a model stays a named, referenced schema instead of being inlined.
        shape: Any = self.shape()
        items: JsonSchemaValue = handler(TypeAdapter[Any](list[shape]).core_schema)["items"]
        return items


class SubmitRequest(DeliveryTerms):
    """One job: its payload (see the job type's schema), optional delivery terms and a callback.

    `idempotency_key` may also come as the `Idempotency-Key` header (for `POST /v1/jobs/{type}`).
    """

    model_config = ConfigDict(extra="forbid")

    job: dict[str, Any] = Field(description="the job payload, validated against the job type's schema")
    callback_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://",
        description="POSTed the result, signed, when the job finishes",
    )


def _typed_job(spec: JobTypeSpec[Any]) -> tuple[Any, Any]:
    """`job` as a plain dict that the API document shows as `spec`'s payload schema."""
    documented = Annotated[
        dict[str, Any],
        DocumentedAs(lambda: spec.payload),
        Field(description=f"the {spec.name} job: {spec.summary}"),
    ]
    return documented, ...


TYPED_JOB: PayloadField = ("job", _typed_job)


def submit_request_for(spec: JobTypeSpec[Any]) -> type[SubmitRequest]:
    """`SubmitRequest` whose `job` is documented as `spec`'s payload schema."""
    return per_type_model(spec, SubmitRequest, "SubmitRequest", TYPED_JOB, f"One {spec.name} job: {spec.summary}.")


class BatchItem(SubmitRequest):
    type: KnownJobType


def _typed_batch() -> Any:
    item: Any = per_type_union(
        BatchItem, "BatchItem", tag="type", payload=TYPED_JOB, doc=lambda spec: f"One {spec.name} job of a batch."
    )
    return Annotated[list[item], Field(min_length=1)]


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: Annotated[list[BatchItem], DocumentedAs(_typed_batch), Field(min_length=1)]


class Accepted(BaseModel):
    id: str
    status: str = Field(default="queued", description="queued, or deferred (waiting for the cleanest grid hours)")
    links: dict[str, str]


class BatchEntry(BaseModel):
    index: int
    id: str | None = None
    error: dict[str, Any] | None = None


class BatchAccepted(BaseModel):
    jobs: list[BatchEntry]


class JobView(BaseModel):
    id: str
    status: str = Field(description="deferred, queued, running, succeeded, failed, expired or cancelled")
    result: JobResult | None = None
    run_by: float | None = Field(default=None, description="a deferred job: Unix time by which it will have run")
    planned_start_at: float | None = Field(
        default=None, description="a deferred job: Unix time the scheduler plans to release it (None: not planned yet)"
    )
