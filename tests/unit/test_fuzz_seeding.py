"""The fuzz tests are seeded in the default suite, so a run's outcome is reproducible (tests/conftest.py)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import FUZZ_SEED, FUZZ_SEED_ENV, fuzz_seed

SEEN: list[int] = []


@pytest.mark.skipif(os.environ.get(FUZZ_SEED_ENV) == "random", reason="an unseeded run was asked for")
def test_hypothesis_runs_derandomized_without_a_database() -> None:
    assert settings.default.derandomize is True
    assert settings.default.database is None  # no examples carried over from an earlier run either


@settings(max_examples=5)
@given(st.integers())
def _draw(value: int) -> None:
    SEEN.append(value)


@pytest.mark.skipif(os.environ.get(FUZZ_SEED_ENV) == "random", reason="an unseeded run was asked for")
def test_two_runs_of_a_property_draw_the_same_examples() -> None:
    _draw()
    first = list(SEEN)
    SEEN.clear()
    _draw()
    assert SEEN == first


def test_the_seed_is_fixed_unless_asked_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FUZZ_SEED_ENV, raising=False)
    assert fuzz_seed() == FUZZ_SEED
    monkeypatch.setenv(FUZZ_SEED_ENV, "random")
    assert fuzz_seed() is None
    monkeypatch.setenv(FUZZ_SEED_ENV, "7")
    assert fuzz_seed() == 7
