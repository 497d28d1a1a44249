"""What a batch of each size costs on this worker's model and device, learned from its own batches.

Per batch size: exponentially weighted means of seconds and joules. Between and beyond the
sizes seen, an affine fit over them (a fixed cost per batch plus a cost per row: how static
batched decoding behaves, on a GPU and on a CPU alike), weighted by how often each size ran.
With a single size seen, the prior is that time grows with the batch (pessimistic for the
latency objective) and energy with its square root (batching pays, as it does on every device
measured in ops/bench/RESULTS.md), so the policy grows its batches and learns the real slope.

>>> model = BatchCostModel()
>>> model.observe(size=4, seconds=1.2, joules=9.5)
>>> model.predict(8)
Cost(seconds=2.4, joules=13.43...)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EWMA_WEIGHT = 0.2  # the newest batch's weight in its size's mean
MAX_POINT_WEIGHT = 10.0  # a size seen often counts at most this much in the fit


@dataclass(frozen=True)
class Cost:
    seconds: float
    joules: float


@dataclass
class _SizeStats:
    seconds: float
    joules: float
    batches: int


class BatchCostModel:
    """Online estimates of a batch's seconds and joules by its size; not thread-safe (the batcher's own)."""

    def __init__(self) -> None:
        self._sizes: dict[int, _SizeStats] = {}

    def observe(self, size: int, seconds: float, joules: float) -> None:
        stats = self._sizes.get(size)
        if stats is None:
            self._sizes[size] = _SizeStats(seconds, joules, 1)
            return
        stats.seconds += EWMA_WEIGHT * (seconds - stats.seconds)
        stats.joules += EWMA_WEIGHT * (joules - stats.joules)
        stats.batches += 1

    @property
    def batches(self) -> int:
        return sum(s.batches for s in self._sizes.values())

    def predict(self, size: int) -> Cost | None:
        """Seconds and joules of a batch of `size`; None before the first observation."""
        if not self._sizes:
            return None
        if len(self._sizes) == 1:
            (seen, stats) = next(iter(self._sizes.items()))
            ratio = size / seen
            return Cost(stats.seconds * max(1.0, ratio), stats.joules * math.sqrt(ratio))
        points = [(b, s.seconds, s.joules, min(float(s.batches), MAX_POINT_WEIGHT)) for b, s in self._sizes.items()]
        return Cost(_affine(points, 1, size), _affine(points, 2, size))

    def snapshot(self) -> dict[str, dict[str, float]]:
        """What was learned, by size: for `greenq pool status`."""
        return {
            str(b): {"seconds": round(s.seconds, 4), "joules": round(s.joules, 3), "batches": s.batches}
            for b, s in sorted(self._sizes.items())
        }


def _affine(points: list[tuple[int, float, float, float]], column: int, size: int) -> float:
    """Weighted least squares y = a + b·x over the points, clamped to a ≥ 0 and b ≥ 0, at x = size."""
    weight = sum(p[3] for p in points)
    mean_x = sum(p[0] * p[3] for p in points) / weight
    mean_y = sum(p[column] * p[3] for p in points) / weight
    var_x = sum(p[3] * (p[0] - mean_x) ** 2 for p in points)
    cov = sum(p[3] * (p[0] - mean_x) * (p[column] - mean_y) for p in points)
    slope = max(0.0, cov / var_x) if var_x > 0 else 0.0
    intercept = mean_y - slope * mean_x
    if intercept < 0:  # through the origin instead: cost proportional to size
        slope = sum(p[3] * p[0] * p[column] for p in points) / sum(p[3] * p[0] ** 2 for p in points)
        intercept = 0.0
    return intercept + slope * size
