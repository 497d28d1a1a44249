"""Splitting one batch's measured energy among its jobs (pure).

Rule: each job's share is proportional to its tokens, prompt plus generated — the
convention behind J/token figures. Shares are computed in whole microjoules with the
largest-remainder method, so they add up exactly to the batch's measured energy.
"""

from __future__ import annotations

from collections.abc import Sequence

MICROJOULES_PER_JOULE = 1_000_000


def split_microjoules(total_uj: int, weights: Sequence[int]) -> list[int]:
    """Integer shares of `total_uj`, proportional to `weights`, summing exactly to it."""
    if not weights:
        return []
    if total_uj < 0:
        raise ValueError("energy cannot be negative")
    weight_sum = sum(weights)
    if weight_sum <= 0:
        weights, weight_sum = [1] * len(weights), len(weights)
    shares = [total_uj * w // weight_sum for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: -(total_uj * weights[i] % weight_sum))
    for i in remainders[: total_uj - sum(shares)]:
        shares[i] += 1
    return shares


def attribute_energy(total_j: float, token_counts: Sequence[int]) -> list[float]:
    """Each job's joules, by token share; the shares sum to `total_j` to the microjoule."""
    total_uj = round(max(0.0, total_j) * MICROJOULES_PER_JOULE)
    return [uj / MICROJOULES_PER_JOULE for uj in split_microjoules(total_uj, token_counts)]
