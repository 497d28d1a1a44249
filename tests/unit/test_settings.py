"""Settings: env parsing, per-type merges, consistency checks, and the README table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from greenq.shared.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_are_consistent() -> None:
    s = Settings()
    assert s.backend_url == s.broker_url
    assert s.priority["reply"] > s.priority["description"] > s.priority["strategy"]
    assert s.batch["reply"].max_wait_s < s.batch["strategy"].max_wait_s


def test_nested_env_merges_onto_type_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENQ_BATCH__REPLY__MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("GREENQ_GENERATION", '{"strategy": {"max_new_tokens": 32}}')
    monkeypatch.setenv("GREENQ_MODELS__REPLY", "/models/small-chat")
    s = Settings()
    assert s.batch["reply"].max_batch_size == 4
    assert s.batch["reply"].max_wait_s == 0.02  # reply's default kept
    assert s.generation["strategy"].max_new_tokens == 32
    assert s.model_for("reply") == "/models/small-chat"
    assert s.model_for("strategy") == s.model


def test_visibility_timeout_must_cover_the_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENQ_VISIBILITY_TIMEOUT_S", "60")
    with pytest.raises(ValueError, match="visibility_timeout_s"):
        Settings()


def test_priority_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENQ_PRIORITY__REPLY", "12")
    with pytest.raises(ValueError, match="0 \\(least urgent\\) to 9"):
        Settings()


def test_readme_documents_exactly_the_settings() -> None:
    documented = set(re.findall(r"^\| `(GREENQ_[A-Z_]+)`", README.read_text(), flags=re.M))
    fields = {f"GREENQ_{name.upper()}" for name in Settings.model_fields}
    assert documented == fields
