"""Every admission rule holds in both serving loops (issue 21): a solo job never shares a forward, and no
forward passes `max_batch_tokens`, whether batches run whole (static) or rows join between steps
(continuous). The fake runtime records each forward's rows, so the tests read what ran together.
An observer cannot break a batch in either loop, and a continuous worker refuses the adaptive mode."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import pytest

from greenq.shared import job_types
from greenq.shared.policies import BatchPolicy, GenerationSettings
from greenq.workers.model.types import GenerationRequest
from greenq.workers.serving.batcher import Batcher, BatchOutcome, PolicyRefused, Requeue
from greenq.workers.serving.batching import Admission, PendingJob, admit, capped, padded_tokens
from greenq.workers.serving.observers import BaseObserver, BatchCost
from tests.fake_runtime import EchoRuntime

MAX_NEW = 6
GEN = GenerationSettings(max_new_tokens=MAX_NEW, min_new_tokens=0)
MODES = ["static", "continuous"]


def policies(**update: Any) -> dict[str, BatchPolicy]:
    base = BatchPolicy(mode="fixed", max_batch_size=8, max_wait_s=0.0)
    return {t: base.model_copy(update=update) for t in job_types.names()}


def prompt(i: int, length: int = 12) -> tuple[int, ...]:
    """Distinct from every other job's from the first character on, so a forward's rows name their jobs."""
    head = f"{chr(65 + i)}{i:02d}-"
    return tuple(ord(c) for c in (head + "x" * length)[:length])


def request(i: int, length: int = 12) -> GenerationRequest:
    return GenerationRequest(prompt(i, length), MAX_NEW, GEN)


@pytest.fixture
def batchers() -> Iterator[Any]:
    made: list[Batcher] = []

    def make(
        mode: str, runtime: EchoRuntime, rules: dict[str, BatchPolicy], observers: Any = (), **kwargs: Any
    ) -> Batcher:
        batcher = Batcher({"echo": runtime}, rules, mode=mode, observers=observers, **kwargs)  # type: ignore[arg-type]
        batcher.start()
        batcher.wait_ready(10)
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.stop(timeout_s=10)


def rows_of(forward: list[tuple[int, ...]], prompts: dict[str, tuple[int, ...]]) -> list[str]:
    """The jobs a forward held (a row's sequence starts with its job's prompt)."""
    return [next(job for job, p in prompts.items() if row[: len(p)] == p) for row in forward]


def wait_running(runtime: EchoRuntime) -> None:
    """Until the first forward ran (continuous: its rows then decode for a while, a step each 5-10 ms)."""
    deadline = time.monotonic() + 10
    while not runtime.forwards and time.monotonic() < deadline:
        time.sleep(0.001)


@pytest.mark.parametrize("mode", MODES)
def test_a_solo_job_never_shares_a_forward(mode: str, batchers: Any) -> None:
    runtime = EchoRuntime(steps=True, step_delay_s=0.01)
    batcher = batchers(mode, runtime, policies())
    prompts = {f"j{i}": prompt(i) for i in range(7)}
    futures: dict[str, Future[BatchOutcome]] = {}
    for i in range(3):
        futures[f"j{i}"] = batcher.submit(f"j{i}", "reply", "echo", request(i), priority=5)
    wait_running(runtime)
    futures["j3"] = batcher.submit("j3", "reply", "echo", request(3), priority=5, solo=True)
    for i in range(4, 7):
        futures[f"j{i}"] = batcher.submit(f"j{i}", "reply", "echo", request(i), priority=5)
    outcomes = {job: f.result(timeout=20) for job, f in futures.items()}
    assert all(o.generation.text for o in outcomes.values())
    shared = [rows_of(f, prompts) for f in runtime.forwards if "j3" in rows_of(f, prompts) and len(f) > 1]
    assert shared == []  # the solo job ran alone in every forward it was in
    assert outcomes["j3"].batch_size == 1


@pytest.mark.parametrize("mode", MODES)
def test_no_forward_passes_max_batch_tokens(mode: str, batchers: Any) -> None:
    runtime = EchoRuntime(steps=True, step_delay_s=0.005)
    length = 14  # a row of (14 + 6) padded tokens: a budget of 64 holds three
    batcher = batchers(mode, runtime, policies(max_batch_tokens=64, max_wait_s=0.2))  # static: full batches
    prompts = {f"j{i}": prompt(i, length) for i in range(8)}
    futures = [batcher.submit(f"j{i}", "reply", "echo", request(i, length), priority=5) for i in range(2)]
    wait_running(runtime)
    futures += [batcher.submit(f"j{i}", "reply", "echo", request(i, length), priority=5) for i in range(2, 8)]
    assert all(f.result(timeout=20).generation.text for f in futures)
    jobs = [PendingJob(0, "reply", "k", 5, 0.0, length, MAX_NEW)]
    widest = max(len(rows_of(f, prompts)) for f in runtime.forwards)
    assert padded_tokens(jobs * widest) <= 64
    assert widest == 3  # the budget, not the size cap (8), bounded the batch


class Raises(BaseObserver):
    """An observer with a bug in every moment."""

    def before_batch(self, model: str, job_ids: Sequence[str]) -> None:
        raise RuntimeError("bug in before_batch")

    def on_text(self, model: str, texts: Mapping[str, str]) -> None:
        raise RuntimeError("bug in on_text")

    def after_batch(self, model: str, job_ids: Sequence[str]) -> None:
        raise RuntimeError("bug in after_batch")

    def after_batch_succeeded(self, model: str, job_ids: Sequence[str]) -> None:
        raise RuntimeError("bug in after_batch_succeeded")

    def after_batch_costed(self, cost: BatchCost) -> None:
        raise RuntimeError("bug in after_batch_costed")

    def on_oom(self, size_cap: int) -> None:
        raise RuntimeError("bug in on_oom")

    def on_device_fault(self, exc: BaseException) -> None:
        raise RuntimeError("bug in on_device_fault")


class Ends(BaseObserver):
    """Runs after the raising one: the dispatcher still calls it."""

    def __init__(self) -> None:
        self.succeeded: list[str] = []

    def after_batch_succeeded(self, model: str, job_ids: Sequence[str]) -> None:
        self.succeeded += job_ids


@pytest.mark.parametrize("mode", MODES)
def test_an_observer_that_raises_in_every_moment_costs_no_job(
    mode: str, batchers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def oom_above_two(rows: Sequence[Any]) -> None:
        if len(rows) > 2:
            raise MemoryError("simulated")

    errors: Counter[tuple[str, str]] = Counter()
    ends = Ends()
    runtime = EchoRuntime(steps=True, fail_when=oom_above_two, fail_forward=oom_above_two)
    batcher = batchers(
        mode,
        runtime,
        policies(max_wait_s=0.05),
        observers=[Raises(), ends],
        on_observer_error=lambda observer, moment: errors.update([(observer, moment)]),
    )
    futures = [batcher.submit(f"j{i}", "reply", "echo", request(i), priority=5) for i in range(4)]
    texts = [f.result(timeout=10).generation.text for f in futures]
    assert texts == ["".join(map(chr, prompt(i)[-MAX_NEW:])) for i in range(4)]
    assert sorted(ends.succeeded) == [f"j{i}" for i in range(4)]
    moments = {moment for (observer, moment) in errors if observer == "Raises"}
    expected = {"before_batch", "on_text", "after_batch", "after_batch_succeeded", "on_oom"}
    assert moments == (expected | {"after_batch_costed"} if mode == "static" else expected)
    assert "observer Raises raised in before_batch; the batch goes on" in caplog.text


@pytest.mark.parametrize("mode", MODES)
def test_an_observer_that_raises_at_a_device_fault_does_not_stop_the_hand_back(mode: str, batchers: Any) -> None:
    def sick(rows: Sequence[Any]) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    batcher = batchers(mode, EchoRuntime(steps=True, fail_when=sick, fail_forward=sick), policies(), [Raises()])
    futures = [batcher.submit(f"j{i}", "reply", "echo", request(i), priority=5) for i in range(3)]
    for future in futures:
        with pytest.raises(Requeue):
            future.result(timeout=10)
    assert batcher.device_fault is not None


def test_a_continuous_worker_runs_adaptive_by_the_fixed_rule_and_refuses_it(batchers: Any) -> None:
    adaptive = {t: BatchPolicy(mode="adaptive") for t in job_types.names()}
    continuous = batchers("continuous", EchoRuntime(steps=True), adaptive)
    assert {p.mode for p in continuous.policies().values()} == {"fixed"}  # what is in force
    assert {s["mode"] for s in continuous.adaptive_state().values()} == {"fixed"}
    with pytest.raises(PolicyRefused, match="mode: adaptive does not apply in continuous batching"):
        continuous.set_policy("reply", BatchPolicy(mode="adaptive"))
    continuous.set_policy("reply", BatchPolicy(mode="fixed", max_batch_size=3))  # anything else goes
    assert continuous.policies()["reply"].max_batch_size == 3
    static = batchers("static", EchoRuntime(steps=True), adaptive)
    static.set_policy("reply", BatchPolicy(mode="adaptive", max_batch_size=3))
    assert static.policies()["reply"].mode == "adaptive"


def test_set_policy_over_the_control_channel_names_the_field_it_refuses(batchers: Any) -> None:
    import threading

    from prometheus_client import CollectorRegistry

    from greenq.workers.edge import control
    from greenq.workers.edge.metrics import WorkerMetrics

    batcher = batchers("continuous", EchoRuntime(steps=True), policies())
    metrics = WorkerMetrics(CollectorRegistry())
    control.install(control.WorkerContext("n", "cpu", batcher, threading.Event(), metrics))
    try:
        refused = control.greenq_set_policy(None, "reply", mode="adaptive")
        assert "error" in refused and "reply policy not changed: mode: adaptive" in refused["error"]
        assert batcher.policies()["reply"].mode == "fixed"
        assert "ok" in control.greenq_set_policy(None, "reply", max_batch_size=2)
    finally:
        control.install(None)  # type: ignore[arg-type]


def job(seq: int, priority: int = 5, prompt_tokens: int = 10, solo: bool = False, model: str = "m") -> PendingJob:
    return PendingJob(seq, "reply", ("m", ()), priority, float(seq), prompt_tokens, MAX_NEW, solo=solo, model=model)


def test_admit_takes_the_running_rows_first_then_the_most_urgent_jobs_within_every_limit() -> None:
    running = [job(0), job(1)]
    waiting = [job(2, priority=1), job(3, priority=9), job(4, model="other")]
    assert admit(running, waiting, policies(max_batch_size=3)) == Admission(join=(job(3, priority=9),))
    assert admit(running, waiting, policies(max_batch_size=8)).join == (job(3, priority=9), job(2, priority=1))
    assert admit(running, waiting, policies(max_batch_tokens=3 * 16)).join == (job(3, priority=9),)
    assert admit(running, [job(2, priority=1)], capped(policies(), 2)) == Admission()  # full: none less urgent
    assert admit([], [job(4, model="other"), job(2, priority=1)], policies()).join == (job(4, model="other"),)


def test_admit_preempts_less_urgent_rows_for_a_more_urgent_job() -> None:
    running = [job(0, priority=1), job(1, priority=5)]
    urgent = job(2, priority=9)
    assert admit(running, [urgent], policies(max_batch_size=2)) == Admission((urgent,), (job(0, priority=1),))
    assert admit(running[1:] * 2, [job(3, priority=5)], policies(max_batch_size=2)) == Admission()  # as urgent


def test_admit_runs_a_solo_job_alone_after_the_running_rows() -> None:
    solo = job(2, priority=9, solo=True)
    assert admit([job(0)], [solo, job(3)], policies()) == Admission()  # the batch drains first
    assert admit([], [solo, job(3)], policies()).join == (solo,)
    assert admit([solo], [job(3)], policies()) == Admission()  # nothing joins it
    later = job(2, priority=5, solo=True)  # behind a more urgent job: that one goes first, then the solo job alone
    assert admit([], [job(3, priority=9), later, job(4)], policies()).join == (job(3, priority=9),)
