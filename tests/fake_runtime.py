"""An in-package fake `ModelRuntime` for unit tests: deterministic, instant, and able to fail on cue."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from workers.prompts import Message, render_plain
from workers.runtime import Generation, GenerationRequest


class EchoRuntime:
    """Tokens are characters; the "generation" echoes the prompt's last characters.

    `fail_when(requests)` may raise to simulate a poison job or an out-of-memory batch.
    """

    def __init__(
        self,
        name: str = "echo",
        fail_when: Callable[[Sequence[GenerationRequest]], None] | None = None,
        max_context_tokens: int = 4096,
    ) -> None:
        self.name = name
        self.device = "cpu"
        self.max_context_tokens = max_context_tokens
        self.batches: list[int] = []
        self._fail_when = fail_when

    def render(self, messages: Sequence[Message]) -> str:
        return render_plain(list(messages))

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        if self._fail_when is not None:
            self._fail_when(requests)
        self.batches.append(len(requests))
        out = []
        for r in requests:
            tail = "".join(chr(t) for t in r.prompt_ids[-r.max_new_tokens :])
            out.append(Generation(text=tail, finish_reason="length", generated_tokens=len(tail)))
        return out
