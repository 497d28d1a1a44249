"""The adaptive batch policy on simulated arrivals: the pure planner, its cost model and arrival rate.

The simulator below plays the batcher's loop (workers/serving/batcher.py) with the same pure
functions: `select_batch` and `next_wakeup` with a closing rule built from `plan`, a device that
runs one batch at a time, and a "true" cost per batch size the policy must learn.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest

from greenq.shared.policies import BACKLOG_GRACE_S, BatchPolicy
from greenq.workers.serving.adaptive import SAFETY, Forming, plan
from greenq.workers.serving.arrival_rate import ArrivalRate
from greenq.workers.serving.batching import Closing, PendingJob, fixed_closing, next_wakeup, select_batch
from greenq.workers.serving.cost_model import BatchCostModel

CAP = 16
OBJECTIVE_S = 10.0


def true_seconds(size: int) -> float:
    return 0.2 + 0.05 * size  # a fixed cost per batch and a cost per row: 1 s at the cap


def true_joules(size: int) -> float:
    return 20.0 + 4.0 * size  # J/job: 24 at size 1, 5.25 at the cap


@dataclass
class Run:
    joules_per_job: float
    p95_latency_s: float
    mean_batch: float
    last_batch_latency_s: float  # of the stream's last job


def simulate(mode: str, rate_per_s: float, jobs: int = 600, seed: int = 1, objective_s: float = OBJECTIVE_S) -> Run:
    rng = random.Random(seed)
    arrivals, t = [], 0.0
    for _ in range(jobs):
        t += rng.expovariate(rate_per_s)
        arrivals.append(t)
    policies = {"reply": BatchPolicy(mode=mode, max_batch_size=CAP, max_wait_s=0.05)}  # type: ignore[arg-type]
    costs, rate = BatchCostModel(), ArrivalRate()
    pending: list[PendingJob] = []
    latencies: list[float] = []
    sizes: list[int] = []
    joules = 0.0
    now, device_free_at, nxt = 0.0, 0.0, 0

    def rule(members: list[PendingJob]) -> Closing:
        forming = Forming(
            size=min(len(members), CAP),
            cap=CAP,
            first_arrived_at=min(j.arrived_at for j in members),
            oldest_submitted_at=min(j.objective_clock_from for j in members),
            objective_s=objective_s,
            max_hold_s=600,
            arrivals_per_s=rate.per_s(now),
            incoming=0,
            now=now,
        )
        closing = plan(forming, costs) if mode == "adaptive" else None
        return closing or fixed_closing(members, policies)

    while nxt < jobs or pending:
        now = max(now, device_free_at)
        while nxt < jobs and arrivals[nxt] <= now:
            rate.observe(arrivals[nxt])
            pending.append(PendingJob(nxt, "reply", "k", 8, arrivals[nxt], 30, 32))
            nxt += 1
        selection = select_batch(pending, policies, now, rule) if pending else None
        if selection is not None:
            size = len(selection.jobs)
            finished = now + true_seconds(size)
            costs.observe(size, true_seconds(size), true_joules(size))
            joules += true_joules(size)
            sizes.append(size)
            latencies += [finished - j.arrived_at for j in selection.jobs]
            taken = {j.seq for j in selection.jobs}
            pending = [j for j in pending if j.seq not in taken]
            now = device_free_at = finished
            continue
        wake = next_wakeup(pending, policies, rule) if pending else None
        now = min(wake if wake is not None else math.inf, arrivals[nxt] if nxt < jobs else math.inf)
    last_s = latencies[-1]
    latencies.sort()
    return Run(joules / jobs, latencies[int(0.95 * len(latencies))], sum(sizes) / len(sizes), last_s)


def ceiling_jobs_per_s() -> float:
    return CAP / true_seconds(CAP)


@pytest.mark.parametrize("load", [0.1, 0.25, 0.5])
def test_below_saturation_adaptive_spends_near_saturation_joules_within_the_objective(load: float) -> None:
    fixed = simulate("fixed", load * ceiling_jobs_per_s())
    adaptive = simulate("adaptive", load * ceiling_jobs_per_s())
    saturation_j = true_joules(CAP) / CAP
    assert adaptive.p95_latency_s <= OBJECTIVE_S
    assert adaptive.joules_per_job <= 1.3 * saturation_j, adaptive
    assert fixed.joules_per_job >= 1.5 * adaptive.joules_per_job, (fixed, adaptive)


def test_under_heavy_load_adaptive_runs_full_batches_like_fixed() -> None:
    fixed = simulate("fixed", 1.5 * ceiling_jobs_per_s(), jobs=800)
    adaptive = simulate("adaptive", 1.5 * ceiling_jobs_per_s(), jobs=800)
    assert adaptive.mean_batch >= 0.95 * CAP
    assert adaptive.joules_per_job <= 1.02 * fixed.joules_per_job


def test_the_last_batch_of_a_stream_that_stops_is_not_held_to_its_latest_start() -> None:
    run = simulate("adaptive", 4.0, jobs=50, objective_s=120.0)  # 12.5 s of arrivals, then none
    assert run.mean_batch >= 8
    assert run.last_batch_latency_s <= 0.25 * SAFETY * 120.0, run


def test_a_tight_objective_leaves_it_to_the_fixed_rule_and_a_loose_one_holds_for_the_cap() -> None:
    costs = BatchCostModel()
    for size in (1, 8, 16):
        costs.observe(size, true_seconds(size), true_joules(size))
    forming = Forming(
        size=2,
        cap=CAP,
        first_arrived_at=0.0,
        oldest_submitted_at=0.0,
        objective_s=0.5,  # a batch of 2 already takes longer than the objective's safe share
        max_hold_s=600,
        arrivals_per_s=4.0,
        incoming=0,
        now=0.1,
    )
    assert plan(forming, costs) is None  # too late to hold at all: the fixed rule closes it
    loose = plan(Forming(**{**forming.__dict__, "objective_s": 60.0}), costs)
    assert loose is not None and loose.target_size == CAP
    # it starts early enough that the oldest job meets SAFETY × objective even if no job comes
    assert loose.at + 1.25 * true_seconds(CAP) <= SAFETY * 60.0 + 1e-9


def test_jobs_already_on_their_way_count_and_are_rechecked() -> None:
    costs = BatchCostModel()
    for size in (1, 16):
        costs.observe(size, true_seconds(size), true_joules(size))
    closing = plan(
        Forming(
            size=4,
            cap=CAP,
            first_arrived_at=0.0,
            oldest_submitted_at=0.0,
            objective_s=10.0,
            max_hold_s=600,
            arrivals_per_s=0.0,  # nothing new arrives, but twelve are already being fetched
            incoming=12,
            now=0.0,
        ),
        costs,
    )
    assert closing is not None and closing.target_size == CAP and closing.recheck_at is not None


def test_a_job_deadline_ends_the_hold_before_it() -> None:
    costs = BatchCostModel()
    for size in (1, 16):
        costs.observe(size, true_seconds(size), true_joules(size))
    loose = Forming(2, CAP, 0.0, 0.0, 600.0, 600, 1.0, 0, 0.0)
    held = plan(loose, costs)
    assert held is not None and held.at > 100
    bounded = plan(Forming(**{**loose.__dict__, "deadline_at": 5.0}), costs)
    assert bounded is not None and bounded.at + 1.25 * true_seconds(bounded.target_size or CAP) <= 5.0


def test_when_the_objective_is_already_lost_the_fixed_rule_decides() -> None:
    """Seen in a saturation run: a batch of 16 took longer than the reply objective, so every size read
    as too late and the first batch closed with 1 job while 31 were being fetched: a straggler later.
    The fixed rule (max wait, then jobs on their way) decides such batches."""
    costs = BatchCostModel()
    costs.observe(16, 20.0, 160.0)  # one batch of 16 took 20 s; the objective is 10 s
    assert plan(Forming(1, CAP, 0.0, 0.0, 10.0, 600, 50.0, incoming=31, now=0.01), costs) is None


def test_nothing_measured_means_the_fixed_rule() -> None:
    forming = Forming(1, CAP, 0.0, 0.0, 10.0, 600, 1.0, 0, 0.0)
    assert plan(forming, BatchCostModel()) is None


def test_max_hold_bounds_the_hold_whatever_the_objective() -> None:
    costs = BatchCostModel()
    costs.observe(1, 0.1, 10.0)
    costs.observe(16, 0.5, 30.0)
    forming = Forming(1, CAP, 0.0, 0.0, 3600.0, 5.0, 0.5, 0, 0.0)
    closing = plan(forming, costs)
    assert closing is not None and closing.at <= 5.0


def test_fixed_rule_waits_a_grace_period_for_incoming_jobs() -> None:
    policies = {"reply": BatchPolicy(mode="fixed", max_batch_size=8, max_wait_s=0.05)}
    members = [PendingJob(0, "reply", "k", 8, 1.0, 10, 10)]
    assert fixed_closing(members, policies) == Closing(1.05)
    waiting = fixed_closing(members, policies, incoming=3, now=1.06)
    assert waiting.at == pytest.approx(1.05 + BACKLOG_GRACE_S) and waiting.recheck_at == pytest.approx(1.08)
    assert select_batch(members, policies, 1.06, lambda m: waiting) is None
    assert select_batch(members, policies, 1.06, lambda m: fixed_closing(m, policies)) is not None


def test_cost_model_recovers_an_affine_cost_and_starts_from_a_prior() -> None:
    model = BatchCostModel()
    model.observe(4, 1.2, 9.5)
    one = model.predict(8)
    assert one is not None and one.seconds == pytest.approx(2.4) and one.joules == pytest.approx(9.5 * math.sqrt(2))
    model = BatchCostModel()
    for size in (1, 2, 4, 8):
        for _ in range(3):
            model.observe(size, true_seconds(size), true_joules(size))
    at_cap = model.predict(CAP)
    assert at_cap is not None
    assert at_cap.seconds == pytest.approx(true_seconds(CAP)) and at_cap.joules == pytest.approx(true_joules(CAP))
    assert model.snapshot()["8"] == {"seconds": 0.6, "joules": 52.0, "batches": 3}


def test_cost_model_never_predicts_a_negative_fixed_cost() -> None:
    model = BatchCostModel()
    model.observe(2, 0.1, 1.0)
    model.observe(4, 0.5, 9.0)  # a line through these two would cross zero at size 1.5
    small = model.predict(1)
    assert small is not None and small.seconds >= 0 and small.joules >= 0


def test_arrival_rate_counts_the_trailing_window_and_forgets_a_burst() -> None:
    rate = ArrivalRate(window_s=2.0)
    for t in (0.0, 0.5, 1.0, 1.5, 2.0):
        rate.observe(t)
    assert rate.per_s(2.0) == 2.0  # the arrival at 0.0 has just left the window
    assert rate.per_s(2.6) == 1.5
    assert rate.per_s(4.0) == 0.0  # a burst, then silence: nothing more is expected
    young = ArrivalRate(window_s=60.0)
    for t in (10.0, 10.5, 11.0, 11.5):
        young.observe(t)
    assert young.per_s(11.5) == pytest.approx(4 / 1.5)  # 1.5 s since the first arrival, not a minute
    stream = ArrivalRate(window_s=60.0)
    for i in range(20):
        stream.observe(i * 0.1)  # 10 jobs/s for 2 s, then nothing
    assert stream.per_s(2.0) == pytest.approx(10.0)
    assert stream.per_s(2.1) == pytest.approx(20 / 2.1)  # silent for 2 mean gaps: still a stream
    assert stream.per_s(2.3) == 0.0  # silent for more than 3 mean gaps: it stopped
    fast = ArrivalRate(window_s=60.0, max_kept=10)
    for i in range(20):
        fast.observe(i * 0.01)
    assert fast.per_s(0.19) == pytest.approx(10 / 0.09)  # more than it keeps: the span they cover
