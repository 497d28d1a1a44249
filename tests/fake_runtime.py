"""An in-package fake `ModelRuntime` for unit tests: deterministic, instant, and able to fail on cue."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from workers.prompts import Message, render_plain
from workers.runtime import Generation, GenerationRequest, TextHook


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

    def generate(self, requests: Sequence[GenerationRequest], on_text: TextHook | None = None) -> list[Generation]:
        """With `on_text`, streams each row a character per step, as a decoder would."""
        if self._fail_when is not None:
            self._fail_when(requests)
        self.batches.append(len(requests))
        tails = ["".join(chr(t) for t in r.prompt_ids[-r.max_new_tokens :]) for r in requests]
        if on_text is not None:
            for step in range(max((len(t) for t in tails), default=0)):
                on_text([t[step : step + 1] for t in tails])
        return [Generation(text=t, finish_reason="length", generated_tokens=len(t)) for t in tails]
