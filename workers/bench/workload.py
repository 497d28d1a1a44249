"""The bench's workload: its knobs, and seeded reply jobs whose prompts have a set token length."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shared.jobs import parse_job
from workers.prompts import build_messages
from workers.runtime import HFRuntime

BENCH_TEMPLATE = "[system]\n\n[user]\n$message\n"
WORDS = (
    "order parcel refund size colour cotton bottle delivery tracking return week invoice shoes scarf "
    "discount warehouse courier package address payment receipt exchange replacement damaged"
).split()


@dataclass(frozen=True)
class BenchConfig:
    model: str = "local:gpt2-small"
    jobs: int = 64
    batch_size: int = 16
    max_wait_s: float = 0.05
    new_tokens: int = 32
    min_prompt_tokens: int = 24
    max_prompt_tokens: int = 40
    sweep: tuple[int, ...] = (1, 2, 4, 8, 16)
    sweep_jobs: int = 32
    rate_fraction: float = 0.5
    dtype: str = "float32"
    device: str = "cpu"  # or "cuda:0": the ceiling and both workers run there
    torch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    seed: int = 0


def quick(config: BenchConfig) -> BenchConfig:
    return replace(config, model="local:tiny", jobs=16, batch_size=4, new_tokens=8, sweep=(1, 4), sweep_jobs=8)


def write_templates(out_dir: Path) -> Path:
    """A bare reply template, so prompt length is set by the message alone."""
    templates = out_dir / "templates"
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "reply.txt").write_text(BENCH_TEMPLATE)
    return templates


def make_payloads(runtime: HFRuntime, config: BenchConfig, templates: Path) -> list[dict[str, Any]]:
    """Reply jobs whose rendered prompts are min..max prompt tokens long (seeded)."""
    rng = random.Random(config.seed)
    payloads = []
    for _ in range(config.jobs):
        target = rng.randint(config.min_prompt_tokens, config.max_prompt_tokens)
        words: list[str] = []
        length = 0
        for _ in range(1000):  # add words until the target; a word that overshoots the max is swapped
            if length >= target:
                break
            words.append(rng.choice(WORDS))
            length = len(encode_payload(runtime, {"customer_message": " ".join(words)}, templates))
            if length > config.max_prompt_tokens:
                words.pop()
                length = len(encode_payload(runtime, {"customer_message": " ".join(words)}, templates))
        payloads.append({"customer_message": " ".join(words)})
    return payloads


def encode_payload(runtime: HFRuntime, payload: dict[str, Any], templates: Path) -> tuple[int, ...]:
    job = parse_job("reply", payload)
    return tuple(runtime.encode(runtime.render(build_messages("reply", job, templates))))
