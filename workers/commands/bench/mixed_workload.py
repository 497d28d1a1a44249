"""The load bench's workload: every job type with a bare template and prompts of a set token length.

Each type's template keeps only the placeholder that carries the bench's words, so prompt length is
set by the words alone (as the reply-only bench does), and every payload is valid for its type's
schema. With the same generation lengths for every type (load.py), the types differ in name,
priority and latency objective only: the comparison is about batching.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from greenq.shared.job_types import JobType
from greenq.workers.commands.bench.workload import BenchConfig, encode_job, fit_words
from greenq.workers.model.runtime import HFRuntime

TEMPLATES: dict[JobType, str] = {
    "reply": "[system]\n\n[user]\n$message\n",
    "description": "[system]\n\n[user]\n$attributes\n",
    "strategy": "[system]\n\n[user]\n$goals\n",
}
WORDS_PER_LINE = 12  # 12 of the bench's words fit the schemas' 200-character text fields


def write_templates(out_dir: Path, job_types: Sequence[JobType]) -> Path:
    templates = out_dir / "templates"
    templates.mkdir(parents=True, exist_ok=True)
    for job_type in job_types:
        (templates / f"{job_type}.txt").write_text(TEMPLATES[job_type])
    return templates


def lines_of(words: Sequence[str]) -> list[str]:
    return [" ".join(words[i : i + WORDS_PER_LINE]) for i in range(0, len(words), WORDS_PER_LINE)]


def payload_from_words(job_type: JobType, words: Sequence[str]) -> dict[str, Any]:
    """A valid payload of `job_type` whose templated prompt is (nearly) just `words`."""
    if job_type == "reply":
        return {"customer_message": " ".join(words)}
    if job_type == "description":
        attributes = {f"a{i + 1}": line for i, line in enumerate(lines_of(words))}
        return {"sku": "BENCH-1", "title": "bench item", "category": "bench", "attributes": attributes}
    if job_type == "strategy":
        return {"period": "bench", "metrics": {}, "goals": lines_of(words)}
    raise ValueError(f"the load bench has no workload for job type {job_type!r}; use {', '.join(TEMPLATES)}")


def make_typed_payloads(
    runtime: HFRuntime, config: BenchConfig, templates: Path, job_types: Sequence[JobType], per_type: int
) -> dict[JobType, list[dict[str, Any]]]:
    """`per_type` payloads of each type, prompts min..max prompt tokens long (seeded)."""
    rng = random.Random(config.seed)
    pools: dict[JobType, list[dict[str, Any]]] = {}
    for job_type in job_types:

        def length_of(words: list[str], job_type: JobType = job_type) -> int:
            return len(encode_job(runtime, job_type, payload_from_words(job_type, words), templates))

        pools[job_type] = [payload_from_words(job_type, fit_words(rng, config, length_of)) for _ in range(per_type)]
    return pools
