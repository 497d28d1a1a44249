"""The bench's workload: its knobs, and seeded reply jobs whose prompts have a set token length."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from greenq.shared.job_types import JobType
from greenq.shared.jobs import parse_job
from greenq.workers.model.prompts import build_messages
from greenq.workers.model.runtime import HFRuntime

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

    def length_of(words: list[str]) -> int:
        return len(encode_payload(runtime, {"customer_message": " ".join(words)}, templates))

    return [{"customer_message": " ".join(fit_words(rng, config, length_of))} for _ in range(config.jobs)]


def fit_words(rng: random.Random, config: BenchConfig, length_of: Callable[[list[str]], int]) -> list[str]:
    """Seeded words whose prompt (`length_of` them, in tokens) is min..max prompt tokens long."""
    target = rng.randint(config.min_prompt_tokens, config.max_prompt_tokens)
    words: list[str] = []
    length = 0
    for _ in range(1000):  # add words until the target; a word that overshoots the max is swapped
        if length >= target:
            break
        words.append(rng.choice(WORDS))
        length = length_of(words)
        if length > config.max_prompt_tokens:
            words.pop()
            length = length_of(words)
    return words


def encode_payload(runtime: HFRuntime, payload: dict[str, Any], templates: Path) -> tuple[int, ...]:
    return encode_job(runtime, "reply", payload, templates)


def encode_job(runtime: HFRuntime, job_type: JobType, payload: dict[str, Any], templates: Path) -> tuple[int, ...]:
    """The token ids of one job's rendered prompt, as the worker would build it."""
    job = parse_job(job_type, payload)
    return tuple(runtime.encode(runtime.render(build_messages(job_type, job, templates))))
