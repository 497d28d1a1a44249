"""Fault injection around a real runtime, for fault tests (`GREENQ_CHAOS`); off by default."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence

from shared.settings import ChaosSettings
from workers.prompts import Message
from workers.runtime import Generation, GenerationRequest, ModelRuntime, TextHook


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

    def generate(self, requests: Sequence[GenerationRequest], on_text: TextHook | None = None) -> list[Generation]:
        fault_file = self._chaos.device_fault_file
        if fault_file is not None and fault_file.exists():
            raise RuntimeError(  # a plain RuntimeError, as torch < 2.8 raises it; the message is what tells
                "CUDA error: an illegal memory access was encountered\n"
                "CUDA kernel errors might be asynchronously reported at some other API call (injected)"
            )
        kinds = {self._marked.get(tuple(r.prompt_ids)) for r in requests}
        if "crash" in kinds:
            os.kill(os.getpid(), signal.SIGKILL)
        if "fail" in kinds:
            raise InjectedFailure("injected failure for a marked job")
        if self._chaos.oom_above_batch_size and len(requests) > self._chaos.oom_above_batch_size:
            import torch

            raise torch.OutOfMemoryError(f"injected: batch of {len(requests)} > {self._chaos.oom_above_batch_size}")
        if self._chaos.batch_delay_s:
            time.sleep(self._chaos.batch_delay_s)
        delay_s = self._chaos.step_delay_s
        if delay_s and on_text is not None:
            inner_hook = on_text

            def on_text(texts: list[str]) -> None:  # a slow device: each step takes longer
                time.sleep(delay_s)
                inner_hook(texts)

        return self._inner.generate(requests, on_text)
