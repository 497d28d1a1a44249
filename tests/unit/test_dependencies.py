"""Imports go one way, room by room: each room of greenq imports only the rooms below it.

shared                      stands alone (what a storefront and a worker both need)
producers                   -> shared (what a storefront runs)
workers.model, .energy      -> shared (the model and its runtime; meters and carbon)
workers.serving             -> model, energy, shared (admission, the loops, failure triage)
workers.scheduler           -> energy, shared (the carbon-aware scheduler, its own process)
workers.edge                -> serving, model, energy, shared (one worker process: Celery to result)
workers.commands            -> any of them (the `greenq` command, demo, launcher, exporter, bench)
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FOLDERS = {"shared": "greenq.shared", "producers": "greenq.producers", "workers": "greenq.workers"}

BELOW: dict[str, set[str]] = {
    "greenq.shared": set(),
    "greenq.producers": {"greenq.shared"},
    "greenq.workers.model": {"greenq.shared"},
    "greenq.workers.energy": {"greenq.shared"},
    "greenq.workers.serving": {"greenq.shared", "greenq.workers.model", "greenq.workers.energy"},
    "greenq.workers.scheduler": {"greenq.shared", "greenq.workers.energy"},
    "greenq.workers.edge": {"greenq.shared", "greenq.workers.model", "greenq.workers.energy", "greenq.workers.serving"},
    "greenq.workers.commands": {
        "greenq.shared",
        "greenq.producers",
        "greenq.workers.model",
        "greenq.workers.energy",
        "greenq.workers.serving",
        "greenq.workers.scheduler",
        "greenq.workers.edge",
    },
}
HEAVY = ("torch", "transformers", "greenq.workers")


def room_of(module: str) -> str | None:
    """The room a dotted module name lies in (the longest room that is a prefix of it), or None."""
    rooms = [room for room in BELOW if module == room or module.startswith(room + ".")]
    return max(rooms, key=len, default=None)


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([FOLDERS[parts[0]], *parts[1:]])


def imported_modules(path: Path) -> set[str]:
    """Every greenq module a file imports, wherever the import sits (functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("greenq.")}


def sources() -> list[Path]:
    return sorted(path for folder in FOLDERS for path in (REPO / folder).rglob("*.py"))


def test_every_module_lies_in_a_room() -> None:
    homeless = [
        str(p.relative_to(REPO)) for p in sources() if p != REPO / "workers/__init__.py" and not room_of(module_name(p))
    ]
    assert homeless == [], f"modules outside every room (put each in one): {homeless}"


def test_each_room_imports_only_the_rooms_below_it() -> None:
    offenders: dict[str, list[str]] = {}
    for path in sources():
        room = room_of(module_name(path))
        if room is None:
            continue
        wrong = sorted(m for m in imported_modules(path) if room_of(m) not in {room, *BELOW[room]})
        if wrong:
            offenders[str(path.relative_to(REPO))] = wrong
    assert offenders == {}, f"imports against the rooms' order: {offenders}"


@pytest.mark.parametrize(
    ("module", "room"),
    [
        ("greenq.workers.serving.admission", "greenq.workers.serving"),
        ("greenq.workers", None),
        ("greenq.shared", "greenq.shared"),
    ],
)
def test_a_module_lies_in_the_longest_room_naming_it(module: str, room: str | None) -> None:
    assert room_of(module) == room


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from greenq.workers.commands.cli import main\n    import torch.cuda\n")
    assert imported_modules(module) == {"greenq.workers.commands.cli.main"}


def test_importing_producers_loads_no_model_code() -> None:
    code = (
        "import greenq.producers, greenq.producers.client, greenq.producers.cli, greenq.producers.gateway.app; "
        "import json, sys; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == []
