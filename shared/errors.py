"""The greenq error tree: every error names what was wrong and what to do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class GreenqError(Exception):
    """Base of every error greenq raises on purpose."""


class InvalidJob(GreenqError):
    """A job payload failed validation; `errors` lists (field, problem) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in errors))

    @classmethod
    def from_validation(cls, error: ValidationError, prefix: str = "") -> InvalidJob:
        return cls(field_errors(error, prefix))


class UnknownJobType(InvalidJob):
    """A job type no declaration registered (see shared/job_types/)."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__([("type", unknown_job_type_problem(name, known))])


def unknown_job_type_problem(name: str, known: Sequence[str]) -> str:
    return f"unknown job type {name!r}; expected one of {', '.join(known)}"


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


class IdempotencyConflict(GreenqError):
    """The idempotency key was already used for a different payload."""


class BrokerUnavailable(GreenqError):
    """The broker (or result backend) could not be reached."""


class ResultBackendUnavailable(BrokerUnavailable):
    """The result backend (idempotency keys, deferred jobs) could not be reached; the message names it."""


class NotAllEnqueued(GreenqError):
    """Some jobs of a batch were not enqueued. Those that were will run; no key names one that was not.

    `enqueued` maps a job's index in the batch to its job id; `failed` maps an index to why that job was
    not enqueued. A job in a flush the broker failed may have reached it all the same: resubmitting it
    with the same idempotency key cannot make a second job, without one it can.
    """

    def __init__(self, total: int, enqueued: dict[int, str], failed: dict[int, GreenqError]) -> None:
        self.total, self.enqueued, self.failed = total, enqueued, failed
        reasons: dict[str, list[int]] = {}
        for index, reason in sorted(failed.items()):
            reasons.setdefault(str(reason), []).append(index)
        shown = [
            f"{'job' if len(indices) == 1 else 'jobs'} {_indices(indices)}: {reason}"
            for reason, indices in list(reasons.items())[:5]
        ]
        more = f"; and {len(reasons) - 5} more reasons" if len(reasons) > 5 else ""
        super().__init__(
            f"{len(enqueued)} of {total} jobs were enqueued; the other {len(failed)} were not, and any key they "
            f"claimed was released. {'; '.join(shown)}{more}"
        )


class BatchBrokerUnavailable(NotAllEnqueued, BrokerUnavailable):
    """The broker failed part-way through a batch (also a BrokerUnavailable, for existing handlers)."""


class BatchIdempotencyConflict(NotAllEnqueued, IdempotencyConflict):
    """Some keys of a batch were used for other payloads; the other jobs were enqueued."""


def _indices(indices: list[int]) -> str:
    """[0, 1, 2, 5] → "0-2, 5"."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


class ModelLoadError(GreenqError):
    """A model or tokenizer could not be loaded."""


class ResultTimeout(GreenqError):
    """A result did not arrive within the time allowed."""


class ConfigError(GreenqError):
    """A setting is invalid or settings contradict each other."""


class JobNotComputed(GreenqError):
    """Raised inside a task so Celery records a FAILURE; args[0] is the job's final result record.

    Failed and expired jobs are stored this way so that Flower and celery-exporter count them,
    while clients still read the full result record.
    """

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(result)
        self.result = result
