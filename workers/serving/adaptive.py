"""The adaptive batch policy: hold a forming batch for the fewest joules per job its objective allows.

Pure: it reads what the batcher knows about one forming batch (`Forming`), the arrival rate
and the learned cost of each batch size (`greenq.workers.serving.cost_model`), and says when the
batch should close (`Closing`). For each size it could grow to, it asks two questions:

* can it get there in time? The jobs still missing arrive at the observed rate (jobs already on
  their way to this worker count as arrived), and the batch must then start early enough that
  its oldest job, padded batch time included, finishes within `SAFETY` × the p95 objective, and
  every job before its own deadline;
* what would a job cost there? The learned joules of that size over its jobs.

It holds out for the cheapest size it can reach, and closes the batch when it holds that many
jobs or at that size's latest start, whichever comes first. If the jobs have not come by when
they were expected, it plans again: the arrival rate reads lower by then
(workers/serving/arrival_rate.py), so the last batch of a stream that stopped is not held to
its latest start. Under heavy load every batch is full before its latest start: the policy
then behaves like full fixed batches. It returns None, and the fixed rule applies, while
nothing has been measured yet (the fixed rule's batches are its first measurements) and when
even the jobs at hand can no longer meet the objective (a device slower than the objective
assumes): waiting cannot help then, and the fixed rule still takes the jobs on their way.

>>> closing = plan(Forming(size=3, cap=16, first_arrived_at=0.0, oldest_submitted_at=0.0, objective_s=10,
...                        max_hold_s=600, arrivals_per_s=2.0, incoming=0, now=0.5), learned_costs)
>>> closing.target_size, closing.at  # hold out for this many jobs, but start by `at` whatever comes
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from greenq.workers.serving.batching import INCOMING_RECHECK_S, Closing
from greenq.workers.serving.cost_model import BatchCostModel

SAFETY = 0.8  # aim the oldest job at 80 % of its objective: room for the estimates' noise
TIME_MARGIN = 1.25  # a batch's predicted seconds, padded by a quarter
MAX_CANDIDATES = 64  # sizes evaluated per decision, spread evenly up to the cap


@dataclass(frozen=True)
class Forming:
    """One forming batch, as the batcher sees it at `now`."""

    size: int  # jobs in it now
    cap: int  # the most one batch may hold (size and token limits, an out-of-memory cap)
    first_arrived_at: float  # when its first job reached the batcher
    oldest_submitted_at: float  # when its oldest job was submitted (the objective counts from there)
    objective_s: float  # the tightest p95 objective among its job types
    max_hold_s: float  # the longest any of its jobs may be held
    arrivals_per_s: float  # jobs of its types arriving at this worker
    incoming: int  # jobs of its types already on their way to this worker
    now: float
    deadline_at: float | None = None  # the earliest deadline among its jobs: it must finish by then


def plan(forming: Forming, cost: BatchCostModel) -> Closing | None:
    """When this batch should close; None for the fixed rule (nothing measured yet, or already too late)."""
    f = forming
    budget_end = f.oldest_submitted_at + SAFETY * f.objective_s
    if f.deadline_at is not None:  # a job's own deadline is firmer than its type's objective
        budget_end = min(budget_end, f.deadline_at)
    hold_end = f.first_arrived_at + f.max_hold_s
    options: list[tuple[int, float, float, float]] = []  # (size, J per job, latest start, reached at)
    for size in _sizes(f.size, max(f.size, f.cap)):
        predicted = cost.predict(size)
        if predicted is None:
            return None
        missing = size - f.size - f.incoming
        if missing <= 0:
            reached_at = f.now
        elif f.arrivals_per_s > 0:
            reached_at = f.now + missing / f.arrivals_per_s
        else:
            reached_at = math.inf
        latest_start = min(budget_end - TIME_MARGIN * predicted.seconds, hold_end)
        options.append((size, predicted.joules / size, latest_start, reached_at))
    at_hand = min(f.size + max(0, f.incoming), options[-1][0])
    if options[0][2] <= f.now:
        # Too late for the objective (or the hold) even now: waiting cannot save it. The fixed rule
        # then closes the batch, and it still waits for jobs on their way (no straggler batches).
        return None
    reachable = [o for o in options if o[0] == f.size or o[3] <= o[2]]
    size, _, latest_start, reached_at = min(reachable, key=lambda o: (o[1], o[0]))
    if size <= f.size:
        return Closing(at=f.now, target_size=f.size)
    # Look again when the jobs should have come: if they have not, the rate reads lower and the plan changes.
    recheck_at = f.now + INCOMING_RECHECK_S if at_hand >= size else reached_at
    return Closing(at=max(f.now, latest_start), target_size=size, recheck_at=recheck_at)


def _sizes(smallest: int, largest: int) -> list[int]:
    step = max(1, (largest - smallest) // MAX_CANDIDATES)
    sizes = list(range(smallest, largest + 1, step))
    return sizes if sizes[-1] == largest else [*sizes, largest]
