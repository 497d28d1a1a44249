"""Continuous batching on a real (tiny, random) transformers model, in process: outputs equal the static
runtime's, a job joins a running batch between steps, priority preempts, energy shares add up, and a
bad job fails alone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from greenq.shared.policies import BatchPolicy, GenerationSettings
from greenq.shared.settings import ChaosSettings
from greenq.workers.energy.accountant import EnergyAccountant
from greenq.workers.energy.carbon import StaticIntensity
from greenq.workers.model.chaos import ChaosRuntime, InjectedFailure
from greenq.workers.model.runtime import HFRuntime
from greenq.workers.model.types import GenerationRequest
from greenq.workers.serving.batcher import Batcher, BatchOutcome
from greenq.workers.serving.observers import BaseObserver
from greenq.workers.serving.probe import choose_mode, decode_all, probe_modes, probe_requests
from tests.fake_runtime import EchoRuntime

POLICIES = {
    t: BatchPolicy(mode="fixed", max_batch_size=8, max_wait_s=0.0) for t in ("reply", "description", "strategy")
}
PROMPTS = [
    "Where is my parcel?",
    "a b",
    "The quick brown fox jumps over the lazy dog again and again and again",
    "refund please",
    "linen shirt, white, cotton, regular fit",
]


@pytest.fixture(scope="module")
def runtime(tiny_model_dir: Path) -> HFRuntime:
    return HFRuntime(str(tiny_model_dir), device="cpu", dtype="float32")


def _request(rt: Any, text: str, max_new: int, min_new: int = 1) -> GenerationRequest:
    return GenerationRequest(
        tuple(rt.encode(text)), max_new, GenerationSettings(max_new_tokens=max_new, min_new_tokens=min_new)
    )


@pytest.fixture
def batcher_for(runtime: HFRuntime) -> Iterator[Any]:
    made: list[Batcher] = []

    def make(rt: Any = runtime, policies: dict[str, BatchPolicy] = POLICIES, **kwargs: Any) -> Batcher:
        b = Batcher({"m": rt}, policies, mode="continuous", **kwargs)
        b.start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop(timeout_s=30)


def test_greedy_outputs_equal_the_static_runtime_while_jobs_join_and_leave(
    runtime: HFRuntime, batcher_for: Any
) -> None:
    requests = [_request(runtime, text, 6 + 5 * i) for i, text in enumerate(PROMPTS)]
    batcher = batcher_for()
    futures = [batcher.submit(f"j{i}", "reply", "m", r, priority=5) for i, r in enumerate(requests[:2])]
    deadline = time.monotonic() + 30
    while batcher.current_batch_size == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    futures += [batcher.submit(f"j{i}", "reply", "m", r, priority=5) for i, r in enumerate(requests[2:], start=2)]
    outcomes = [f.result(timeout=60) for f in futures]
    for request, outcome in zip(requests, outcomes, strict=True):
        assert outcome.generation == runtime.generate([request])[0]  # the same request alone, static
    assert outcomes[0].generation.text  # decoded something
    assert batcher.mode == "continuous"


def test_a_reply_joins_a_running_batch_of_long_jobs_and_leaves_first(runtime: HFRuntime, batcher_for: Any) -> None:
    batcher = batcher_for(ChaosRuntime(runtime, ChaosSettings(step_delay_s=0.01)))
    long = [batcher.submit(f"d{i}", "description", "m", _request(runtime, PROMPTS[i], 120, 120), 3) for i in range(3)]
    time.sleep(0.3)  # the long batch is decoding
    reply = batcher.submit("r", "reply", "m", _request(runtime, PROMPTS[3], 8, 8), priority=8).result(timeout=60)
    longs = [f.result(timeout=120) for f in long]
    assert reply.started_at < min(o.finished_at for o in longs)  # joined between steps, not after the batch
    assert reply.finished_at < min(o.finished_at for o in longs)
    assert reply.first_text_at is not None and reply.first_text_at < min(o.finished_at for o in longs)
    assert reply.batch_size == 4


def test_a_more_urgent_job_preempts_and_the_preempted_output_is_unchanged(runtime: HFRuntime, batcher_for: Any) -> None:
    two_rows = {t: p.model_copy(update={"max_batch_size": 2}) for t, p in POLICIES.items()}
    batcher = batcher_for(ChaosRuntime(runtime, ChaosSettings(step_delay_s=0.01)), two_rows)
    slow = [_request(runtime, PROMPTS[i], 60, 60) for i in range(2)]
    low = [batcher.submit(f"low{i}", "description", "m", r, priority=1) for i, r in enumerate(slow)]
    time.sleep(0.2)
    urgent = batcher.submit("urgent", "reply", "m", _request(runtime, PROMPTS[3], 5, 5), priority=9).result(timeout=60)
    outcomes = [f.result(timeout=120) for f in low]
    assert urgent.finished_at < min(o.finished_at for o in outcomes)
    for request, outcome in zip(slow, outcomes, strict=True):
        assert outcome.generation == runtime.generate([request])[0]  # resumed by recompute: same tokens


class _Meter:
    """A meter whose counter rises 1 J per read: every forward costs exactly what its reads say."""

    source = "test"

    def __init__(self) -> None:
        self.joules = 0.0

    def read(self) -> dict[str, float]:
        self.joules += 1.0
        return {"device": self.joules}

    def close(self) -> None:
        pass


def test_energy_is_split_per_step_and_the_shares_sum_to_what_was_measured(runtime: HFRuntime, batcher_for: Any) -> None:
    booked: list[tuple[str, float]] = []
    accountant = EnergyAccountant(
        _Meter(), StaticIntensity(400.0), sink=lambda c, s, state, j: booked.append((state, j))
    )
    batcher = batcher_for(energy=accountant)
    futures = [batcher.submit(f"e{i}", "reply", "m", _request(runtime, p, 10, 10), 5) for i, p in enumerate(PROMPTS)]
    outcomes: list[BatchOutcome] = [f.result(timeout=60) for f in futures]
    batcher.stop(timeout_s=30)
    measured = sum(j for state, j in booked if state == "active")
    receipts = sum(o.energy.energy_j for o in outcomes if o.energy is not None)
    assert all(o.energy is not None and o.energy.energy_j > 0 for o in outcomes)
    assert receipts == pytest.approx(measured, abs=1e-6)


def test_one_bad_job_fails_alone(runtime: HFRuntime, batcher_for: Any) -> None:
    chaos = ChaosRuntime(runtime, ChaosSettings(fail_marker="POISON"))
    requests = [_request(chaos, text, 8) for text in (*PROMPTS[:3], "POISON pill", PROMPTS[4])]
    batcher = batcher_for(chaos)
    futures = [batcher.submit(f"b{i}", "reply", "m", r, priority=5) for i, r in enumerate(requests)]
    for i, (request, future) in enumerate(zip(requests, futures, strict=True)):
        if i == 3:
            with pytest.raises(InjectedFailure):
                future.result(timeout=60)
        else:
            assert future.result(timeout=60).generation == runtime.generate([request])[0]


class _Texts(BaseObserver):
    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def on_text(self, model: str, texts: Any) -> None:
        for job_id, text in texts.items():
            self.texts[job_id] = self.texts.get(job_id, "") + text


def test_streamed_text_adds_up_to_each_result(runtime: HFRuntime, batcher_for: Any) -> None:
    seen = _Texts()
    batcher = batcher_for(observers=[seen])
    futures = {
        f"s{i}": batcher.submit(f"s{i}", "reply", "m", _request(runtime, p, 12), 5) for i, p in enumerate(PROMPTS)
    }
    results = {job_id: future.result(timeout=60).generation.text for job_id, future in futures.items()}
    assert seen.texts == {job_id: text for job_id, text in results.items() if text}


def test_decode_all_equals_static(runtime: HFRuntime) -> None:
    decoder = runtime.step_decoder()
    requests = [_request(runtime, text, 4 + 3 * i) for i, text in enumerate(PROMPTS)]
    assert decode_all(decoder, runtime, requests) == [runtime.generate([r])[0] for r in requests]


def test_the_probe_measures_each_mode_and_auto_keeps_the_faster() -> None:
    """On the fake runtime, whose static batch takes 0.05 s or whose step takes 0.01 s: the figures are the
    probe's tokens over the time each mode took, so `auto` picks the mode that was not slowed down."""
    slow_static = EchoRuntime(steps=True, fail_when=lambda requests: time.sleep(0.05))
    tokens = sum(r.max_new_tokens for r in probe_requests(slow_static))
    decoder = slow_static.step_decoder()
    assert decoder is not None
    figures = probe_modes(slow_static, decoder)
    assert figures["static_tokens_per_s"] <= tokens / 0.05  # the timed run took at least its 0.05 s
    assert figures["continuous_tokens_per_s"] > figures["static_tokens_per_s"]
    assert choose_mode("auto", {"m": slow_static}) == "continuous"
    slow_steps = EchoRuntime(steps=True, step_delay_s=0.01)  # a row of the probe decodes up to 64 steps
    assert choose_mode("auto", {"m": slow_steps}) == "static"
    assert choose_mode("auto", {"m": EchoRuntime()}) == "static"  # no step decoder
