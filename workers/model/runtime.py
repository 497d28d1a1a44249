"""What touches the model: `HFRuntime`, a transformers causal LM behind the `ModelRuntime` contract
(`greenq.workers.model.types`), with step decoding (`greenq.workers.model.decoding`) for continuous batching.

torch and transformers are imported only inside `HFRuntime`, so the rest of greenq (and
the launcher, which must not initialise CUDA) stays light.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, cast

from greenq.shared.errors import ModelLoadError
from greenq.shared.policies import GenerationSettings
from greenq.workers.model.decoding import StepDecoder
from greenq.workers.model.prompts import Message, render_plain
from greenq.workers.model.text import RowText, finish_row
from greenq.workers.model.types import Generation, GenerationRequest, ModelRuntime, TextHook, left_pad, trim_row

log = logging.getLogger(__name__)


def warm_up(runtime: ModelRuntime) -> float:
    """One tiny generation so the first real batch pays no lazy-initialisation cost; returns seconds."""
    start = time.perf_counter()
    ids = tuple(runtime.encode(runtime.render([Message("user", "Hello")])))
    runtime.generate([GenerationRequest(ids, 2, GenerationSettings(max_new_tokens=2, min_new_tokens=0))])
    return time.perf_counter() - start


class HFRuntime:
    """A transformers causal LM kept warm on one device.

    >>> rt = HFRuntime("/models/tiny", device="cpu", dtype="float32")
    >>> ids = rt.encode(rt.render([Message("user", "Hi")]))
    >>> rt.generate([GenerationRequest(tuple(ids), 16, GenerationSettings())])
    """

    def __init__(self, name_or_path: str, device: str = "cpu", dtype: str = "auto", label: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = label or name_or_path
        self.device = device
        self._torch = torch
        torch_dtype = self._resolve_dtype(dtype, device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            self.model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"could not load model {name_or_path!r}: {exc}. Set GREENQ_MODEL to a local directory "
                "or a hub name available offline."
            ) from exc
        # transformers wraps `to` in functools.wraps, which typeshed does not bind as a method.
        cast("torch.nn.Module", self.model).to(device).eval()
        self.tokenizer.padding_side = "left"
        eos = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        if self.pad_id is None:
            raise ModelLoadError(f"model {name_or_path!r} has neither a pad nor an end-of-sequence token")
        self.stop_ids = frozenset(self._stop_ids())
        self.max_context_tokens = int(getattr(self.model.config, "max_position_embeddings", 0) or 1 << 20)
        self.has_chat_template = bool(getattr(self.tokenizer, "chat_template", None))

    @staticmethod
    def _resolve_dtype(dtype: str, device: str) -> Any:
        import torch

        if dtype == "auto":
            if device.startswith("cuda"):
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.float32
        return getattr(torch, dtype)

    def _stop_ids(self) -> set[int]:
        ids = set()
        for source in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, list):
                ids.update(source)
        return ids

    def render(self, messages: Sequence[Message]) -> str:
        if self.has_chat_template:
            text = self.tokenizer.apply_chat_template(
                [m.as_dict() for m in messages], tokenize=False, add_generation_prompt=True
            )
            return str(text)
        return render_plain(list(messages))

    def encode(self, text: str) -> list[int]:
        # A chat template writes its own special tokens; a plain prompt gets the tokenizer's.
        return list(self.tokenizer(text, add_special_tokens=not self.has_chat_template)["input_ids"])

    def step_decoder(self) -> StepDecoder:
        """Step-by-step decoding on this model, for continuous batching (workers/serving/continuous.py)."""
        return StepDecoder(self.model, self.device, self.pad_id, self.stop_ids)

    def decode(self, tokens: list[int]) -> str:
        return cast(str, self.tokenizer.decode(tokens, skip_special_tokens=True))  # one row: one string

    def generate(self, requests: Sequence[GenerationRequest], on_text: TextHook | None = None) -> list[Generation]:
        torch = self._torch
        settings = requests[0].settings
        ids, mask = left_pad([r.prompt_ids for r in requests], self.pad_id)
        input_ids = torch.tensor(ids, device=self.device)
        attention_mask = torch.tensor(mask, device=self.device)
        max_new = max(r.max_new_tokens for r in requests)
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "min_new_tokens": min(settings.min_new_tokens, max_new),
            "do_sample": settings.do_sample,
            "pad_token_id": self.pad_id,
            "eos_token_id": sorted(self.stop_ids) or None,
        }
        if settings.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = settings.repetition_penalty
        if settings.do_sample:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
        rows = [RowText(self.decode, r.max_new_tokens, self.stop_ids) for r in requests]
        if on_text is not None:
            kwargs["streamer"] = _StepStreamer(rows, on_text)
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        new_tokens = out[:, input_ids.shape[1] :].tolist()
        results: list[Generation] = []
        tails: list[str] = []
        for tokens_out, request, text in zip(new_tokens, requests, rows, strict=True):
            tokens, reason = trim_row(tokens_out, request.max_new_tokens, self.stop_ids)
            generation, tail = finish_row(text, tokens, reason, self.decode)
            results.append(generation)
            tails.append(tail)
        if on_text is not None and any(tails):
            on_text(tails)
        return results


class _StepStreamer:
    """transformers' streamer interface over a whole batch: `put` gets the prompt once, then each step's
    next token for every row (its own streamers take one row only)."""

    def __init__(self, rows: list[RowText], on_text: TextHook) -> None:
        self._rows = rows
        self._on_text = on_text
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        tokens = value.reshape(-1).tolist()
        deltas = [row.push(int(token)) for row, token in zip(self._rows, tokens, strict=True)]
        if any(deltas):
            self._on_text(deltas)

    def end(self) -> None:
        pass
