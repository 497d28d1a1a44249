"""`greenq worker`: one Celery worker process per device, supervised.

Each child gets `CUDA_VISIBLE_DEVICES` in its environment before Python starts (so torch
sees exactly its GPU, as cuda:0), a node name naming its device (`cuda0@host`), and its
queues. A child that dies is restarted with backoff; SIGTERM or SIGINT stops all children
with a warm shutdown (each finishes the jobs it holds) and escalates to SIGKILL after the grace.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from greenq.shared.job_types import JobType
from greenq.workers.commands.devices import Device
from greenq.workers.serving.breaker import DEVICE_FAULT_EXIT_CODE

log = logging.getLogger(__name__)
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER_S = 60.0


@dataclass(frozen=True)
class ChildSpec:
    device: Device
    node_name: str
    queues: tuple[JobType, ...]
    env: Mapping[str, str]
    argv: tuple[str, ...]


def plan_children(
    devices: Sequence[Device],
    queues: Sequence[JobType],
    host: str,
    model: str | None = None,
    cpu_count: int | None = None,
    python: str = sys.executable,
    metrics_base_port: int = 0,
) -> list[ChildSpec]:
    """The process each device gets: environment overrides and command line."""
    cpus = [d for d in devices if d.kind == "cpu"]
    threads_per_cpu_worker = max(1, (cpu_count or os.cpu_count() or 1) // max(1, len(cpus)))
    queue_arg = ",".join(queues)
    specs = []
    for device in devices:
        node_name = f"{device.node_prefix}@{host}"
        if device.kind == "cuda":
            env = {"CUDA_VISIBLE_DEVICES": str(device.index)}
            torch_device = "cuda:0"  # the only GPU this child can see
        else:
            env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads_per_cpu_worker)}
            torch_device = "cpu"
        argv = [
            python,
            "-m",
            "greenq.workers.edge.process",
            "--device",
            device.label,
            "--torch-device",
            torch_device,
            "--node-name",
            node_name,
            "--queues",
            queue_arg,
        ]
        if model:
            argv += ["--model", model]
        if metrics_base_port:
            argv += ["--metrics-port", str(metrics_base_port + (device.index or 0))]
        specs.append(ChildSpec(device, node_name, tuple(queues), env, tuple(argv)))
    return specs


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    restart_at: float | None = None
    quick_crashes: int = 0
    device_faults: int = 0  # exits after a device fault, passed on so the worker's counter survives restarts


class Supervisor:
    """Start, watch and stop the children of one launcher."""

    def __init__(self, specs: Sequence[ChildSpec], grace_s: float = 900.0, poll_s: float = 0.5) -> None:
        self._children = [_Child(spec) for spec in specs]
        self._grace_s = grace_s
        self._poll_s = poll_s
        self._stopping = False

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for child in self._children:
            self._start(child)
        while not self._stopping:
            self._watch()
            time.sleep(self._poll_s)
        return self._stop_all()

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("launcher got %s: stopping workers", signal.Signals(signum).name)
        self._stopping = True

    def _start(self, child: _Child) -> None:
        env = {**os.environ, **child.spec.env}
        argv = list(child.spec.argv)
        if child.device_faults:
            argv += ["--device-faults", str(child.device_faults)]
        child.process = subprocess.Popen(argv, env=env)
        child.started_at = time.monotonic()
        child.restart_at = None
        log.info("started %s (pid %d, restarts so far: %d)", child.spec.node_name, child.process.pid, child.restarts)

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self._children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    self._start(child)
                continue
            assert child.process is not None
            code = child.process.poll()
            if code is None:
                continue
            child.quick_crashes = child.quick_crashes + 1 if now - child.started_at < STABLE_AFTER_S else 0
            delay = RESTART_BACKOFF_S[min(child.quick_crashes, len(RESTART_BACKOFF_S) - 1)]
            reason = ""
            if code == DEVICE_FAULT_EXIT_CODE:
                child.device_faults += 1
                reason = " (device fault)"
            log.warning("%s exited with %s%s; restarting in %.0f s", child.spec.node_name, code, reason, delay)
            child.restart_at = now + delay

    def _stop_all(self) -> int:
        running = [c.process for c in self._children if c.process is not None and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._grace_s
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("pid %d did not stop within %.0f s; killing it", process.pid, self._grace_s)
                process.kill()
                process.wait()
        return 0
