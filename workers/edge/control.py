"""Remote control of a running worker, through Celery's own control channel.

Registered as Celery control and inspect commands, so `celery inspect` / `celery control`
and Flower reach them as well as `greenq pool`:

* `greenq_status` — device, queues, batch policy, readiness, current batch, recent jobs/s, and
  what the adaptive policy observed and learned (arrival rate, cost per batch size);
* `greenq_set_policy` — change one job type's batch policy at runtime (a continuous worker refuses
  `mode=adaptive`: nothing is held open there);
* `greenq_drain` — stop consuming every queue; jobs already held still finish.

Queues are added and removed with Celery's built-in `add_consumer` / `cancel_consumer`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from celery.worker.control import control_command, inspect_command
from pydantic import ValidationError

from greenq.shared import job_types
from greenq.shared.errors import field_errors
from greenq.shared.policies import BatchPolicy
from greenq.workers.edge.metrics import WorkerMetrics
from greenq.workers.serving.batcher import Batcher, PolicyRefused

RATE_WINDOW_S = 60.0


@dataclass
class WorkerContext:
    """What control commands may read or change in this process (one worker per process)."""

    node: str
    device: str
    batcher: Batcher
    ready: threading.Event  # the worker's one readiness flag, also behind its gauge and /ready
    metrics: WorkerMetrics
    _finished: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def job_finished(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._finished.append(now)
            while self._finished and now - self._finished[0] > RATE_WINDOW_S:
                self._finished.popleft()

    def recent_jobs_per_s(self) -> float:
        now = time.monotonic()
        with self._lock:
            return sum(1 for t in self._finished if now - t <= RATE_WINDOW_S) / RATE_WINDOW_S


_context: WorkerContext | None = None


def install(context: WorkerContext) -> None:
    global _context
    _context = context


def _require() -> WorkerContext:
    if _context is None:
        raise RuntimeError("this worker has no greenq context")
    return _context


@inspect_command()  # type: ignore[untyped-decorator]
def greenq_status(state: Any) -> dict[str, Any]:
    """greenq worker status: device, queues, batch policy, readiness, current batch, recent jobs/s."""
    ctx = _require()
    consumer = state.consumer.task_consumer
    queues = sorted(q.name for q in consumer.queues) if consumer else []
    return {
        "device": ctx.device,
        "queues": queues,
        "ready": ctx.ready.is_set(),
        "runtime_mode": ctx.batcher.mode,  # what auto chose, where it was asked
        "current_batch_size": ctx.batcher.current_batch_size,
        "waiting_in_batcher": ctx.batcher.pending_count(),
        "batch_size_cap": ctx.batcher.size_cap(),
        "recent_jobs_per_s": round(ctx.recent_jobs_per_s(), 3),
        "policy": {t: p.model_dump() for t, p in ctx.batcher.policies().items()},
        "adaptive": ctx.batcher.adaptive_state(),
    }


@control_command(  # type: ignore[untyped-decorator]
    args=[
        ("job_type", str),
        ("max_batch_size", int),
        ("max_wait_s", float),
        ("max_batch_tokens", int),
        ("mode", str),
        ("max_hold_s", float),
    ],
    signature="<job_type> [max_batch_size] [max_wait_s] [max_batch_tokens] [mode] [max_hold_s]",
)
def greenq_set_policy(
    state: Any,
    job_type: str,
    max_batch_size: int | None = None,
    max_wait_s: float | None = None,
    max_batch_tokens: int | None = None,
    mode: str | None = None,
    max_hold_s: float | None = None,
) -> dict[str, Any]:
    """Change one job type's batch policy on this worker (a bad value is refused, naming the field)."""
    ctx = _require()
    kind = job_types.get(job_type).name
    changes = {
        k: v
        for k, v in {
            "mode": mode,
            "max_batch_size": max_batch_size,
            "max_wait_s": max_wait_s,
            "max_hold_s": max_hold_s,
            "max_batch_tokens": max_batch_tokens,
        }.items()
        if v is not None
    }
    try:
        policy = BatchPolicy.model_validate({**ctx.batcher.policies()[kind].model_dump(), **changes})
    except ValidationError as exc:
        problems = "; ".join(f"{name}: {problem}" for name, problem in field_errors(exc))
        return {"error": f"{kind} policy not changed: {problems}"}
    try:
        ctx.batcher.set_policy(kind, policy)
    except PolicyRefused as exc:
        return {"error": f"{kind} policy not changed: {exc}"}
    ctx.metrics.record_policies(ctx.batcher.policies())
    return {"ok": f"{kind} policy now {policy.model_dump()}"}


@control_command()  # type: ignore[untyped-decorator]
def greenq_drain(state: Any) -> dict[str, Any]:
    """Stop consuming every queue; the jobs this worker already holds still finish."""
    ctx = _require()
    consumer = state.consumer
    names = [q.name for q in consumer.task_consumer.queues] if consumer.task_consumer else []
    for name in names:
        consumer.call_soon(consumer.cancel_task_queue, name)
    ctx.ready.clear()
    return {"ok": f"draining: stopped consuming {', '.join(names) or 'nothing'}"}
