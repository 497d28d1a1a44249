"""What the serving loops and the model code share: requests, generations, padding, and the two contracts.

The runtime (`greenq.workers.model.runtime`) and its step decoder (`greenq.workers.model.decoding`) implement these;
the loops (`greenq.workers.serving`) drive them. Both sides import this module, never each other, as TGI keeps
`Batch` and `Generation` in its `models/types.py`. No torch here.

A `ModelRuntime` generates for a whole batch at once; where its `step_decoder()` returns a `Decoder`,
rows can also join and leave a running batch between steps (continuous batching).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from greenq.shared.policies import GenerationSettings
from greenq.workers.model.prompts import Message

FinishReason = Literal["stop", "length"]
# Called once per decoding step with each row's new text ("" where a row has none this step).
TextHook = Callable[[list[str]], None]


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    settings: GenerationSettings


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: FinishReason
    generated_tokens: int


@dataclass
class RunningBatch:
    """The rows decoding together: their KV cache, attention mask, next positions and next-token logits."""

    cache: Any  # transformers DynamicCache: per layer, keys and values (rows, heads, length, dim)
    mask: Any  # (rows, length) 1 for real tokens, 0 for left padding
    positions: Any  # (rows,) the position of each row's next token
    logits: Any  # (rows, vocabulary) for each row's next token

    @property
    def rows(self) -> int:
        return len(self.positions)


class Decoder(Protocol):
    """What continuous batching needs of a model: `StepDecoder`, or a wrapper of one (workers/model/chaos.py)."""

    stop_ids: frozenset[int]

    def prefill(self, sequences: Sequence[Sequence[int]]) -> RunningBatch:
        """One forward over new rows (each a prompt, or a prompt and the tokens it had before preemption)."""
        ...

    def step(self, batch: RunningBatch, tokens: Sequence[int]) -> None:
        """One forward: every row takes its chosen token; the batch then holds the logits for the next."""
        ...

    def merge(self, a: RunningBatch, b: RunningBatch) -> RunningBatch: ...

    def keep(self, batch: RunningBatch, rows: Sequence[int]) -> RunningBatch: ...

    def choose(
        self,
        batch: RunningBatch,
        row: int,
        settings: GenerationSettings,
        prompt_ids: Sequence[int],
        generated: Sequence[int],
        min_new_tokens: int,
    ) -> int: ...


class ModelRuntime(Protocol):
    """A warm model: render and tokenize prompts, generate for a whole batch at once, decode tokens, and
    perhaps decode step by step (`step_decoder`: None where it cannot; batching is then static)."""

    name: str
    device: str
    max_context_tokens: int

    def render(self, messages: Sequence[Message]) -> str: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, tokens: list[int]) -> str:
        """One row's tokens as text, special tokens skipped."""
        ...

    def generate(self, requests: Sequence[GenerationRequest], on_text: TextHook | None = None) -> list[Generation]:
        """Each request's generation; with `on_text`, each row's new text as each step decodes it.

        The texts `on_text` hands out for a row add up to that row's final `Generation.text`."""
        ...

    def step_decoder(self) -> Decoder | None: ...


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[list[list[int]], list[list[int]]]:
    """Left-pad token rows to one length; returns (input ids, attention mask)."""
    width = max(len(r) for r in rows)
    ids = [[pad_id] * (width - len(r)) + list(r) for r in rows]
    mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
    return ids, mask


def trim_row(tokens: Sequence[int], max_new_tokens: int, stop_ids: frozenset[int]) -> tuple[list[int], FinishReason]:
    """Cut one generated row at its own limit or its first stop token."""
    row = list(tokens[:max_new_tokens])
    for i, token in enumerate(row):
        if token in stop_ids:
            return row[:i], "stop"
    return row, "length"
