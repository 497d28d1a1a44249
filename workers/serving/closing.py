"""When a forming static batch closes: the fixed rule, or the adaptive plan from what this worker learned.

The adaptive policy (`greenq.workers.serving.adaptive`) needs three things the batch thread observes: each
job type's arrival rate, the learned cost of each batch size (`greenq.workers.serving.cost_model`), and the
jobs already on their way (announced to this worker, or takeable from the broker's backlog). This
module keeps them and turns them into the `ClosingRule` that `batching.select_batch` applies.

The continuous loop holds nothing (a job joins at the next step), so it uses none of this: there
the adaptive mode does not apply and the batcher runs each job type by the fixed rule.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from greenq.shared.job_types import JobType
from greenq.shared.policies import BatchPolicy
from greenq.workers.serving.adaptive import Forming, plan
from greenq.workers.serving.arrival_rate import ArrivalRate
from greenq.workers.serving.batching import Closing, ClosingRule, PendingJob, fixed_closing
from greenq.workers.serving.cost_model import BatchCostModel

Backlog = Callable[[], Mapping[JobType, int]]  # jobs of each type waiting in the broker this worker could take


class ClosingPolicy:
    def __init__(self, objectives_s: Mapping[JobType, float] | None = None, backlog: Backlog | None = None) -> None:
        self._objectives_s = dict(objectives_s or {})
        self._backlog = backlog or dict
        self._costs: defaultdict[JobType, BatchCostModel] = defaultdict(BatchCostModel)
        self._arrivals: defaultdict[JobType, ArrivalRate] = defaultdict(ArrivalRate)
        self._last_plan: dict[JobType, Closing] = {}
        self._lock = threading.Lock()  # task threads report arrivals; the batch thread plans and learns

    def observe_arrival(self, job_type: JobType, at: float) -> None:
        with self._lock:
            self._arrivals[job_type].observe(at)

    def arrivals_per_s(self, job_type: JobType, now: float) -> float:
        with self._lock:
            return self._arrivals[job_type].per_s(now)

    def backlog(self) -> Mapping[JobType, int]:
        return self._backlog()

    def adaptive(self, types: set[JobType], policies: Mapping[JobType, BatchPolicy]) -> bool:
        """Whether a batch of these types is planned adaptively (each type adaptive, with an objective)."""
        return all(policies[t].mode == "adaptive" and t in self._objectives_s for t in types)

    def rule(self, policies: Mapping[JobType, BatchPolicy], now: float, expecting: Counter[JobType]) -> ClosingRule:
        """How each forming batch closes now: the fixed rule, or the adaptive plan once it has measurements."""
        backlog = self._backlog()

        def rule(members: Sequence[PendingJob]) -> Closing:
            types = {job.job_type for job in members}
            incoming = sum(expecting[t] + backlog.get(t, 0) for t in types)
            if self.adaptive(types, policies):
                closing = plan(self._forming(members, types, policies, incoming, now), self._costs[members[0].job_type])
                if closing is not None:
                    self._last_plan[members[0].job_type] = closing
                    return closing
            return fixed_closing(members, policies, incoming, now)

        return rule

    def _forming(
        self,
        members: Sequence[PendingJob],
        types: set[JobType],
        policies: Mapping[JobType, BatchPolicy],
        incoming: int,
        now: float,
    ) -> Forming:
        cap = min(policies[t].max_batch_size for t in types)
        return Forming(
            size=min(len(members), cap),
            cap=cap,
            first_arrived_at=min(job.arrived_at for job in members),
            oldest_submitted_at=min(job.objective_clock_from for job in members),
            objective_s=min(self._objectives_s[t] for t in types),
            max_hold_s=min(policies[t].max_hold_s for t in types),
            arrivals_per_s=sum(self.arrivals_per_s(t, now) for t in types),
            incoming=incoming,
            now=now,
            deadline_at=min((job.deadline_at for job in members if job.deadline_at is not None), default=None),
        )

    def predicted_joules(self, jobs: Sequence[PendingJob], policies: Mapping[JobType, BatchPolicy]) -> float | None:
        """The energy the adaptive policy predicts for this batch as it closes; None where it did not plan it."""
        if not self.adaptive({job.job_type for job in jobs}, policies):
            return None
        cost = self._costs[jobs[0].job_type].predict(len(jobs))
        return None if cost is None else cost.joules

    def learn(self, job_type: JobType, size: int, seconds: float, joules: float) -> None:
        with self._lock:
            self._costs[job_type].observe(size, seconds, joules)

    def state(self, policies: Mapping[JobType, BatchPolicy], now: float) -> dict[str, Any]:
        """Per job type: what the adaptive policy observed, learned and last chose (`greenq pool status`)."""
        with self._lock:
            return {
                job_type: {
                    "mode": policy.mode,
                    "objective_s": self._objectives_s.get(job_type),
                    "arrivals_per_s": round(self._arrivals[job_type].per_s(now), 3),
                    "last_target_size": getattr(self._last_plan.get(job_type), "target_size", None),
                    "learned_cost_by_size": self._costs[job_type].snapshot(),
                }
                for job_type, policy in policies.items()
            }
