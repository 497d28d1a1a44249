"""Delivery terms: how urgent a job is, how long it is worth computing, and which resubmissions are the same job.

`DeliveryTerms` is the one model that checks them, for the Python client, job files (`greenq submit`)
and the HTTP API alike; the envelope on the wire (shared/envelope.py) and the settings use the same
field types, so each range is written here once.

>>> DeliveryTerms.parse({"priority": 9, "deadline_s": 30, "idempotency_key": "ticket-981"})
DeliveryTerms(priority=9, deadline_s=30.0, idempotency_key='ticket-981')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import PydanticCustomError

from shared.errors import InvalidJob

MIN_PRIORITY = 0  # least urgent
MAX_PRIORITY = 9  # most urgent
MAX_DEADLINE_S = 7 * 86400
MAX_IDEMPOTENCY_KEY_CHARS = 200


def _explained(problem: str) -> WrapValidator:
    """Replace pydantic's wording with `problem` when the field fails, whatever the reason."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("delivery_term", "{problem}", {"problem": problem}) from None

    return WrapValidator(check)


Priority = Annotated[
    int,
    Field(ge=MIN_PRIORITY, le=MAX_PRIORITY, description="0 least urgent … 9 most urgent"),
    _explained(f"must be an integer from {MIN_PRIORITY} (least urgent) to {MAX_PRIORITY} (most urgent)"),
]
DeadlineSeconds = Annotated[
    float,
    Field(gt=0, le=MAX_DEADLINE_S, description="seconds from submission after which the job is not computed"),
    _explained(f"must be a positive number of seconds, at most {MAX_DEADLINE_S} (7 days)"),
]
IdempotencyKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_CHARS,
        description="the same key (per job type) names the same job, which is enqueued once",
    ),
    _explained(f"must be a string of 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"),
]


class DeliveryTerms(BaseModel):
    """What a submitter may ask of one job's delivery; every term is optional.

    `priority` defaults to the job type's (GREENQ_PRIORITY); without `deadline_s` a job never expires.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    priority: Priority | None = None
    deadline_s: DeadlineSeconds | None = None
    idempotency_key: IdempotencyKey | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any], prefix: str = "") -> DeliveryTerms:
        """Validate raw terms; raise InvalidJob with one (field, problem) pair per problem."""
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as exc:
            raise InvalidJob.from_validation(exc, prefix) from None
