"""Sample jobs of every type, for the demo and the tests: each job type's declared samples, and the demo's
realistic store jobs (`demo_jobs.jsonl`), in English and Chinese."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from greenq.shared import job_types
from greenq.shared.job_types import JobType


def sample_mix(count: int, pattern: tuple[JobType, ...] | None = None) -> list[tuple[JobType, dict[str, Any]]]:
    """`count` jobs cycling through `pattern` (job types, repeats allowed; default: every type) and each
    type's declared samples."""
    pattern = pattern or job_types.names()
    seen: dict[JobType, int] = {}
    out = []
    for i in range(count):
        job_type = pattern[i % len(pattern)]
        samples = job_types.get(job_type).samples
        out.append((job_type, dict(samples[seen.get(job_type, 0) % len(samples)])))
        seen[job_type] = seen.get(job_type, 0) + 1
    return out


def demo_jobs(count: int) -> list[tuple[JobType, dict[str, Any]]]:
    """`count` realistic store jobs (held out from the bundled model's training corpus), cycled."""
    text = resources.files(__package__).joinpath("demo_jobs.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [(job_types.get(rows[i % len(rows)]["type"]).name, rows[i % len(rows)]["job"]) for i in range(count)]
