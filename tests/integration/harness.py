"""Real parts for integration tests: a private redis-server, worker subprocesses, a client."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from greenq.producers.client import Client, JobSpec
from greenq.shared import job_types
from greenq.shared.job_types import JobType
from greenq.shared.queues import queue_name, redis_priority_lists
from greenq.shared.redis_client import redis_client
from greenq.shared.results import JobResult
from greenq.shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 120.0
_db_numbers = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """One isolated greenq deployment: a fresh Redis database, its env, its workers and client."""

    def __init__(
        self, redis_port: int, model_dir: Path, extra_env: Mapping[str, str] | None = None, url: str | None = None
    ) -> None:
        self.url = url or f"redis://127.0.0.1:{redis_port}/{next(_db_numbers)}"
        self.env = {
            "GREENQ_BROKER_URL": self.url,
            "GREENQ_MODEL": str(model_dir),
            "GREENQ_LOG_LEVEL": "INFO",
            "GREENQ_TORCH_THREADS": "1",
            "GREENQ_METRICS_PORT": "0",
            "GREENQ_ENERGY_METER": "estimate",
            **{f"GREENQ_GENERATION__{t.upper()}__MAX_NEW_TOKENS": "8" for t in job_types.names()},
            **{f"GREENQ_GENERATION__{t.upper()}__MIN_NEW_TOKENS": "4" for t in job_types.names()},
            # The default adaptive policy holds batches within these: short, so tests never wait minutes.
            **{f"GREENQ_LATENCY_OBJECTIVE_S__{t.upper()}": "3" for t in job_types.names()},
            **(extra_env or {}),
        }
        self.settings = self._settings()
        self.client = Client(self.settings)
        self.redis = redis_client(
            self.settings.backend_url, self.settings.tls_ca_file, sentinel_master=self.settings.sentinel_master
        )
        self.processes: list[subprocess.Popen[bytes]] = []
        self.metrics_port = 0

    def _settings(self) -> Settings:
        saved = dict(os.environ)
        try:
            os.environ.update(self.env)
            return Settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def queued(self, job_type: JobType) -> int:
        return sum(int(self.redis.llen(name)) for name in redis_priority_lists(queue_name(job_type)))

    def spawn(self, argv: list[str], log_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.env, **(env or {}), "PYTHONUNBUFFERED": "1"}
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(process)
        return process

    def start_worker(
        self,
        log_path: Path,
        node: str = "cpu@test",
        queues: str = "",
        metrics_port: int = 0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "greenq.workers.edge.process",
            "--node-name",
            node,
            "--queues",
            queues,
            "--metrics-port",
            str(metrics_port),
        ]
        process = self.spawn(argv, log_path, env)
        self.wait_ready([node], process, log_path)
        return process

    def wait_ready(self, nodes: list[str], process: subprocess.Popen[bytes], log_path: Path) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"process exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            replies = self.client.app.control.ping(destination=nodes, timeout=0.5)
            if {name for reply in replies for name in reply} >= set(nodes):
                return
        raise RuntimeError(f"{nodes} not ready:\n{log_path.read_text()[-3000:]}")

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """kill -9 a worker (and anything it started)."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def unacked(self) -> int:
        """Messages reserved by workers and not yet acknowledged (kombu's `unacked` hash)."""
        return int(self.redis.hlen("unacked"))

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`greenq ARGS` against this stack, as a user would run it."""
        return subprocess.run(
            [sys.executable, "-m", "greenq.producers.cli", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=60,
        )

    def results(self, ids: list[str], timeout_s: float = 120) -> dict[str, JobResult]:
        """Every job's final result by id; fails unless each of them has exactly one."""
        found = {r.job_id: r for r in self.client.as_completed(ids, timeout_s=timeout_s)}
        assert set(found) == set(ids)
        return found

    def metrics_text(self, port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.client.close()
        self.redis.close()


@contextmanager
def stack(
    redis_port: int, model_dir: Path, extra_env: Mapping[str, str] | None = None, url: str | None = None
) -> Iterator[Stack]:
    s = Stack(redis_port, model_dir, extra_env, url)
    try:
        yield s
    finally:
        s.stop()


def replies(n: int, tag: str) -> list[JobSpec]:
    """`n` distinct reply jobs."""
    return [JobSpec("reply", {"customer_message": f"{tag} question {i}"}) for i in range(n)]
