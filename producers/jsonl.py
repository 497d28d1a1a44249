"""Reading job files: one JSON object a line, either the payload itself or an envelope.

An envelope line has a top-level "job" object and may add the delivery terms "idempotency_key",
"priority", "deadline_s", "run_by" and "carbon_aware" (checked by `DeliveryTerms`). Blank lines and
lines starting with "#" are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from greenq.producers.client import JobSpec
from greenq.shared.delivery import DeliveryTerms
from greenq.shared.errors import InvalidJob
from greenq.shared.job_types import JobType

MAX_LINE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Line:
    number: int
    spec: JobSpec | None
    error: InvalidJob | None


def read_lines(lines: Iterable[str], job_type: JobType) -> Iterator[Line]:
    for number, text in enumerate(lines, start=1):
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            yield Line(number, _spec(stripped, job_type), None)
        except InvalidJob as exc:
            yield Line(number, None, exc)


def _spec(text: str, job_type: JobType) -> JobSpec:
    if len(text) > MAX_LINE_BYTES:
        raise InvalidJob([("(line)", f"is {len(text)} bytes; the limit is {MAX_LINE_BYTES}")])
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidJob([("(line)", f"is not valid JSON: {exc.msg} at column {exc.colno}")]) from None
    if not isinstance(data, dict):
        raise InvalidJob([("(line)", "must be a JSON object")])
    if not isinstance(data.get("job"), dict):
        return JobSpec(job_type, data)
    terms = DeliveryTerms.parse({name: value for name, value in data.items() if name != "job"})
    return JobSpec(
        job_type,
        data["job"],
        terms.idempotency_key,
        terms.priority,
        terms.deadline_s,
        terms.run_by,
        terms.carbon_aware,
    )
