"""Redis key names have one home, shared/keys.py, and keep the strings deployed data is stored under."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from greenq.shared import keys

REPO = Path(__file__).resolve().parents[2]
KEY_LIKE = re.compile(r"greenq:[a-z]")  # "greenq: message" (a CLI prefix) is not a key


def key_literals(path: Path) -> list[str]:
    """String literals in code (docstrings aside) that look like greenq Redis keys."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings = {
        id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and KEY_LIKE.match(node.value)
    ]


def test_every_key_name_is_in_shared_keys() -> None:
    home = REPO / "shared" / "keys.py"
    elsewhere = {
        str(path.relative_to(REPO)): found
        for package in ("shared", "producers", "workers")
        for path in sorted((REPO / package).rglob("*.py"))
        if path != home and (found := key_literals(path))
    }
    assert elsewhere == {}, f"name these keys in shared/keys.py: {elsewhere}"


def test_key_strings_are_the_deployed_ones() -> None:
    """A changed string orphans what a running Redis holds: change one only with a migration."""
    assert {name: value for name, value in vars(keys).items() if name.isupper()} == {
        "IDEMPOTENCY_KEY_PREFIX": "greenq:idem:",
        "START_MARK_KEY_PREFIX": "greenq:claim:",
        "ATTEMPTS_KEY_PREFIX": "greenq:attempts:",
        "LEASE_KEY_PREFIX": "greenq:lease:",
        "TOKENS_KEY_PREFIX": "greenq:tokens:",
        "DEAD_LETTER_KEY": "greenq:dead",
        "DEAD_LETTER_INDEX_KEY": "greenq:dead:at",
        "DEAD_LETTER_DROPPED_KEY": "greenq:dead:dropped",
        "DEFERRED_JOB_KEY": "greenq:deferred:job",
        "DEFERRED_DUE_KEY": "greenq:deferred:due",
        "DEFERRED_RELEASING_KEY": "greenq:deferred:releasing",
        "DEFERRED_HOLDER_KEY": "greenq:deferred:holder",
        "DEFERRED_COUNT_KEY": "greenq:deferred:count",
        "DEFERRED_SLOT_KEY_PREFIX": "greenq:deferred:slot:",
        "DEFERRED_PLAN_KEY": "greenq:deferred:plan",
        "DEFERRED_ARRIVALS_KEY_PREFIX": "greenq:deferred:arrivals:",
        "CARBON_NOW_KEY": "greenq:carbon:now",
        "UNACKED_KEY": "unacked",
        "UNACKED_OWNER_KEY": "greenq:unacked:owner",
        "INFLIGHT_KEY_PREFIX": "greenq:inflight:",
        "CONSUMERS_KEY": "greenq:consumers",
        "OWNER_KEY_PREFIX": "greenq:owner:",
        "RATE_KEY_PREFIX": "greenq:rate:",
        "OUTSTANDING_KEY_PREFIX": "greenq:outstanding:",
        "CALLBACK_DUE_KEY": "greenq:callbacks:due",
        "CALLBACK_JOB_KEY_PREFIX": "greenq:callbacks:job:",
        "CALLBACK_WAITING_KEY": "greenq:callbacks:waiting",
        "LEGACY_PENDING_KEY": "greenq:callbacks:pending",
        "LEGACY_CALLBACK_KEY_PREFIX": "greenq:callback:",
        "COMPUTATIONS_KEY": "greenq:chaos:computations",
    }
