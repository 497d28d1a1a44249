"""`JobTypeSpec`: everything greenq knows about one job type, declared in one place."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from greenq.shared.delivery import MAX_PRIORITY, MIN_PRIORITY
from greenq.shared.errors import ConfigError, field_errors
from greenq.shared.policies import BatchPolicy, GenerationSettings

P = TypeVar("P", bound=BaseModel)
# Lowercase words joined by single underscores: usable in queue and task names, metric labels and
# nested environment variables (GREENQ_BATCH__<NAME>__MAX_WAIT_S).
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
MAX_NAME_CHARS = 32


@dataclass(frozen=True, eq=False)
class JobTypeSpec(Generic[P]):
    """One job type's declaration; `register()` it once at import time, and every part of greenq reads it.

    >>> FAQ = register(JobTypeSpec(
    ...     name="faq", summary="an answer from the store's FAQ", payload=FaqJob, prompt_values=faq_values,
    ...     priority=6, latency_objective_s=60, generation=GenerationSettings(max_new_tokens=120),
    ... ))

    `name` is the wire name: task `greenq.jobs.<name>`, queue `greenq.<name>`, its key in
    GREENQ_BATCH / GREENQ_GENERATION / GREENQ_PRIORITY / GREENQ_MODELS, the `job_type` metric label,
    and the prompt template `<name>.txt` (workers/model/prompts/templates/, or GREENQ_PROMPT_TEMPLATES_DIR).
    """

    name: str
    summary: str  # what a job of this type writes, in one line
    payload: type[P]  # the pydantic schema every payload is validated against, by producers and workers
    prompt_values: Callable[[P], Mapping[str, str]]  # a validated payload → the template's $placeholders
    priority: int  # default priority, MIN_PRIORITY (least urgent) … MAX_PRIORITY (most urgent)
    latency_objective_s: float  # p95 submission-to-result objective; GREENQ_LATENCY_OBJECTIVE_S overrides it
    # A job given a `run_by` is deferred to the cleanest grid hours before it, unless it says otherwise.
    carbon_aware: bool = False
    batch: BatchPolicy = field(default_factory=BatchPolicy)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    # Each check reads a succeeded job's text and returns warnings for its result (empty: nothing to say).
    checks: tuple[Callable[[P, str], list[str]], ...] = ()
    samples: tuple[Mapping[str, Any], ...] = ()  # valid payloads, for the demo, the docs and the tests

    @property
    def name_literal(self) -> Any:
        """`Literal[name]`, for the per-type schemas generated from this declaration."""
        return Literal[self.name]

    @property
    def camel_name(self) -> str:
        """`faq_bot` → `FaqBot`: a prefix for the names of schemas generated for this type."""
        return "".join(part.capitalize() for part in self.name.split("_"))

    def __post_init__(self) -> None:
        if len(self.name) > MAX_NAME_CHARS or not NAME_PATTERN.match(self.name):
            raise ConfigError(
                f"job type name {self.name!r}: use lowercase letters and digits, words joined by single "
                f"underscores, at most {MAX_NAME_CHARS} characters"
            )
        if not MIN_PRIORITY <= self.priority <= MAX_PRIORITY:
            raise ConfigError(
                f"job type {self.name}: priority {self.priority}; use {MIN_PRIORITY} (least urgent) to "
                f"{MAX_PRIORITY} (most urgent)"
            )
        if self.latency_objective_s <= 0:
            raise ConfigError(f"job type {self.name}: latency_objective_s must be positive")
        if self.generation.min_new_tokens > self.generation.max_new_tokens:
            raise ConfigError(f"job type {self.name}: min_new_tokens exceeds max_new_tokens")
        for index, sample in enumerate(self.samples):
            try:
                self.payload.model_validate(sample)
            except ValidationError as exc:
                problems = "; ".join(f"{f}: {p}" for f, p in field_errors(exc))
                raise ConfigError(f"job type {self.name}: sample {index} is invalid: {problems}") from None
