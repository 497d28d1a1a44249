"""A setting in the wrong form stops an entry point with the form expected and an example, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from greenq.shared.settings import FORM_EXAMPLES, Settings, expected_form

REPO = Path(__file__).resolve().parents[2]


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GREENQ_")}
    return subprocess.run(argv, env={**clean, **env}, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_greenq_gateway_says_a_list_setting_wants_a_json_list() -> None:
    done = _run(
        [sys.executable, "-m", "greenq.producers.cli", "gateway", "--port", "1"],
        {"GREENQ_GATEWAY_CALLBACK_ALLOW": "127.0.0.1"},
    )
    print(done.stderr)
    assert done.returncode == 2
    assert "GREENQ_GATEWAY_CALLBACK_ALLOW" in done.stderr
    assert "a JSON list" in done.stderr and """'["10.20.0.0/16", "hooks.internal"]'""" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_says_a_mapping_setting_wants_a_json_object() -> None:
    done = _run(
        [sys.executable, "-m", "greenq.workers.edge.process", "--queues", "reply"], {"GREENQ_MODELS": "reply=gpt2"}
    )
    assert done.returncode != 0
    assert "GREENQ_MODELS" in done.stderr and "a JSON object" in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize(
    ("variable", "value", "form"),
    [
        ("GREENQ_GATEWAY_CALLBACK_ALLOW", "127.0.0.1", "a JSON list"),
        ("GREENQ_GATEWAY_CALLBACK_ALLOW", "[127.0.0.1]", "a JSON list"),
        ("GREENQ_MODELS", "{reply: gpt2}", "a JSON object"),
        ("GREENQ_BATCH", "max_batch_size=8", "a JSON object"),
        ("GREENQ_CHAOS", "on", "a JSON object"),
        ("GREENQ_STREAM", "off", "GREENQ_STREAM__ENABLED"),  # a nested model: its fields can be set one by one
    ],
)
def test_every_structured_setting_explains_its_form(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, form: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as caught:
        Settings()
    message = str(caught.value)
    assert variable in message and form in message and "e.g." in message
    assert value not in message or len(value) < 4  # the value itself is not echoed (it might be a secret)


def test_every_example_names_a_structured_setting() -> None:
    assert set(FORM_EXAMPLES) <= set(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        form = expected_form(name, field)
        assert form.startswith(f"GREENQ_{name.upper()} takes ") and "e.g." in form
