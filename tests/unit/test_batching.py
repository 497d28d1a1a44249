"""Batch formation: pure functions, no threads or models."""

from __future__ import annotations

from greenq.shared.job_types import JobType
from greenq.shared.policies import BatchPolicy
from greenq.workers.serving.batching import PendingJob, next_wakeup, padded_tokens, select_batch, split_expired

POLICIES = {
    "reply": BatchPolicy(max_batch_size=4, max_wait_s=0.02, max_batch_tokens=10_000),
    "description": BatchPolicy(max_batch_size=8, max_wait_s=0.05, max_batch_tokens=10_000),
    "strategy": BatchPolicy(max_batch_size=8, max_wait_s=0.2, max_batch_tokens=200),
}


def job(
    seq: int,
    job_type: JobType = "description",
    at: float = 0.0,
    key: str = "m",
    priority: int = 5,
    prompt: int = 10,
    new: int = 10,
    deadline: float | None = None,
) -> PendingJob:
    return PendingJob(seq, job_type, key, priority, at, prompt, new, deadline)


def test_burst_fills_to_max_without_waiting() -> None:
    jobs = [job(i) for i in range(20)]
    selection = select_batch(jobs, POLICIES, now=0.0)
    assert selection is not None and selection.full
    assert [j.seq for j in selection.jobs] == list(range(8))


def test_trickle_waits_for_max_wait_from_first_arrival() -> None:
    jobs = [job(0, at=0.0), job(1, at=0.03)]
    assert select_batch(jobs, POLICIES, now=0.049) is None
    assert next_wakeup(jobs, POLICIES) == 0.05
    selection = select_batch(jobs, POLICIES, now=0.05)
    assert selection is not None and not selection.full and len(selection.jobs) == 2


def test_different_models_or_settings_never_share() -> None:
    jobs = [job(0, key="a"), job(1, key="b"), job(2, key="a")]
    selection = select_batch(jobs, POLICIES, now=1.0)
    assert selection is not None and {j.batch_key for j in selection.jobs} == {"a"}
    assert [j.seq for j in selection.jobs] == [0, 2]


def test_types_share_and_the_tightest_limit_applies() -> None:
    jobs = [job(i, "reply", priority=8) for i in range(3)] + [job(10 + i) for i in range(6)]
    selection = select_batch(jobs, POLICIES, now=0.0)
    assert selection is not None and selection.full
    assert len(selection.jobs) == 4  # reply's max_batch_size caps the mixed batch
    assert {j.job_type for j in selection.jobs} == {"reply", "description"}


def test_most_urgent_first_within_and_across_groups() -> None:
    jobs = [job(0, key="slow", priority=2, at=0.0), job(1, key="fast", priority=9, at=0.01)]
    selection = select_batch(jobs, POLICIES, now=1.0)
    assert selection is not None and selection.jobs[0].seq == 1


def test_token_budget_counts_padding() -> None:
    jobs = [job(i, "strategy", prompt=40, new=10) for i in range(6)]
    assert padded_tokens(jobs[:4]) == 200
    selection = select_batch(jobs, POLICIES, now=0.0)
    assert selection is not None and selection.full and len(selection.jobs) == 4


def test_a_job_over_budget_still_runs_alone() -> None:
    huge = job(0, "strategy", prompt=500, new=100)
    selection = select_batch([huge], POLICIES, now=1.0)
    assert selection is not None and selection.jobs == (huge,)


def test_solo_jobs_run_alone_and_never_join_others() -> None:
    suspect = PendingJob(1, "reply", "m", 9, 0.0, 10, 10, None, solo=True)
    jobs = [job(0, "reply", priority=8), suspect, job(2, "reply", priority=8)]
    first = select_batch(jobs, POLICIES, now=1.0)
    assert first is not None and first.jobs == (suspect,)
    rest = select_batch([j for j in jobs if j is not suspect], POLICIES, now=1.0)
    assert rest is not None and [j.seq for j in rest.jobs] == [0, 2]
    normal_first = select_batch([job(0, "reply", priority=9), suspect], POLICIES, now=1.0)
    assert normal_first is not None and [j.seq for j in normal_first.jobs] == [0]


def test_expired_jobs_are_split_out() -> None:
    alive, expired = split_expired([job(0, deadline=1.0), job(1, deadline=5.0), job(2)], now=2.0)
    assert [j.seq for j in expired] == [0] and [j.seq for j in alive] == [1, 2]
    assert next_wakeup([job(1, at=10.0, deadline=3.0)], POLICIES) == 3.0
