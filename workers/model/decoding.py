"""Iteration-level decoding on a transformers causal LM: rows join and leave a running batch between steps.

`StepDecoder` does the tensor work for `greenq.workers.serving.continuous`; it keeps no schedule of its own.
A `RunningBatch` (`greenq.workers.model.types`) is the state of the rows decoding together: their KV
cache, attention mask, next positions and the logits for each row's next token. Rows are
left-padded, as `HFRuntime.generate` pads them, and each row's positions count its own tokens
only, so a row decodes the same tokens whatever joins or leaves around it (greedy outputs equal
the static runtime's; see the tests).

>>> decoder = runtime.step_decoder()              # an HFRuntime, loaded
>>> batch = decoder.prefill([prompt_ids])          # one forward over the new rows
>>> token = decoder.choose(batch, 0, settings, history)   # the row's next token
>>> decoder.step(batch, [token])                   # one forward: one token for every row
>>> batch = decoder.merge(batch, decoder.prefill([other_ids]))  # a row joins between steps
>>> batch = decoder.keep(batch, [1])               # a finished row leaves
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from greenq.shared.policies import GenerationSettings
from greenq.workers.model.types import Decoder, FinishReason, GenerationRequest, RunningBatch, left_pad


class StepDecoder:
    """The `Decoder` of a loaded transformers causal LM (`HFRuntime.step_decoder` makes it)."""

    def __init__(self, model: Any, device: str, pad_id: int, stop_ids: frozenset[int]) -> None:
        import torch
        from transformers.cache_utils import DynamicCache

        self._torch = torch
        self._cache_type = DynamicCache
        self._model = model
        self._device = device
        self._pad_id = pad_id
        self.stop_ids = stop_ids

    def prefill(self, sequences: Sequence[Sequence[int]]) -> RunningBatch:
        """One forward over new rows (each a prompt, or a prompt and the tokens it had before it was preempted)."""
        torch = self._torch
        ids, mask = left_pad(sequences, self._pad_id)
        input_ids = torch.tensor(ids, device=self._device)
        attention_mask = torch.tensor(mask, device=self._device)
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # as generate() counts them under left padding
        cache = self._cache_type(config=self._model.config)
        with torch.inference_mode():
            out = self._model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, cache=cache, use_cache=True
            )
        return RunningBatch(out.cache, attention_mask, attention_mask.sum(-1), out.logits[:, -1, :].float())

    def step(self, batch: RunningBatch, tokens: Sequence[int]) -> None:
        """One forward: every row takes its chosen token; the batch then holds the logits for the next."""
        torch = self._torch
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones((batch.rows, 1))], dim=1)
        input_ids = torch.tensor([[t] for t in tokens], device=self._device)
        with torch.inference_mode():
            out = self._model(
                input_ids=input_ids,
                attention_mask=batch.mask,
                position_ids=batch.positions[:, None],
                cache=batch.cache,
                use_cache=True,
            )
        batch.cache = out.cache
        batch.positions = batch.positions + 1
        batch.logits = out.logits[:, -1, :].float()

    def merge(self, a: RunningBatch, b: RunningBatch) -> RunningBatch:
        """One batch of both: the shorter is left-padded to the longer's length, then rows are stacked."""
        torch = self._torch
        length = max(a.mask.shape[1], b.mask.shape[1])

        def pad(t: Any, dim: int) -> Any:
            missing = length - t.shape[dim]
            if missing == 0:
                return t
            shape = list(t.shape)
            shape[dim] = missing
            return torch.cat([t.new_zeros(shape), t], dim=dim)

        layers = [
            (torch.cat([pad(x.keys, -2), pad(y.keys, -2)]), torch.cat([pad(x.values, -2), pad(y.values, -2)]))
            for x, y in zip(a.cache.layers, b.cache.layers, strict=True)
        ]
        return RunningBatch(
            self._cache_type(ddp_cache_data=layers),
            torch.cat([pad(a.mask, 1), pad(b.mask, 1)]),
            torch.cat([a.positions, b.positions]),
            torch.cat([a.logits, b.logits]),
        )

    def keep(self, batch: RunningBatch, rows: Sequence[int]) -> RunningBatch:
        """Only these rows (finished ones leave), with padding no remaining row needs cut off."""
        torch = self._torch
        index = torch.tensor(list(rows), device=self._device, dtype=torch.long)
        mask = batch.mask.index_select(0, index)
        start = int((mask.sum(0) > 0).nonzero()[0]) if mask.numel() else 0
        layers = [
            (layer.keys.index_select(0, index)[:, :, start:], layer.values.index_select(0, index)[:, :, start:])
            for layer in batch.cache.layers
        ]
        return RunningBatch(
            self._cache_type(ddp_cache_data=layers),
            mask[:, start:],
            batch.positions.index_select(0, index),
            batch.logits.index_select(0, index),
        )

    def choose(
        self,
        batch: RunningBatch,
        row: int,
        settings: GenerationSettings,
        prompt_ids: Sequence[int],
        generated: Sequence[int],
        min_new_tokens: int,
    ) -> int:
        """A row's next token from its logits, as `generate` chooses it: no stop token before `min_new_tokens`,
        the repetition penalty over prompt and output, then the most likely token (or a sample)."""
        torch = self._torch
        scores = batch.logits[row].clone()
        if len(generated) < min_new_tokens and self.stop_ids:
            scores[list(self.stop_ids)] = -float("inf")
        if settings.repetition_penalty != 1.0:
            seen = torch.tensor(sorted({*prompt_ids, *generated}), device=scores.device, dtype=torch.long)
            picked = scores.index_select(0, seen)
            penalty = settings.repetition_penalty
            scores.index_copy_(0, seen, torch.where(picked < 0, picked * penalty, picked / penalty))
        if not settings.do_sample:
            return int(torch.argmax(scores))
        scores = scores / settings.temperature
        if settings.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=True)
            cumulative = ordered.softmax(-1).cumsum(-1)
            drop = cumulative - ordered.softmax(-1) > settings.top_p  # keep the smallest set reaching top_p
            scores[order[drop]] = -float("inf")
        return int(torch.multinomial(scores.softmax(-1), 1))


def take_token(
    decoder: Decoder, batch: RunningBatch, row: int, request: GenerationRequest, generated: list[int]
) -> tuple[int | None, FinishReason | None]:
    """A row's next token, appended to `generated`, and why the row is finished, if it is.

    A stop token ends the row and is not kept (None, "stop"); the token that reaches the row's
    `max_new_tokens` is kept and ends it (token, "length"); otherwise (token, None)."""
    min_new = min(request.settings.min_new_tokens, request.max_new_tokens)
    token = decoder.choose(batch, row, request.settings, request.prompt_ids, generated, min_new)
    if token in decoder.stop_ids:
        return None, "stop"
    generated.append(token)
    return token, "length" if len(generated) >= request.max_new_tokens else None
