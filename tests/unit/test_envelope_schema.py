"""The published envelope schema: current with the model, and true of what the client sends."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from greenq.producers.client import Client, JobSpec
from greenq.producers.gateway.schemas import BatchRequest
from greenq.shared import job_types
from greenq.shared.envelope import ENVELOPE_SCHEMA_PATH, envelope_schema, render_envelope_schema
from greenq.shared.settings import Settings


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(ENVELOPE_SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_published_schema_is_regenerated_from_the_model() -> None:
    assert ENVELOPE_SCHEMA_PATH.read_text(encoding="utf-8") == render_envelope_schema(), (
        "shared/schema/envelope.schema.json is stale: run `python -m greenq.shared.envelope`"
    )


def test_every_envelope_the_client_sends_is_valid(validator: jsonschema.protocols.Validator) -> None:
    client = Client(Settings())
    try:
        for spec in job_types.specs():
            for payload in spec.samples:
                envelope = client.prepare(JobSpec(spec.name, dict(payload), "key-1", 3, 60.0))
                validator.validate(envelope.model_copy(update={"job_id": "j-1"}).encode())
    finally:
        client.close()


@pytest.mark.parametrize(
    "change",
    [
        {"priority": 10},
        {"job_type": "poem"},
        {"payload": {"sku": "A", "title": "t", "category": "c"}},  # a description payload on a reply
        {"payload": {"customer_message": "hi", "mood": "angry"}},
        {"colour": "green"},
        {"idempotency_key": ""},
    ],
)
def test_invalid_envelopes_are_refused(validator: jsonschema.protocols.Validator, change: dict[str, Any]) -> None:
    good = {
        "schema_version": 1,
        "job_id": "j-1",
        "job_type": "reply",
        "payload": {"customer_message": "hi"},
        "submitted_at": 1.0,
        "priority": 8,
    }
    validator.validate(good)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**good, **change})


def test_the_envelope_and_the_gateway_batch_have_one_variant_per_registered_type() -> None:
    """Both unions come from `greenq.shared.job_types.variants`: the same types, each with its own payload schema."""
    envelope = envelope_schema()
    batch = BatchRequest.model_json_schema()
    envelope_variants = envelope["discriminator"]["mapping"]
    batch_variants = batch["properties"]["jobs"]["items"]["discriminator"]["mapping"]
    assert list(envelope_variants) == list(batch_variants) == list(job_types.names())
    for name in job_types.names():
        spec = job_types.get(name)
        envelope_payload = envelope["$defs"][f"{spec.camel_name}Envelope"]["properties"]["payload"]
        batch_job = batch["$defs"][f"{spec.camel_name}BatchItem"]["properties"]["job"]
        assert envelope_payload["$ref"] == batch_job["$ref"] == f"#/$defs/{spec.payload.__name__}"
