"""Reading job files: one JSON object a line, either the payload itself or an envelope.

An envelope line has a top-level "job" object and may add "idempotency_key", "priority"
and "deadline_s". Blank lines and lines starting with "#" are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from producers.client import JobSpec
from shared.errors import InvalidJob
from shared.jobs import JobType

ENVELOPE_FIELDS = {"job", "idempotency_key", "priority", "deadline_s"}
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
    unknown = set(data) - ENVELOPE_FIELDS
    if unknown:
        raise InvalidJob(
            [
                (name, "unknown envelope field (allowed: " + ", ".join(sorted(ENVELOPE_FIELDS)) + ")")
                for name in sorted(unknown)
            ]
        )
    errors = []
    key, priority, deadline_s = data.get("idempotency_key"), data.get("priority"), data.get("deadline_s")
    if key is not None and not (isinstance(key, str) and 0 < len(key) <= 200):
        errors.append(("idempotency_key", "must be a string of 1 to 200 characters"))
    if priority is not None and not (isinstance(priority, int) and 0 <= priority <= 9):
        errors.append(("priority", "must be an integer from 0 (least urgent) to 9 (most urgent)"))
    if deadline_s is not None and not (isinstance(deadline_s, (int, float)) and deadline_s > 0):
        errors.append(("deadline_s", "must be a positive number of seconds"))
    if errors:
        raise InvalidJob(errors)
    return JobSpec(job_type, data["job"], key, priority, None if deadline_s is None else float(deadline_s))
