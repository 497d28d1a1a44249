"""Imports go one way: shared/ stands alone, producers/ on shared/ only, workers/ on either."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "workers")


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every package a module imports, wherever the import sits (functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(("package", "forbidden"), [("producers", {"workers"}), ("shared", {"producers", "workers"})])
def test_a_package_does_not_import_the_ones_above_it(package: str, forbidden: set[str]) -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_packages(path) & forbidden)
        for path in sorted((REPO / package).rglob("*.py"))
        if imported_packages(path) & forbidden
    }
    assert offenders == {}, f"{package}/ must not import {sorted(forbidden)}: {offenders}"


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from workers.cli import main\n    import torch.cuda\n")
    assert imported_packages(module) == {"workers", "torch"}


def test_importing_producers_loads_no_model_code() -> None:
    code = (
        "import producers, producers.client, producers.cli, producers.gateway.app; import json, sys; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == []


# The three commands that play both sides (they submit jobs like a storefront and start workers).
BOTH_SIDES = {"workers/cli.py", "workers/demo.py", "workers/bench"}


def test_the_worker_core_does_not_import_producers() -> None:
    def both_sides(path: Path) -> bool:
        relative = path.relative_to(REPO).as_posix()
        return any(relative == allowed or relative.startswith(allowed + "/") for allowed in BOTH_SIDES)

    offenders = sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "workers").rglob("*.py")
        if "producers" in imported_packages(path) and not both_sides(path)
    )
    assert offenders == [], f"only {sorted(BOTH_SIDES)} may import producers/: {offenders}"
