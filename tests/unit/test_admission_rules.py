"""Every admission rule holds in both serving loops (issue 21): a solo job never shares a forward, and no
forward passes `max_batch_tokens`, whether batches run whole (static) or rows join between steps
(continuous). The fake runtime records each forward's rows, so the tests read what ran together."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from shared import job_types
from shared.policies import BatchPolicy, GenerationSettings
from tests.fake_runtime import EchoRuntime
from workers.model.types import GenerationRequest
from workers.serving.batcher import Batcher, BatchOutcome
from workers.serving.batching import PendingJob, padded_tokens

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

    def make(mode: str, runtime: EchoRuntime, rules: dict[str, BatchPolicy]) -> Batcher:
        batcher = Batcher({"echo": runtime}, rules, mode=mode)  # type: ignore[arg-type]
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


def wait_running(batcher: Batcher) -> None:
    deadline = time.monotonic() + 10
    while batcher.current_batch_size == 0 and time.monotonic() < deadline:
        time.sleep(0.001)


@pytest.mark.parametrize("mode", MODES)
def test_a_solo_job_never_shares_a_forward(mode: str, batchers: Any) -> None:
    runtime = EchoRuntime(steps=True, step_delay_s=0.01)
    batcher = batchers(mode, runtime, policies())
    prompts = {f"j{i}": prompt(i) for i in range(7)}
    futures: dict[str, Future[BatchOutcome]] = {}
    for i in range(3):
        futures[f"j{i}"] = batcher.submit(f"j{i}", "reply", "echo", request(i), priority=5)
    wait_running(batcher)
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
    batcher = batchers(mode, runtime, policies(max_batch_tokens=64))
    prompts = {f"j{i}": prompt(i, length) for i in range(8)}
    futures = [batcher.submit(f"j{i}", "reply", "echo", request(i, length), priority=5) for i in range(2)]
    wait_running(batcher)
    futures += [batcher.submit(f"j{i}", "reply", "echo", request(i, length), priority=5) for i in range(2, 8)]
    assert all(f.result(timeout=20).generation.text for f in futures)
    jobs = [PendingJob(0, "reply", "k", 5, 0.0, length, MAX_NEW)]
    widest = max(len(rows_of(f, prompts)) for f in runtime.forwards)
    assert padded_tokens(jobs * widest) <= 64
    assert widest == 3  # the budget, not the size cap (8), bounded the batch


@pytest.mark.parametrize("mode", MODES)
def test_an_observer_that_raises_in_every_moment_costs_no_job(mode: str, batchers: Any) -> None:
    from workers.serving.observers import BaseObserver

    class Raises(BaseObserver):
        def __getattribute__(self, name: str) -> Any:
            if name.startswith(("before_", "after_", "on_")):

                def boom(*args: Any) -> None:
                    raise RuntimeError(f"observer bug in {name}")

                return boom
            return super().__getattribute__(name)

    runtime = EchoRuntime(steps=True)
    batcher = Batcher({"echo": runtime}, policies(), mode=mode, observers=[Raises()])  # type: ignore[arg-type]
    batcher.start()
    try:
        futures = [batcher.submit(f"j{i}", "reply", "echo", request(i), priority=5) for i in range(4)]
        assert [f.result(timeout=10).generation.text for f in futures] == [
            "".join(map(chr, prompt(i)[-MAX_NEW:])) for i in range(4)
        ]
    finally:
        batcher.stop(timeout_s=10)
