"""The batcher thread with the in-package fake runtime: batching, isolation, expiry."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from greenq.shared import job_types
from greenq.shared.policies import BatchPolicy, GenerationSettings
from greenq.workers.model.types import Generation, GenerationRequest
from greenq.workers.serving.batcher import Batcher, JobExpiredInBatcher, Requeue
from greenq.workers.serving.observers import BaseObserver
from tests.fake_runtime import EchoRuntime

GEN = GenerationSettings(max_new_tokens=4)
POLICIES = {t: BatchPolicy(max_batch_size=8, max_wait_s=0.05) for t in job_types.names()}


def request(text: str) -> GenerationRequest:
    return GenerationRequest(tuple(ord(c) for c in text), 4, GEN)


def poison_when(marker: str):  # type: ignore[no-untyped-def]
    def check(requests: Sequence[GenerationRequest]) -> None:
        if any(marker in "".join(chr(t) for t in r.prompt_ids) for r in requests):
            raise RuntimeError(f"cannot handle {marker}")

    return check


class Recorder(BaseObserver):
    """Every moment it sees, in order; it overrides all of them, as any observer may override some."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[str]]] = []
        self.caps: list[int] = []
        self.faults: list[BaseException] = []

    def before_batch(self, model: str, job_ids: Sequence[str]) -> None:
        self.events.append(("start", list(job_ids)))

    def after_batch(self, model: str, job_ids: Sequence[str]) -> None:
        self.events.append(("end", list(job_ids)))

    def after_batch_succeeded(self, model: str, job_ids: Sequence[str]) -> None:
        self.events.append(("ok", list(job_ids)))

    def on_oom(self, size_cap: int) -> None:
        self.caps.append(size_cap)

    def on_device_fault(self, exc: BaseException) -> None:
        self.faults.append(exc)


def run(batcher: Batcher, texts: list[str]) -> list[object]:
    futures = [batcher.submit(t, "reply", "echo", request(t), priority=5) for t in texts]
    out: list[object] = []
    for f in futures:
        try:
            out.append(f.result(timeout=10))
        except Exception as exc:
            out.append(exc)
    return out


def test_burst_is_one_batch_and_outputs_match_inputs() -> None:
    runtime = EchoRuntime()
    batcher = Batcher({"echo": runtime}, POLICIES)
    batcher.start()
    outcomes = run(batcher, [f"job-{i:02d}" for i in range(8)])
    batcher.stop()
    assert runtime.batches == [8]
    assert [o.generation.text for o in outcomes] == [f"b-{i:02d}" for i in range(8)]  # type: ignore[attr-defined]


def test_one_poison_job_fails_alone() -> None:
    runtime = EchoRuntime(fail_when=poison_when("POISON"))
    batcher = Batcher({"echo": runtime}, POLICIES)
    batcher.start()
    texts = [f"ok-{i}" for i in range(7)] + ["POISON"]
    outcomes = run(batcher, texts)
    batcher.stop()
    assert isinstance(outcomes[-1], RuntimeError)
    assert all(not isinstance(o, Exception) for o in outcomes[:-1])
    assert sum(runtime.batches) == 7


def test_wrong_output_count_is_caught() -> None:
    class Short(EchoRuntime):
        def generate(self, requests: Sequence[GenerationRequest], on_text: object = None) -> list[Generation]:
            return super().generate(requests)[:-1] if len(requests) > 1 else super().generate(requests)

    batcher = Batcher({"echo": Short()}, POLICIES)
    batcher.start()
    outcomes = run(batcher, ["a1", "a2"])
    batcher.stop()
    assert all(not isinstance(o, Exception) for o in outcomes)  # retried in halves, each alone is fine


def test_deadline_passing_in_the_buffer_expires_the_job() -> None:
    slow = {t: BatchPolicy(max_batch_size=8, max_wait_s=5.0) for t in job_types.names()}
    batcher = Batcher({"echo": EchoRuntime()}, slow)
    batcher.start()
    future = batcher.submit("late", "strategy", "echo", request("late"), priority=1, deadline_at=time.time() + 0.05)
    with pytest.raises(JobExpiredInBatcher):
        future.result(timeout=2)
    batcher.stop()


def test_stop_flushes_waiting_jobs() -> None:
    slow = {t: BatchPolicy(max_batch_size=8, max_wait_s=60.0) for t in job_types.names()}
    batcher = Batcher({"echo": EchoRuntime()}, slow)
    batcher.start()
    future = batcher.submit("wait", "strategy", "echo", request("wait"), priority=1)
    batcher.stop(timeout_s=5)
    assert future.result(timeout=0).generation.text == "wait"


def test_out_of_memory_lowers_the_cap_for_a_while() -> None:
    import torch

    def oom_above_two(requests: Sequence[GenerationRequest]) -> None:
        if len(requests) > 2:
            raise torch.OutOfMemoryError("simulated")

    now = [1000.0]
    runtime = EchoRuntime(fail_when=oom_above_two)
    recorder = Recorder()
    batcher = Batcher({"echo": runtime}, POLICIES, clock=lambda: now[0], oom_backoff_s=60, observers=[recorder])
    batcher.start()
    futures = [batcher.submit(f"j{i}", "reply", "echo", request(f"j{i}"), priority=5) for i in range(8)]
    now[0] += 1.0  # past max wait
    batcher.wake()
    assert all(not isinstance(f.result(timeout=10), Exception) for f in futures)
    assert recorder.caps == [4, 2, 2] and batcher.size_cap() == 2  # 8 fails, then each half of 4
    now[0] += 61.0
    assert batcher.size_cap() is None
    batcher.stop()


def test_drain_hands_back_waiting_jobs_and_refuses_new_ones() -> None:
    slow = {t: BatchPolicy(max_batch_size=8, max_wait_s=60.0) for t in job_types.names()}
    batcher = Batcher({"echo": EchoRuntime()}, slow)
    batcher.start()
    waiting = batcher.submit("w", "reply", "echo", request("w"), priority=5)
    assert batcher.drain() == 1
    with pytest.raises(Requeue):
        waiting.result(timeout=1)
    with pytest.raises(Requeue):
        batcher.submit("late", "reply", "echo", request("late"), priority=5)
    batcher.stop(timeout_s=5)


def test_observers_see_each_batch_start_end_and_succeed() -> None:
    recorder = Recorder()
    runtime = EchoRuntime(fail_when=poison_when("bad"))
    batcher = Batcher({"echo": runtime}, POLICIES, observers=[recorder, BaseObserver()])
    batcher.start()
    run(batcher, ["a", "bad"])
    batcher.stop()
    assert recorder.events == [  # raising is finishing: only a crash leaves a batch open
        ("start", ["a", "bad"]),
        ("end", ["a", "bad"]),
        ("start", ["a"]),
        ("end", ["a"]),
        ("ok", ["a"]),
        ("start", ["bad"]),
        ("end", ["bad"]),
    ]


def cuda_error_when(marker: str):  # type: ignore[no-untyped-def]
    def check(requests: Sequence[GenerationRequest]) -> None:
        if any(marker in "".join(chr(t) for t in r.prompt_ids) for r in requests):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    return check


def test_device_fault_hands_back_every_job_and_trips_once() -> None:
    recorder = Recorder()
    # A long max wait: the first batch closes full (4), however slowly a loaded machine submits.
    policies = {t: BatchPolicy(max_batch_size=4, max_wait_s=2.0) for t in job_types.names()}
    runtime = EchoRuntime(fail_when=cuda_error_when("job"))
    batcher = Batcher({"echo": runtime}, policies, observers=[recorder])
    batcher.start()
    outcomes = run(batcher, [f"job-{i}" for i in range(8)])  # a batch of four faults; four more wait
    assert all(isinstance(o, Requeue) for o in outcomes)  # none failed: the faulting batch's jobs go back too
    assert len(recorder.faults) == 1 and batcher.device_fault is recorder.faults[0]
    assert recorder.events == [("start", ["job-0", "job-1", "job-2", "job-3"])]  # not bisected; its attempts stay open
    with pytest.raises(Requeue):
        batcher.submit("late", "reply", "echo", request("late"), priority=5)
    batcher.stop(timeout_s=5)


def test_device_fault_while_bisecting_hands_back_the_other_half() -> None:
    def check(requests: Sequence[GenerationRequest]) -> None:
        poison_when("bad")(requests)  # the whole batch fails for a job's own fault first
        cuda_error_when("sick")(requests)

    runtime = EchoRuntime(fail_when=check)
    batcher = Batcher({"echo": runtime}, POLICIES)
    batcher.start()
    outcomes = run(batcher, ["sick", "ok-1", "bad", "ok-2"])
    batcher.stop(timeout_s=5)
    assert all(isinstance(o, Requeue) for o in outcomes)  # the second half never ran on the sick device
    assert runtime.batches == []


class BrokenMeter:
    """A meter whose device read fails (e.g. NVML lost the GPU's power sensor)."""

    source = "broken"
    reads = 0

    def read(self) -> dict[str, float]:
        self.reads += 1
        if self.reads > 1:  # the first read, at start, worked
            raise OSError("power sensor unreadable")
        return {}

    def close(self) -> None:
        pass


def test_a_failing_energy_meter_costs_the_receipt_not_the_jobs() -> None:
    from greenq.workers.energy.accountant import EnergyAccountant
    from greenq.workers.energy.carbon import StaticIntensity

    batcher = Batcher({"echo": EchoRuntime()}, POLICIES, energy=EnergyAccountant(BrokenMeter(), StaticIntensity(400)))
    batcher.start()
    outcomes = run(batcher, [f"job-{i}" for i in range(4)])
    batcher.stop()
    assert all(not isinstance(o, Exception) and o.energy is None for o in outcomes)  # type: ignore[attr-defined]
