"""`greenq pool`: see and steer live workers through Celery remote control."""

from __future__ import annotations

import json
from typing import Any

from celery import Celery

from greenq.shared.job_types import JobType
from greenq.shared.queues import queue_name

STATUS_TIMEOUT_S = 2.0


def status_table(statuses: dict[str, dict[str, Any]]) -> str:
    if not statuses:
        return "no workers answered"
    lines = [f"{'worker':<24} {'device':<8} {'ready':<5} {'batch':>5} {'waiting':>7} {'jobs/s':>7}  queues / policy"]
    for node, s in statuses.items():
        if "error" in s:
            lines.append(f"{node:<24} error: {s['error']}")
            continue
        policy = ", ".join(_policy(t, p) for t, p in s["policy"].items())
        cap = f" (capped at {s['batch_size_cap']})" if s.get("batch_size_cap") else ""
        batching = " continuous" if s.get("runtime_mode") == "continuous" else ""  # static is the default
        queues = ",".join(q.removeprefix("greenq.") for q in s["queues"]) or "(draining)"
        lines.append(
            f"{node:<24} {s['device']:<8} {'yes' if s['ready'] else 'no':<5} {s['current_batch_size']:>5} "
            f"{s['waiting_in_batcher']:>7} {s['recent_jobs_per_s']:>7.2f}  {queues} /{batching} {policy}{cap}"
        )
        lines += _learned(s.get("adaptive", {}))
    return "\n".join(lines)


def _policy(job_type: str, policy: dict[str, Any]) -> str:
    if policy.get("mode") == "adaptive":
        return f"{job_type} adaptive ≤{policy['max_batch_size']}"
    return f"{job_type} fixed {policy['max_batch_size']}×{policy['max_wait_s'] * 1000:.0f}ms"


def _learned(adaptive: dict[str, dict[str, Any]]) -> list[str]:
    """One line per job type the worker has measured: arrivals, last target size, J and s per batch size."""
    lines = []
    for job_type, state in adaptive.items():
        costs = state.get("learned_cost_by_size") or {}
        if not costs:
            continue
        sizes = " ".join(f"B{b}:{c['seconds']:.2f}s/{c['joules'] / int(b):.2f}J/job" for b, c in costs.items())
        lines.append(
            f"{'':<24}   {job_type}: {state['arrivals_per_s']:.2f} jobs/s arriving, objective "
            f"{state['objective_s']:.0f} s, target {state['last_target_size'] or '–'}; learned {sizes}"
        )
    return lines


def _destination(node: str) -> list[str] | None:
    return None if node == "all" else [node]


def _replies(replies: list[dict[str, Any]] | None) -> str:
    return json.dumps(replies or [], indent=2) if replies else "no workers answered"


def add_queue(app: Celery, node: str, job_type: JobType) -> str:
    return _replies(app.control.add_consumer(queue_name(job_type), destination=_destination(node), reply=True))


def remove_queue(app: Celery, node: str, job_type: JobType) -> str:
    return _replies(app.control.cancel_consumer(queue_name(job_type), destination=_destination(node), reply=True))


def set_policy(app: Celery, node: str, job_type: JobType, **changes: Any) -> str:
    arguments = {"job_type": job_type, **{k: v for k, v in changes.items() if v is not None}}
    return _replies(
        app.control.broadcast(
            "greenq_set_policy",
            arguments=arguments,
            destination=_destination(node),
            reply=True,
            timeout=STATUS_TIMEOUT_S,
        )
    )


def drain(app: Celery, node: str) -> str:
    return _replies(
        app.control.broadcast("greenq_drain", destination=_destination(node), reply=True, timeout=STATUS_TIMEOUT_S)
    )
