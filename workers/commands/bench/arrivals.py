"""Open-loop arrivals for the load bench: a seeded Poisson schedule and a seeded job-type mix.

Pure functions: the same seed gives the same schedule, so both batch policies see the same jobs
at the same offsets.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from greenq.shared.job_types import JobType


@dataclass(frozen=True)
class Arrival:
    at_s: float  # seconds after the window opens
    job_type: JobType
    nth_of_type: int  # 0, 1, 2, … within its type: picks the payload


def poisson_times(rate_per_s: float, duration_s: float, rng: random.Random) -> list[float]:
    """Arrival offsets in [0, duration_s): exponential gaps with mean 1 / rate_per_s."""
    if rate_per_s <= 0 or duration_s <= 0:
        raise ValueError("rate_per_s and duration_s must be positive")
    times: list[float] = []
    at_s = rng.expovariate(rate_per_s)
    while at_s < duration_s:
        times.append(at_s)
        at_s += rng.expovariate(rate_per_s)
    return times


def mix_counts(total: int, mix: Mapping[JobType, float]) -> dict[JobType, int]:
    """`total` split by the mix's weights, largest remainders rounded up, so the counts add up."""
    weight = sum(mix.values())
    if weight <= 0 or any(w < 0 for w in mix.values()):
        raise ValueError("mix weights must be non-negative and not all zero")
    exact = {t: total * w / weight for t, w in mix.items()}
    counts = {t: math.floor(x) for t, x in exact.items()}
    by_remainder = sorted(mix, key=lambda t: (counts[t] - exact[t], list(mix).index(t)))
    for job_type in by_remainder[: total - sum(counts.values())]:
        counts[job_type] += 1
    return counts


def job_types_for(total: int, mix: Mapping[JobType, float], rng: random.Random) -> list[JobType]:
    """`total` job types in the mix's proportions (as near as whole jobs allow), in seeded random order."""
    types = [t for t, n in mix_counts(total, mix).items() for _ in range(n)]
    rng.shuffle(types)
    return types


def number_by_type(types: Sequence[JobType]) -> list[int]:
    """For each position, how many jobs of the same type came before it."""
    seen: dict[JobType, int] = {}
    numbers = []
    for job_type in types:
        numbers.append(seen.get(job_type, 0))
        seen[job_type] = numbers[-1] + 1
    return numbers


def schedule(rate_per_s: float, duration_s: float, mix: Mapping[JobType, float], seed: int) -> list[Arrival]:
    """Poisson arrivals at `rate_per_s` for `duration_s`, each with a job type from `mix`."""
    rng = random.Random(seed)
    times = poisson_times(rate_per_s, duration_s, rng)
    types = job_types_for(len(times), mix, rng)
    return [Arrival(at, t, n) for at, t, n in zip(times, types, number_by_type(types), strict=True)]


def burst(total: int, mix: Mapping[JobType, float], seed: int) -> list[Arrival]:
    """`total` jobs all at offset 0 (a saturation burst), typed from `mix`."""
    types = job_types_for(total, mix, random.Random(seed))
    return [Arrival(0.0, t, n) for t, n in zip(types, number_by_type(types), strict=True)]
