"""The batcher thread with the in-package fake runtime: batching, isolation, expiry."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from shared.jobs import JobType
from shared.settings import BatchPolicy, GenerationSettings
from workers.batcher import Batcher, JobExpiredInBatcher
from workers.fake_runtime import EchoRuntime
from workers.runtime import Generation, GenerationRequest

GEN = GenerationSettings(max_new_tokens=4)
POLICIES = {t: BatchPolicy(max_batch_size=8, max_wait_s=0.05) for t in JobType}


def request(text: str) -> GenerationRequest:
    return GenerationRequest(tuple(ord(c) for c in text), 4, GEN)


def poison_when(marker: str):  # type: ignore[no-untyped-def]
    def check(requests: Sequence[GenerationRequest]) -> None:
        if any(marker in "".join(chr(t) for t in r.prompt_ids) for r in requests):
            raise RuntimeError(f"cannot handle {marker}")
    return check


def run(batcher: Batcher, texts: list[str]) -> list[object]:
    futures = [batcher.submit(JobType.reply, "echo", request(t), priority=5) for t in texts]
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
        def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
            return super().generate(requests)[:-1] if len(requests) > 1 else super().generate(requests)

    batcher = Batcher({"echo": Short()}, POLICIES)
    batcher.start()
    outcomes = run(batcher, ["a1", "a2"])
    batcher.stop()
    assert all(not isinstance(o, Exception) for o in outcomes)  # retried in halves, each alone is fine


def test_deadline_passing_in_the_buffer_expires_the_job() -> None:
    slow = {t: BatchPolicy(max_batch_size=8, max_wait_s=5.0) for t in JobType}
    batcher = Batcher({"echo": EchoRuntime()}, slow)
    batcher.start()
    future = batcher.submit(JobType.strategy, "echo", request("late"), priority=1, deadline_at=time.time() + 0.05)
    with pytest.raises(JobExpiredInBatcher):
        future.result(timeout=2)
    batcher.stop()


def test_stop_flushes_waiting_jobs() -> None:
    slow = {t: BatchPolicy(max_batch_size=8, max_wait_s=60.0) for t in JobType}
    batcher = Batcher({"echo": EchoRuntime()}, slow)
    batcher.start()
    future = batcher.submit(JobType.strategy, "echo", request("wait"), priority=1)
    batcher.stop(timeout_s=5)
    assert future.result(timeout=0).generation.text == "wait"
