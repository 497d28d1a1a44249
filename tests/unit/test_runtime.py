"""Collation and row trimming (pure), and the real HF runtime on the tiny local model."""

from __future__ import annotations

from pathlib import Path

from greenq.shared.policies import GenerationSettings
from greenq.workers.model.prompts import Message
from greenq.workers.model.runtime import HFRuntime
from greenq.workers.model.types import GenerationRequest, left_pad, trim_row


def test_left_pad() -> None:
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids == [[5, 6, 7], [0, 0, 8]]
    assert mask == [[1, 1, 1], [0, 0, 1]]


def test_trim_row_stops_at_own_limit_or_stop_token() -> None:
    assert trim_row([1, 2, 3, 4], 3, frozenset({9})) == ([1, 2, 3], "length")
    assert trim_row([1, 9, 3, 4], 4, frozenset({9})) == ([1], "stop")


def test_batched_generation_matches_one_by_one(tiny_model_dir: Path) -> None:
    """Left padding must not change greedy output: each row equals its solo generation."""
    runtime = HFRuntime(str(tiny_model_dir), device="cpu", dtype="float32")
    gen = GenerationSettings(max_new_tokens=6, min_new_tokens=6)
    prompts = ["Where is my order?", "Write a description of a canvas tote bag made of organic cotton.", "您好"]
    requests = [GenerationRequest(tuple(runtime.encode(runtime.render([Message("user", p)]))), 6, gen) for p in prompts]
    assert len({len(r.prompt_ids) for r in requests}) == 3
    batched = runtime.generate(requests)
    solo = [runtime.generate([r])[0] for r in requests]
    assert [g.text for g in batched] == [g.text for g in solo]
    assert all(g.generated_tokens == 6 and g.text for g in batched)


def test_chat_template_is_used_when_present(tiny_model_dir: Path) -> None:
    runtime = HFRuntime(str(tiny_model_dir), device="cpu", dtype="float32")
    assert runtime.has_chat_template
    assert runtime.render([Message("user", "hi")]).endswith("<|assistant|>\n")
