"""Shared fixtures: a tiny local model, and (for integration tests) a private redis-server.

Fuzzing is seeded so a run is reproducible (CI's outcome never depends on luck): hypothesis runs
derandomized, schemathesis with FUZZ_SEED. GREENQ_TEST_FUZZ_SEED=random fuzzes afresh each run;
an integer there seeds schemathesis with it instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from greenq.workers.model.model_builder import build_local_model

FUZZ_SEED_ENV = "GREENQ_TEST_FUZZ_SEED"
FUZZ_SEED = 20261204

settings.register_profile("seeded", derandomize=True, database=None, print_blob=True)
settings.register_profile("random", print_blob=True)
settings.load_profile("random" if os.environ.get(FUZZ_SEED_ENV) == "random" else "seeded")


def fuzz_seed() -> int | None:
    """The seed fuzzers use in this run; None: unseeded (GREENQ_TEST_FUZZ_SEED=random)."""
    given = os.environ.get(FUZZ_SEED_ENV, "")
    if given == "random":
        return None
    return int(given) if given else FUZZ_SEED


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random GPT-2-style weights and a BPE tokenizer trained in seconds: no download."""
    return build_local_model("tiny", tmp_path_factory.mktemp("models") / "tiny")
