"""The model shipped in the package loads through the normal loading code and writes text for every job type."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenq.producers.samples import demo_jobs
from greenq.shared import job_types
from greenq.shared.job_types import JobType
from greenq.shared.jobs import parse_job
from greenq.shared.policies import GenerationSettings
from greenq.workers.model.local_model import resolve_model
from greenq.workers.model.prompts import build_messages
from greenq.workers.model.runtime import HFRuntime
from greenq.workers.model.types import GenerationRequest


@pytest.fixture(scope="module")
def runtime() -> HFRuntime:
    return HFRuntime(resolve_model("local:store-assistant", Path("/nonexistent")), "cpu", "float32")


@pytest.mark.slow  # generates for every sample with the shipped model: about 20 s on 2 cores
@pytest.mark.parametrize("job_type", list(job_types.names()))
def test_shipped_model_answers_every_job_type(runtime: HFRuntime, job_type: JobType) -> None:
    gen = GenerationSettings(max_new_tokens=60)
    requests = []
    for payload in job_types.get(job_type).samples:
        messages = build_messages(job_type, parse_job(job_type, payload))
        requests.append(GenerationRequest(tuple(runtime.encode(runtime.render(messages))), 60, gen))
    outputs = runtime.generate(requests)
    assert all(o.text.strip() for o in outputs)


def test_demo_jobs_are_valid_and_cover_every_type() -> None:
    jobs = demo_jobs(48)
    assert {job_type for job_type, _ in jobs} == set(job_types.names())
    for job_type, payload in jobs:
        parse_job(job_type, payload)
