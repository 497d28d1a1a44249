"""Per-job-type knobs: how batches form and how text is generated.

Each job type declares its defaults (shared/job_types/); `GREENQ_BATCH` and `GREENQ_GENERATION`
override them per type (shared/settings.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BatchMode = Literal["fixed", "adaptive"]
# How much longer than `max_wait_s` a fixed-policy batch may wait for jobs already on their way to it.
BACKLOG_GRACE_S = 1.0


class BatchPolicy(BaseModel):
    """How a worker forms batches: at most `max_batch_size` jobs and `max_batch_tokens`
    (prompt + new tokens, padded).

    `fixed` closes a batch `max_wait_s` after its first job arrived. `adaptive` (the default)
    holds a forming batch for as long as the fewest joules per job call for while the job
    type's p95 latency objective still holds, and never longer than `max_hold_s`
    (workers/serving/adaptive.py). Neither closes a batch that is not full while more jobs
    are already on their way to this worker, but only up to `max_wait_s` + one grace period
    for `fixed` (workers/serving/batching.py).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: BatchMode = "adaptive"
    max_batch_size: int = Field(default=16, ge=1, le=1024)
    max_wait_s: float = Field(default=0.05, ge=0, le=60)
    max_hold_s: float = Field(default=600.0, ge=0, le=86_400)
    max_batch_tokens: int = Field(default=32768, ge=16, le=10_000_000)


class GenerationSettings(BaseModel):
    """Generation limits for one job type; jobs share a batch only if all but `max_new_tokens` agree."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(default=160, ge=1, le=8192)
    min_new_tokens: int = Field(default=1, ge=0, le=8192)
    do_sample: bool = False
    temperature: float = Field(default=1.0, gt=0, le=5)
    top_p: float = Field(default=1.0, gt=0, le=1)
    repetition_penalty: float = Field(default=1.0, ge=1, le=5)

    def batch_key(self) -> tuple[object, ...]:
        """What must be equal for two jobs to share one `generate` call."""
        return (self.min_new_tokens, self.do_sample, self.temperature, self.top_p, self.repetition_penalty)
