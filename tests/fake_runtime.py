"""An in-package fake `ModelRuntime` for unit tests: deterministic, instant, and able to fail on cue.

`EchoRuntime` echoes; with `steps=True` it also decodes step by step (`EchoDecoder`), so both serving
loops run on it. Every model call it served is in `forwards`: each forward's rows, as token sequences.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from greenq.shared.policies import GenerationSettings
from greenq.workers.model.prompts import Message, render_plain
from greenq.workers.model.types import Decoder, Generation, GenerationRequest, RunningBatch, TextHook

STOP = 0  # never a character of a prompt


class EchoRuntime:
    """Tokens are characters; the "generation" echoes the prompt's last characters.

    `fail_when(requests)` may raise to simulate a poison job or an out-of-memory batch; with `steps`,
    `fail_forward(rows)` does the same for each step-decoding forward (rows: token sequences).
    """

    def __init__(
        self,
        name: str = "echo",
        fail_when: Callable[[Sequence[GenerationRequest]], None] | None = None,
        max_context_tokens: int = 4096,
        steps: bool = False,
        fail_forward: Callable[[Sequence[Sequence[int]]], None] | None = None,
        step_delay_s: float = 0.0,
    ) -> None:
        self.name = name
        self.device = "cpu"
        self.max_context_tokens = max_context_tokens
        self.batches: list[int] = []
        self.forwards: list[list[tuple[int, ...]]] = []
        self._fail_when = fail_when
        self._steps = steps
        self.fail_forward = fail_forward
        self.step_delay_s = step_delay_s

    def render(self, messages: Sequence[Message]) -> str:
        return render_plain(list(messages))

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, tokens: list[int]) -> str:
        return "".join(chr(t) for t in tokens)

    def step_decoder(self) -> Decoder | None:
        return EchoDecoder(self) if self._steps else None

    def generate(self, requests: Sequence[GenerationRequest], on_text: TextHook | None = None) -> list[Generation]:
        """With `on_text`, streams each row a character per step, as a decoder would."""
        if self._fail_when is not None:
            self._fail_when(requests)
        self.batches.append(len(requests))
        self.forwards.append([tuple(r.prompt_ids) for r in requests])
        tails = ["".join(chr(t) for t in r.prompt_ids[-r.max_new_tokens :]) for r in requests]
        if on_text is not None:
            for step in range(max((len(t) for t in tails), default=0)):
                on_text([t[step : step + 1] for t in tails])
        return [Generation(text=t, finish_reason="length", generated_tokens=len(t)) for t in tails]


class EchoDecoder:
    """Step decoding of `EchoRuntime`: a row's next token is the next character of its prompt's tail (as
    `generate` echoes it), then a stop token. The batch's "cache" is each row's token sequence so far."""

    stop_ids = frozenset({STOP})

    def __init__(self, runtime: EchoRuntime) -> None:
        self._runtime = runtime

    def _forward(self, rows: list[list[int]]) -> None:
        if self._runtime.fail_forward is not None:
            self._runtime.fail_forward(rows)
        if self._runtime.step_delay_s:
            time.sleep(self._runtime.step_delay_s)
        self._runtime.forwards.append([tuple(r) for r in rows])

    def prefill(self, sequences: Sequence[Sequence[int]]) -> RunningBatch:
        rows = [list(s) for s in sequences]
        self._forward(rows)
        return RunningBatch(cache=rows, mask=None, positions=[len(r) for r in rows], logits=None)

    def step(self, batch: RunningBatch, tokens: Sequence[int]) -> None:
        rows = [[*row, token] for row, token in zip(batch.cache, tokens, strict=True)]
        self._forward(rows)
        batch.cache = rows
        batch.positions = [p + 1 for p in batch.positions]

    def merge(self, a: RunningBatch, b: RunningBatch) -> RunningBatch:
        return RunningBatch([*a.cache, *b.cache], None, [*a.positions, *b.positions], None)

    def keep(self, batch: RunningBatch, rows: Sequence[int]) -> RunningBatch:
        return RunningBatch([batch.cache[r] for r in rows], None, [batch.positions[r] for r in rows], None)

    def choose(
        self,
        batch: RunningBatch,
        row: int,
        settings: GenerationSettings,
        prompt_ids: Sequence[int],
        generated: Sequence[int],
        min_new_tokens: int,
    ) -> int:
        tail = prompt_ids[-settings.max_new_tokens :]
        return tail[len(generated)] if len(generated) < len(tail) else STOP
