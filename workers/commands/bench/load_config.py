"""The load bench's knobs: fractions, duration, policies, job-type mix and bench-scaled objectives.

`LoadConfig` holds them; `parse_*` read the command line's forms, `check_load` says what to change,
and `policy_env` turns one policy into the worker's GREENQ_* variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from greenq.shared.policies import BatchMode
from greenq.workers.commands.bench.mixed_workload import TEMPLATES
from greenq.workers.commands.bench.workload import BenchConfig


@dataclass(frozen=True)
class LoadConfig:
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0)  # of the ceiling's jobs/s
    duration_s: float = 120.0  # of arrivals per fraction; results are awaited after it
    policies: tuple[BatchMode, ...] = ("fixed", "adaptive")
    mix: dict[str, float] = field(default_factory=lambda: {"reply": 0.5, "description": 0.3, "strategy": 0.2})
    # Bench-scaled p95 objectives. The real defaults (10 s, 15 min, 1 h) would need hour-long windows,
    # and on the CPU reference one batch of 16 takes ~4.5 s: 30 s is to it what 10 s is to a GPU whose
    # batch takes ~1.5 s. `--objectives reply=10,...` measures the real reply default (ops/bench/RESULTS.md).
    objectives_s: dict[str, float] = field(
        default_factory=lambda: {"reply": 30.0, "description": 60.0, "strategy": 120.0}
    )
    burst_batches: int = 4  # the saturation burst is this many × B jobs, all at once
    payloads_per_type: int = 32  # distinct prompts per type; arrivals cycle through them
    # A cap on a window's expected jobs: it shortens the window at high rates. For --quick, where the
    # tiny model's in-process ceiling is far above what a worker process can serve and varies run to run.
    max_jobs_per_window: int | None = None

    def arrivals_s(self, rate_per_s: float) -> float:
        """How long a window at `rate_per_s` keeps jobs arriving."""
        if self.max_jobs_per_window is None:
            return self.duration_s
        return min(self.duration_s, self.max_jobs_per_window / rate_per_s)


def quick_load(load: LoadConfig) -> LoadConfig:
    return replace(load, duration_s=3.0, payloads_per_type=8, max_jobs_per_window=60)


def parse_weights(text: str) -> dict[str, float]:
    """`reply=0.5,description=0.3` → {"reply": 0.5, "description": 0.3}."""
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise ValueError(f"{text!r}: give job_type=number pairs, comma-separated (reply=0.5,strategy=0.2)")
    weights = {name.strip(): _number(value, text) for name, value in pairs}
    if any(v < 0 for v in weights.values()):
        raise ValueError(f"{text!r}: every number must be zero or more")
    return weights


def parse_policies(text: str) -> tuple[BatchMode, ...]:
    modes: list[BatchMode] = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        if name not in ("fixed", "adaptive"):
            raise ValueError(f"unknown batch policy {name!r}; use fixed, adaptive or both (fixed,adaptive)")
        modes.append("fixed" if name == "fixed" else "adaptive")
    if not modes:
        raise ValueError("give at least one batch policy: fixed, adaptive or fixed,adaptive")
    return tuple(modes)


def parse_fractions(text: str) -> tuple[float, ...]:
    fractions = tuple(_number(f, text) for f in text.split(",") if f.strip())
    if not fractions or any(not 0 < f <= 10 for f in fractions):
        raise ValueError(f"{text!r}: fractions of the ceiling, above 0 and at most 10, comma-separated (0.25,0.5,1)")
    return fractions


def _number(text: str, whole: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{whole!r}: {text.strip()!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{whole!r}: {text.strip()!r} is not a finite number")
    return value


def check_load(load: LoadConfig) -> LoadConfig:
    """`load` itself, or a ValueError that says what to change."""
    unknown = [t for t in load.mix if t not in TEMPLATES]
    if unknown:
        raise ValueError(f"no bench workload for job type {', '.join(unknown)}; mix {', '.join(TEMPLATES)}")
    if not any(load.mix.values()):
        raise ValueError("the job-type mix needs a weight above zero")
    missing = [t for t in load.mix if t not in load.objectives_s]
    if missing:
        raise ValueError(f"no bench latency objective for {', '.join(missing)}; give one with --objectives")
    if load.duration_s <= 0:
        raise ValueError("--duration-s must be above zero")
    return load


def policy_env(base: Mapping[str, str], config: BenchConfig, load: LoadConfig, mode: BatchMode) -> dict[str, str]:
    """The worker's env: `mode` and the bench's batch, generation and objective settings for every type."""
    env = dict(base)
    for job_type in load.mix:
        prefix = job_type.upper()
        env |= {
            f"GREENQ_BATCH__{prefix}__MODE": mode,
            f"GREENQ_BATCH__{prefix}__MAX_BATCH_SIZE": str(config.batch_size),
            f"GREENQ_BATCH__{prefix}__MAX_WAIT_S": str(config.max_wait_s),
            f"GREENQ_BATCH__{prefix}__MAX_BATCH_TOKENS": "10000000",
            f"GREENQ_GENERATION__{prefix}__MAX_NEW_TOKENS": str(config.new_tokens),
            f"GREENQ_GENERATION__{prefix}__MIN_NEW_TOKENS": str(config.new_tokens),
            f"GREENQ_LATENCY_OBJECTIVE_S__{prefix}": str(load.objectives_s[job_type]),
        }
    return env
