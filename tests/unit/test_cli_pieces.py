"""Pure producer pieces: JSON-lines reading, result records from Celery meta, URL redaction."""

from __future__ import annotations

from greenq.producers.jsonl import read_lines
from greenq.shared.errors import JobNotComputed
from greenq.shared.redact import redact_url
from greenq.shared.results import JobResult, JobStatus, result_from_meta


def test_read_lines_reports_each_problem_with_its_line() -> None:
    lines = [
        '{"sku": "a"}',
        "",
        "# comment",
        "[1]",
        '{"job": {"sku": "b"}, "priority": 11, "colour": 1}',
        '{"job": {"sku": "c"}, "idempotency_key": "k", "deadline_s": 5}',
    ]
    out = list(read_lines(lines, "description"))
    assert [line.number for line in out] == [1, 4, 5, 6]
    assert out[0].spec is not None and out[0].spec.payload == {"sku": "a"}
    assert out[1].error is not None and out[1].error.errors == [("(line)", "must be a JSON object")]
    assert out[2].error is not None and dict(out[2].error.errors) == {
        "priority": "must be an integer from 0 (least urgent) to 9 (most urgent)",
        "colour": "unknown field (not part of the schema; check the spelling)",
    }
    assert out[3].spec is not None and (out[3].spec.idempotency_key, out[3].spec.deadline_s) == ("k", 5.0)


def test_result_from_meta_reads_every_final_state() -> None:
    record = JobResult(job_id="j", job_type="reply", status=JobStatus.expired, error="late").to_json()
    assert (
        result_from_meta("j", {"status": "SUCCESS", "result": {**record, "status": "succeeded"}}).status
        is JobStatus.succeeded
    )
    assert result_from_meta("j", {"status": "FAILURE", "result": JobNotComputed(record)}).status is JobStatus.expired
    raw = {"exc_type": "JobNotComputed", "exc_message": [record], "exc_module": "greenq.shared.errors"}
    assert result_from_meta("j", {"status": "FAILURE", "result": raw}).error == "late"
    crash = result_from_meta("j", {"status": "FAILURE", "result": RuntimeError("redis://:pw@h/0 down")})
    assert crash.status is JobStatus.failed and "pw" not in (crash.error or "")


def test_redact_url() -> None:
    assert redact_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("rediss://user:pw@host/1") == "rediss://user:***@host/1"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
