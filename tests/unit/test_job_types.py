"""A job type is one declaration: a toy fourth type gets everything else from it, with no other edit.

The `faq` type below is declared here, as a deployment would declare it in shared/job_types/faq.py,
with its template in a templates folder; validation, defaults, settings overrides, prompts, result
checks, queue and task names, Celery routes, the envelope and the API schemas all follow from it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
import yaml

from greenq.producers.gateway.schemas import BatchRequest, submit_request_for
from greenq.producers.samples import sample_mix
from greenq.shared import job_types
from greenq.shared.celery_app import make_celery
from greenq.shared.envelope import Envelope, envelope_schema
from greenq.shared.errors import ConfigError, InvalidJob, UnknownJobType
from greenq.shared.job_types import JobTypeSpec, register, unregister
from greenq.shared.job_types.fields import Language, LongText, StrictModel
from greenq.shared.job_types.prompt_text import LANGUAGE_RULES
from greenq.shared.jobs import parse_job
from greenq.shared.policies import BatchPolicy, GenerationSettings
from greenq.shared.queues import job_type_of_task, parse_queues, queue_name, task_name
from greenq.shared.settings import Settings
from greenq.workers.commands.exporter import ObjectiveCollector
from greenq.workers.edge.handler import JobHandler, WorkerIdentity
from greenq.workers.model.prompts import build_messages
from greenq.workers.serving.batcher import Batcher
from tests.fake_runtime import EchoRuntime

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
FAQ_TEMPLATE = "[system]\nAnswer from the store's FAQ. $language_rule\n[user]\n$question\n"


class FaqJob(StrictModel):
    schema_version: Literal[1] = 1
    question: LongText
    language: Language = "en"


def faq_values(job: FaqJob) -> dict[str, str]:
    return {"question": job.question, "language_rule": LANGUAGE_RULES[job.language]}


def repeats_the_question(job: FaqJob, text: str) -> list[str]:
    return ["the answer repeats the question"] if job.question in text else []


@pytest.fixture
def faq() -> Iterator[JobTypeSpec[FaqJob]]:
    spec = register(
        JobTypeSpec(
            name="faq",
            summary="an answer from the store's FAQ",
            payload=FaqJob,
            prompt_values=faq_values,
            priority=6,
            latency_objective_s=60,
            batch=BatchPolicy(max_batch_size=4, max_wait_s=0.01),
            generation=GenerationSettings(max_new_tokens=64),
            checks=(repeats_the_question,),
            samples=({"question": "Do you ship to Norway?"},),
        )
    )
    yield spec
    unregister("faq")


def test_a_fourth_type_validates_builds_its_prompt_and_has_defaults(
    faq: JobTypeSpec[FaqJob], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = parse_job("faq", faq.samples[0])
    assert isinstance(job, FaqJob)
    with pytest.raises(InvalidJob) as info:
        parse_job("faq", {"question": "", "mood": "curious"})
    assert {field for field, _ in info.value.errors} == {"payload.question", "payload.mood"}

    monkeypatch.setenv("GREENQ_BATCH__FAQ__MAX_WAIT_S", "0.5")
    monkeypatch.setenv("GREENQ_PRIORITY__FAQ", "7")
    settings = Settings()
    assert settings.batch["faq"] == BatchPolicy(max_batch_size=4, max_wait_s=0.5)  # declared size kept
    assert settings.generation["faq"].max_new_tokens == 64
    assert settings.priority["faq"] == 7 and settings.priority["reply"] == 8

    (tmp_path / "faq.txt").write_text(FAQ_TEMPLATE, encoding="utf-8")
    messages = build_messages("faq", job, tmp_path)
    assert [(m.role, m.content) for m in messages] == [
        ("system", "Answer from the store's FAQ. Write in English."),
        ("user", "Do you ship to Norway?"),
    ]
    assert sample_mix(4, ("faq", "reply"))[2] == ("faq", dict(faq.samples[0]))


def test_a_fourth_type_gets_its_queue_task_route_and_wire_schemas(faq: JobTypeSpec[FaqJob]) -> None:
    assert (queue_name("faq"), task_name("faq")) == ("greenq.faq", "greenq.jobs.faq")
    assert job_type_of_task("greenq.jobs.faq") == "faq" and parse_queues("greenq.faq,reply") == ["faq", "reply"]
    app = make_celery(Settings())
    assert app.conf.task_routes["greenq.jobs.faq"] == {"queue": "greenq.faq"}
    assert "greenq.faq" in {q.name for q in app.conf.task_queues}
    envelope = Envelope.decode(
        {"job_id": "j", "job_type": "faq", "payload": dict(faq.samples[0]), "submitted_at": 1.0, "priority": 6}
    )
    assert envelope.job_type == "faq"
    schema = envelope_schema()
    assert schema["discriminator"]["mapping"]["faq"] == "#/$defs/FaqEnvelope"
    assert schema["$defs"]["FaqEnvelope"]["properties"]["payload"]["$ref"] == "#/$defs/FaqJob"
    request = submit_request_for(faq).model_json_schema()
    assert request["properties"]["job"]["$ref"] == "#/$defs/FaqJob"
    batch = BatchRequest.model_json_schema()
    assert "faq" in batch["properties"]["jobs"]["items"]["discriminator"]["mapping"]


def test_a_worker_computes_a_fourth_type_and_runs_its_checks(faq: JobTypeSpec[FaqJob], tmp_path: Path) -> None:
    (tmp_path / "faq.txt").write_text(FAQ_TEMPLATE, encoding="utf-8")
    settings = Settings(model="echo", prompt_templates_dir=tmp_path)
    runtimes = {"echo": EchoRuntime()}
    batcher = Batcher(runtimes, settings.batch)
    batcher.start()
    try:
        handler = JobHandler(settings, runtimes, batcher, WorkerIdentity("cpu@test", "cpu"))
        body = {"job_id": "f1", "job_type": "faq", "payload": dict(faq.samples[0]), "submitted_at": time.time()}
        result = handler.handle("faq", "f1", {**body, "priority": 6})
    finally:
        batcher.stop()
    assert result.status.value == "succeeded" and result.job_type == "faq"
    assert "Do you ship to Norway?" in result.text  # the echo runtime repeats the prompt's tail
    assert result.warnings == ["the answer repeats the question"]


def test_an_unknown_type_is_an_error_naming_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    known = "expected one of description, reply, strategy"
    with pytest.raises(UnknownJobType, match=known):
        job_types.get("poem")
    with pytest.raises(UnknownJobType, match=known):
        parse_job("poem", {})
    with pytest.raises(UnknownJobType, match=known):
        build_messages("poem", FaqJob(question="?"))
    with pytest.raises(InvalidJob, match=known):
        Envelope.decode({"job_id": "j", "job_type": "poem", "payload": {}, "submitted_at": 1.0, "priority": 5})
    with pytest.raises(ValueError, match=known):
        parse_queues("reply,poem")
    assert job_type_of_task("greenq.jobs.poem") is None
    monkeypatch.setenv("GREENQ_BATCH__POEM__MAX_WAIT_S", "1")
    with pytest.raises(ValueError, match=known):
        Settings()


def test_a_job_of_the_wrong_model_is_refused() -> None:
    with pytest.raises(TypeError, match="a reply job must be a ReplyJob"):
        build_messages("reply", FaqJob(question="?"))


def test_declarations_are_checked_when_made(faq: JobTypeSpec[FaqJob]) -> None:
    def declare(**changes: object) -> JobTypeSpec[FaqJob]:
        fields: dict[str, object] = {
            "name": "faq_two",
            "summary": "s",
            "payload": FaqJob,
            "prompt_values": faq_values,
            "priority": 5,
            "latency_objective_s": 60,
        }
        return JobTypeSpec(**{**fields, **changes})  # type: ignore[arg-type]

    assert declare().camel_name == "FaqTwo"
    with pytest.raises(ConfigError, match="already registered"):
        register(declare(name="faq"))
    for bad_name in ("FAQ", "faq-two", "faq__two", "2faq", ""):
        with pytest.raises(ConfigError, match="job type name"):
            declare(name=bad_name)
    with pytest.raises(ConfigError, match="0 \\(least urgent\\) to 9"):
        declare(priority=10)
    with pytest.raises(ConfigError, match="sample 0 is invalid: question"):
        declare(samples=({"question": ""},))


def test_built_in_types_keep_their_wire_names_and_defaults() -> None:
    declared = {
        s.name: (s.priority, s.batch.max_batch_size, s.batch.max_wait_s, s.generation.max_new_tokens)
        for s in job_types.specs()
    }
    assert declared == {
        "description": (5, 16, 0.05, 200),
        "reply": (8, 16, 0.02, 160),
        "strategy": (2, 8, 0.2, 256),
    }
    assert [task_name(n) for n in job_types.names()] == [
        "greenq.jobs.description",
        "greenq.jobs.reply",
        "greenq.jobs.strategy",
    ]


def _seconds(text: str) -> float:
    number, unit = text.split()
    return float(number) * {"s": 1, "min": 60, "h": 3600}[unit]


def test_the_readme_table_follows_the_declarations() -> None:
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| (\d+)[^|]* \| (\d+) / ([\d.]+) s \| (\d+) \| ([^|]+) \|$", README, re.M)
    documented = {
        name: (int(priority), int(size), float(wait), int(tokens), _seconds(objective.strip()))
        for name, priority, size, wait, tokens, objective in rows
    }
    declared = {
        s.name: (
            s.priority,
            s.batch.max_batch_size,
            s.batch.max_wait_s,
            s.generation.max_new_tokens,
            s.latency_objective_s,
        )
        for s in job_types.specs()
    }
    assert documented == declared


def test_alerts_read_the_objectives_from_the_exporter_for_every_type(faq: JobTypeSpec[FaqJob]) -> None:
    objectives = {
        (s.labels["job_type"], s.labels["queue"]): s.value
        for family in ObjectiveCollector(Settings().latency_objective_s).collect()
        for s in family.samples
    }
    assert objectives == {(s.name, queue_name(s.name)): s.latency_objective_s for s in job_types.specs()}
    assert objectives[("faq", "greenq.faq")] == 60
    # No per-queue or per-type constants for a new type to be added to: the rules join on the metric.
    rules = yaml.safe_load((REPO / "ops" / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    for alert in ("GreenqQueueAgeAboveObjective", "GreenqLatencyObjectiveMissed"):
        assert "greenq_latency_objective_seconds" in exprs[alert]
        assert not re.search(r"[<>]=?\s*[\d.]+|\b(queue|job_type)\s*=~?\s*\"", exprs[alert]), exprs[alert]
    assert not re.search(r"greenq\.(" + "|".join(job_types.names()) + r")\b", "\n".join(exprs.values()))
