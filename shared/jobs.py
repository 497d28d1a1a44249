"""A raw job → its validated payload, checked against its type's declaration (shared/job_types/).

`parse_job` turns raw JSON (dict or text) into the type's pydantic model or raises `InvalidJob`
with one (field, problem) pair per error: the same check for producers and workers.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from greenq.shared import job_types
from greenq.shared.errors import InvalidJob
from greenq.shared.job_types import JobType

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 64 * 1024


def parse_job_type(value: str) -> JobType:
    """`value` if a job type of that name is registered; raises UnknownJobType naming the known ones."""
    return job_types.get(value).name


def parse_job(job_type: JobType, payload: Any, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> BaseModel:
    """Validate a raw payload (dict or JSON text) for `job_type`; raise InvalidJob on any problem."""
    schema = job_types.get(job_type).payload
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
        job: BaseModel = schema.model_validate(payload)
    except ValidationError as exc:
        raise InvalidJob.from_validation(exc, prefix="payload.") from None
    return job


__all__ = ["MAX_PAYLOAD_BYTES", "SCHEMA_VERSION", "JobType", "parse_job", "parse_job_type"]
