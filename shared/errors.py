"""The greenq error tree: every error names what was wrong and what to do."""

from __future__ import annotations

from typing import Any


class GreenqError(Exception):
    """Base of every error greenq raises on purpose."""


class InvalidJob(GreenqError):
    """A job payload failed validation; `errors` lists (field, problem) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in errors))


class IdempotencyConflict(GreenqError):
    """The idempotency key was already used for a different payload."""


class BrokerUnavailable(GreenqError):
    """The broker (or result backend) could not be reached."""


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
