"""A loop that fails outside a forward (a bug in the loop itself, not in a job) hands back every job it
holds, running and preempted rows as well as waiting ones, and tells the worker to restart: no task
thread waits forever on a job that nothing will compute (review finding on issue 21)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from greenq.shared import job_types
from greenq.shared.policies import BatchPolicy, GenerationSettings
from greenq.workers.model.types import GenerationRequest, RunningBatch
from greenq.workers.serving.batcher import Batcher, Requeue
from greenq.workers.serving.observers import BaseObserver
from tests.fake_runtime import EchoDecoder, EchoRuntime

GEN = GenerationSettings(max_new_tokens=40, min_new_tokens=40)
POLICIES = {t: BatchPolicy(mode="fixed", max_batch_size=8, max_wait_s=0.0) for t in job_types.names()}


# The batch thread ends with the loop's exception, as before (logged; the worker restarts).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_continuous_loop_that_fails_hands_back_its_running_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    def merge(self: EchoDecoder, a: RunningBatch, b: RunningBatch) -> RunningBatch:
        raise RuntimeError("a bug in merging rows")

    monkeypatch.setattr(EchoDecoder, "merge", merge)
    runtime = EchoRuntime(steps=True, step_delay_s=0.01)
    batcher = Batcher({"echo": runtime}, POLICIES, mode="continuous")
    batcher.start()
    batcher.wait_ready(10)
    try:
        running = batcher.submit("running", "reply", "echo", GenerationRequest(tuple(b"first job"), 40, GEN), 5)
        deadline = time.monotonic() + 10
        while not runtime.forwards and time.monotonic() < deadline:
            time.sleep(0.001)
        joining = batcher.submit("joining", "reply", "echo", GenerationRequest(tuple(b"second job"), 40, GEN), 5)
        for future in (running, joining):
            with pytest.raises(Requeue):
                future.result(timeout=10)
        assert batcher.device_fault is not None  # the worker is told to restart rather than bounce every job
        with pytest.raises(Requeue):
            batcher.submit("later", "reply", "echo", GenerationRequest(tuple(b"third"), 4, GEN), 5)
    finally:
        batcher.stop(timeout_s=10)


def test_an_auto_worker_still_loading_takes_an_adaptive_policy_and_keeps_it_when_static_wins() -> None:
    release = threading.Event()
    runtime = EchoRuntime()  # no step decoder: auto chooses static

    def load() -> dict[str, EchoRuntime]:
        release.wait(10)
        return {"echo": runtime}

    batcher = Batcher({}, POLICIES, mode="auto")
    batcher.start(load)  # type: ignore[arg-type]
    try:
        adaptive = POLICIES["reply"].model_copy(update={"mode": "adaptive"})
        batcher.set_policy("reply", adaptive)  # while loading: which loop runs is not known yet
        release.set()
        batcher.wait_ready(10)
        assert batcher.mode == "static"
        assert batcher.policies()["reply"].mode == "adaptive"
    finally:
        release.set()
        batcher.stop(timeout_s=10)


def test_an_error_counter_that_raises_does_not_fail_the_batch() -> None:
    class Raises(BaseObserver):
        def before_batch(self, model: str, job_ids: Sequence[str]) -> None:
            raise RuntimeError("observer bug")

    def counter(observer: str, moment: str) -> None:
        raise RuntimeError("metrics bug")

    batcher = Batcher({"echo": EchoRuntime()}, POLICIES, observers=[Raises()], on_observer_error=counter)
    batcher.start()
    batcher.wait_ready(10)
    try:
        outcome = batcher.submit("j", "reply", "echo", GenerationRequest(tuple(b"hello"), 4, GEN), 5).result(10)
        assert outcome.generation.generated_tokens > 0
    finally:
        batcher.stop(timeout_s=10)
