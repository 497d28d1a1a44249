"""Fault injection around a real runtime, for fault tests (`GREENQ_CHAOS`); off by default."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from typing import Any

from greenq.shared.settings import ChaosSettings
from greenq.workers.model.prompts import Message
from greenq.workers.model.types import Decoder, Generation, GenerationRequest, ModelRuntime, RunningBatch, TextHook


class InjectedFailure(RuntimeError):
    """A failure the chaos settings asked for."""


class ChaosRuntime:
    def __init__(self, inner: ModelRuntime, chaos: ChaosSettings) -> None:
        self._inner = inner
        self._chaos = chaos
        self.name = inner.name
        self.device = inner.device
        self.max_context_tokens = inner.max_context_tokens
        self._marked: dict[tuple[int, ...], str] = {}

    def render(self, messages: Sequence[Message]) -> str:
        return self._inner.render(messages)

    def encode(self, text: str) -> list[int]:
        ids = self._inner.encode(text)
        for kind, marker in (("crash", self._chaos.crash_marker), ("fail", self._chaos.fail_marker)):
            if marker and marker in text:
                self._marked[tuple(ids)] = kind
        return ids

    def decode(self, tokens: list[int]) -> str:
        return self._inner.decode(tokens)

    def step_decoder(self) -> ChaosDecoder | None:
        """The inner runtime's step decoder with the same faults, for continuous batching."""
        inner = self._inner.step_decoder()
        return None if inner is None else ChaosDecoder(inner, self, self._chaos)

    def check(self, sequences: Sequence[Sequence[int]], rows: int) -> None:
        """Raise or die as the chaos settings say for a model call over these token rows (`rows` in all)."""
        fault_file = self._chaos.device_fault_file
        if fault_file is not None and fault_file.exists():
            raise RuntimeError(  # a plain RuntimeError, as torch < 2.8 raises it; the message is what tells
                "CUDA error: an illegal memory access was encountered\n"
                "CUDA kernel errors might be asynchronously reported at some other API call (injected)"
            )
        kinds = {kind for prompt, kind in self._marked.items() for s in sequences if tuple(s[: len(prompt)]) == prompt}
        if "crash" in kinds:
            os.kill(os.getpid(), signal.SIGKILL)
        if "fail" in kinds:
            raise InjectedFailure("injected failure for a marked job")
        if self._chaos.oom_above_batch_size and rows > self._chaos.oom_above_batch_size:
            import torch

            raise torch.OutOfMemoryError(f"injected: batch of {rows} > {self._chaos.oom_above_batch_size}")

    def generate(self, requests: Sequence[GenerationRequest], on_text: TextHook | None = None) -> list[Generation]:
        self.check([r.prompt_ids for r in requests], len(requests))
        if self._chaos.batch_delay_s:
            time.sleep(self._chaos.batch_delay_s)
        delay_s = self._chaos.step_delay_s
        if delay_s and on_text is not None:
            inner_hook = on_text

            def on_text(texts: list[str]) -> None:  # a slow device: each step takes longer
                time.sleep(delay_s)
                inner_hook(texts)

        return self._inner.generate(requests, on_text)


class ChaosDecoder:
    """A step decoder with the chaos runtime's faults: markers, device faults and out-of-memory at prefill and
    at every step; `step_delay_s` per step, `batch_delay_s` per prefill."""

    def __init__(self, inner: Decoder, runtime: ChaosRuntime, chaos: ChaosSettings) -> None:
        self._inner = inner
        self._runtime = runtime  # its `check` knows the marked prompts
        self._chaos = chaos
        self.stop_ids = inner.stop_ids

    def prefill(self, sequences: Sequence[Sequence[int]]) -> RunningBatch:
        self._runtime.check(sequences, len(sequences))
        if self._chaos.batch_delay_s:
            time.sleep(self._chaos.batch_delay_s)
        return self._inner.prefill(sequences)

    def step(self, batch: RunningBatch, tokens: Sequence[int]) -> None:
        self._runtime.check([], batch.rows)
        if self._chaos.step_delay_s:
            time.sleep(self._chaos.step_delay_s)
        self._inner.step(batch, tokens)

    def merge(self, a: RunningBatch, b: RunningBatch) -> RunningBatch:
        return self._inner.merge(a, b)

    def keep(self, batch: RunningBatch, rows: Sequence[int]) -> RunningBatch:
        return self._inner.keep(batch, rows)

    def choose(self, *args: Any, **kwargs: Any) -> int:
        return self._inner.choose(*args, **kwargs)
