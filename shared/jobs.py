"""Job types and their payload schemas: the contract between storefronts and workers.

Every payload is a pydantic model with `schema_version`, a size limit on every field, and
unknown fields rejected. `parse_job` turns raw JSON into a model or raises `InvalidJob`
with one (field, problem) pair per error.
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import InvalidJob

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 64 * 1024


class JobType(str, enum.Enum):
    description = "description"
    reply = "reply"
    strategy = "strategy"


Language = Literal["en", "zh"]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
Name = Annotated[str, Field(min_length=1, max_length=64)]
LongText = Annotated[str, Field(min_length=1, max_length=4000)]
Count = Annotated[int, Field(ge=0, le=10**12)]
Amount = Annotated[float, Field(ge=0, le=1e15, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class DescriptionJob(_Strict):
    """Write a product description from its attributes."""

    schema_version: Literal[1] = 1
    sku: Name
    title: ShortText
    category: ShortText
    attributes: dict[Name, ShortText] = Field(default_factory=dict, max_length=40)
    materials: list[ShortText] = Field(default_factory=list, max_length=20)
    packaging: list[ShortText] = Field(default_factory=list, max_length=10)
    certifications: list[ShortText] = Field(default_factory=list, max_length=10)
    language: Language = "en"
    tone: Literal["neutral", "friendly", "professional", "playful", "premium"] = "friendly"
    max_words: int = Field(default=120, ge=10, le=600)


class Turn(_Strict):
    role: Literal["customer", "agent"]
    text: LongText


class OrderItem(_Strict):
    sku: Name
    title: ShortText
    quantity: int = Field(ge=1, le=100_000)


class Shipping(_Strict):
    carrier: ShortText | None = None
    mode: Literal["ground", "express", "air", "sea", "rail", "pickup"] | None = None
    tracking_number: Name | None = None
    estimated_delivery: ShortText | None = None


class OrderContext(_Strict):
    order_id: Name
    status: Literal["pending", "paid", "shipped", "delivered", "returned", "cancelled", "refunded"]
    items: list[OrderItem] = Field(default_factory=list, max_length=50)
    shipping: Shipping | None = None


class ReplyJob(_Strict):
    """Draft an answer to a customer message, given the order context."""

    schema_version: Literal[1] = 1
    customer_message: LongText
    earlier_turns: list[Turn] = Field(default_factory=list, max_length=20)
    order: OrderContext | None = None
    store_policies: dict[Name, Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        default_factory=dict, max_length=20
    )
    language: Language = "en"


class PackagingUse(_Strict):
    material: ShortText
    weight_kg: Amount


class ShippingMode(_Strict):
    mode: Literal["ground", "express", "air", "sea", "rail", "pickup"]
    shipments: Count
    mean_distance_km: Amount | None = None


class StoreMetrics(_Strict):
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "USD"
    revenue: Amount | None = None
    units_sold: Count | None = None
    orders: Count | None = None
    units_returned: Count | None = None
    return_reasons: dict[ShortText, Count] = Field(default_factory=dict, max_length=20)
    inventory_units: Count | None = None
    overstock_units: Count | None = None
    expired_or_discarded_units: Count | None = None
    packaging: list[PackagingUse] = Field(default_factory=list, max_length=20)
    shipping: list[ShippingMode] = Field(default_factory=list, max_length=10)
    known_emissions_kg_co2e: dict[ShortText, Amount] = Field(default_factory=dict, max_length=20)


class StrategyJob(_Strict):
    """Suggest operational improvements from store metrics; waste and emission cuts first."""

    schema_version: Literal[1] = 1
    period: Name
    metrics: StoreMetrics
    goals: list[ShortText] = Field(default_factory=list, max_length=10)
    language: Language = "en"


Job = DescriptionJob | ReplyJob | StrategyJob

SCHEMAS: dict[JobType, type[DescriptionJob] | type[ReplyJob] | type[StrategyJob]] = {
    JobType.description: DescriptionJob,
    JobType.reply: ReplyJob,
    JobType.strategy: StrategyJob,
}


def field_errors(error: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten a pydantic error into (dotted field path, problem) pairs."""
    pairs = []
    for item in error.errors(include_url=False):
        path = ".".join(str(part) for part in item["loc"]) or "(root)"
        problem = item["msg"]
        if item["type"] == "extra_forbidden":
            problem = "unknown field (not part of the schema; check the spelling)"
        pairs.append((f"{prefix}{path}", problem))
    return pairs


def parse_job_type(value: str) -> JobType:
    try:
        return JobType(value)
    except ValueError:
        choices = ", ".join(t.value for t in JobType)
        raise InvalidJob([("type", f"unknown job type {value!r}; expected one of {choices}")]) from None


def parse_job(job_type: JobType, payload: Any, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> Job:
    """Validate a raw payload (dict or JSON text) for `job_type`; raise InvalidJob on any problem."""
    if isinstance(payload, (str, bytes)):
        if len(payload) > max_payload_bytes:
            raise InvalidJob([("payload", f"is {len(payload)} bytes; the limit is {max_payload_bytes}")])
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise InvalidJob([("payload", f"is not valid JSON: {exc}")]) from None
    if not isinstance(payload, dict):
        raise InvalidJob([("payload", f"must be a JSON object, not {type(payload).__name__}")])
    size = len(json.dumps(payload, ensure_ascii=False, default=str).encode())
    if size > max_payload_bytes:
        raise InvalidJob([("payload", f"is {size} bytes; the limit is {max_payload_bytes}")])
    try:
        return SCHEMAS[job_type].model_validate(payload)
    except ValidationError as exc:
        raise InvalidJob(field_errors(exc, prefix="payload.")) from None
