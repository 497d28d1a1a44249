"""greenq installs under one import root of its own: `greenq.shared`, `greenq.producers`, `greenq.workers`.

The folders stay at the repository's top level; pyproject's `package-dir` maps them. These tests build the
wheel and install it into a fresh virtualenv beside a storefront's own module named `shared`, and check
that pyproject lists every package folder (a folder left out would be missing from the wheel alone).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"shared": "greenq.shared", "producers": "greenq.producers", "workers": "greenq.workers"}


def package_folders() -> set[str]:
    return {
        ".".join([ROOTS[init.parent.relative_to(REPO).parts[0]], *init.parent.relative_to(REPO).parts[1:]])
        for folder in ROOTS
        for init in (REPO / folder).rglob("__init__.py")
    }


def test_pyproject_lists_every_package_folder_under_the_greenq_root() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert set(setuptools["packages"]) == package_folders()
    assert setuptools["package-dir"] == {name: folder for folder, name in ROOTS.items()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)]
    proc = subprocess.run(build, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (found,) = out.glob("greenq-*.whl")
    return found


@pytest.mark.slow
def test_the_wheel_holds_greenq_alone_at_the_top_with_its_data_files(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"greenq"}
    for data in (
        "greenq/shared/schema/envelope.schema.json",
        "greenq/producers/demo_jobs.jsonl",
        "greenq/workers/model/prompts/templates/reply.txt",
        "greenq/workers/model/bundled/store-assistant/config.json",
    ):
        assert data in names, data
    assert any(name.startswith("greenq/shared/scripts/") and name.endswith(".lua") for name in names)


@pytest.mark.slow
def test_the_installed_wheel_imports_beside_a_storefronts_own_shared_module(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)]
    proc = subprocess.run(install, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # greenq's dependencies come from this test's environment, read as a plain path: its .pth files (this
    # checkout's editable install among them) are not run, so greenq itself can only come from the wheel.
    site = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    fresh_site = next((venv / "lib").glob("python*/site-packages"))
    (fresh_site / "deps.pth").write_text(f"{site}\n", encoding="utf-8")
    storefront = tmp_path / "storefront"
    storefront.mkdir()
    (storefront / "shared.py").write_text("OWNER = 'the storefront'\n", encoding="utf-8")
    code = (
        "import shared, greenq.shared.settings, greenq.producers.client as client, greenq.workers; "
        "print(shared.OWNER); print(greenq.shared.settings.__file__); print(client.Client.__name__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [str(python), "-c", code], cwd=storefront, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    owner, settings_file, client_name = proc.stdout.splitlines()
    assert owner == "the storefront"
    assert Path(settings_file).is_relative_to(fresh_site), settings_file
    assert client_name == "Client"
