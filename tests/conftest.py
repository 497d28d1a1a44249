"""Shared fixtures: a tiny local model, and (for integration tests) a private redis-server."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.model_builder import build_local_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random GPT-2-style weights and a BPE tokenizer trained in seconds: no download."""
    return build_local_model("tiny", tmp_path_factory.mktemp("models") / "tiny")
