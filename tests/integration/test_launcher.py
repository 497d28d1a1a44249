"""The launcher runs real worker processes: two CPU workers, one killed and restarted."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.harness import Stack


def _children(pid: int) -> dict[str, int]:
    """node name → pid for the launcher's live children."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    nodes = {}
    for child in map(int, out):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if b"--node-name" in argv:
            nodes[argv[argv.index(b"--node-name") + 1].decode()] = child
    return nodes


def test_launcher_restarts_a_killed_worker_and_stops_cleanly(fresh: Stack, tmp_path: Path) -> None:
    host = socket.gethostname()
    nodes = [f"cpu0@{host}", f"cpu1@{host}"]
    log = tmp_path / "launcher.log"
    launcher = fresh.spawn(
        [sys.executable, "-m", "greenq.workers.commands.cli", "worker", "--devices", "cpu:0,cpu:1"], log
    )
    fresh.wait_ready(nodes, launcher, log)
    before = _children(launcher.pid)
    assert set(before) == set(nodes)

    victim = before[nodes[1]]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = _children(launcher.pid)
        if nodes[1] in now and now[nodes[1]] != victim:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"worker was not restarted:\n{log.read_text()[-2000:]}")
    assert _children(launcher.pid)[nodes[0]] == before[nodes[0]]  # the other one was left alone
    fresh.wait_ready(nodes, launcher, log)
    job_id = fresh.client.submit("reply", {"customer_message": "hello?"})
    assert fresh.client.result(job_id, timeout_s=60).status.value == "succeeded"

    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=90) == 0
    assert _children(launcher.pid) == {}
