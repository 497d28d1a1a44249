"""One `generate` call over a batch, split until the bad job stands alone (`greenq.workers.serving.triage`).

The static loop runs every batch this way; the continuous loop hands it the rows of a forward that
failed for a reason of its own (not the device, not memory). A device fault trips the breaker: its
attempts stay open, as a crash would leave them, so a job that breaks devices runs alone next time and
is given up on in the end. Each job's per-message late ack is untouched: only its future resolves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from greenq.workers.energy.accountant import EnergyShare
from greenq.workers.model.types import TextHook
from greenq.workers.serving.core import ServingCore, hand_back
from greenq.workers.serving.observers import BatchCost
from greenq.workers.serving.outcomes import BatchOutcome
from greenq.workers.serving.queue import Waiting
from greenq.workers.serving.triage import triage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Closed:
    """A batch as it closed: how long it was held, and the energy predicted for it (None: not planned)."""

    hold_s: float
    predicted_joules: float | None


def run_batch(core: ServingCore, items: list[Waiting], closed: Closed | None = None) -> None:
    """Run the batch; on an exception, split it so only jobs that fail on their own fail.

    `closed` is the batch as it closed; halves after a failure have none."""
    if core.device_fault is not None:  # tripped while running the other half of this batch
        hand_back(items)
        return
    started = core.clock()
    core.current_batch_size = len(items)
    reading = core.metering.start()
    model = items[0].model
    job_ids = [item.job_id for item in items]
    first_text_at: dict[str, float] = {}
    core.observers.before_batch(model, job_ids)
    try:
        generations = core.runtimes[model].generate(
            [item.request for item in items], on_text=_text_hook(core, model, job_ids, first_text_at)
        )
        if len(generations) != len(items):
            raise RuntimeError(f"runtime returned {len(generations)} outputs for {len(items)} inputs")
    except Exception as exc:
        core.metering.abandon(reading)
        decision = triage(exc, len(items))
        if decision.action == "trip":
            core.trip(exc, items)
            return
        core.observers.after_batch(model, job_ids)
        if decision.action == "fail":
            log.warning("job failed on its own: %s", exc)
            items[0].future.set_exception(exc)
            return
        if decision.out_of_memory:
            core.lower_cap(len(items))
        log.warning("batch of %d failed (%s); retrying in halves", len(items), exc)
        half = len(items) // 2
        run_batch(core, items[:half])
        run_batch(core, items[half:])
        return
    finally:
        core.current_batch_size = 0
    core.observers.after_batch(model, job_ids)
    finished = core.clock()
    tokens = [len(item.request.prompt_ids) + g.generated_tokens for item, g in zip(items, generations, strict=True)]
    shares: Sequence[EnergyShare | None] = core.metering.finish(reading, tokens) or [None] * len(items)
    _learn(core, items, closed, finished - started, shares)
    core.observers.after_batch_succeeded(model, job_ids)
    for item, generation, share in zip(items, generations, shares, strict=True):
        outcome = BatchOutcome(generation, len(items), started, finished, share, first_text_at.get(item.job_id))
        item.future.set_result(outcome)


def _text_hook(core: ServingCore, model: str, job_ids: list[str], first_text_at: dict[str, float]) -> TextHook:
    """The runtime's per-step hook: each row's new text, by job id, to the observers; notes first text times."""

    def on_text(texts: list[str]) -> None:
        now = core.clock()
        new = {job_id: text for job_id, text in zip(job_ids, texts, strict=True) if text}
        for job_id in new:
            first_text_at.setdefault(job_id, now)
        core.observers.on_text(model, new)

    return on_text


def _learn(
    core: ServingCore, items: list[Waiting], closed: Closed | None, seconds: float, shares: Sequence[EnergyShare | None]
) -> None:
    """Teach the batch's cost to the model of its most urgent job's type, and tell the observers."""
    joules = None if any(s is None for s in shares) else sum(s.energy_j for s in shares if s is not None)
    job_type = items[0].job.job_type
    # Without an energy meter, time stands in for energy (a device at steady power).
    learned = joules if joules is not None else (None if core.metering.metered else seconds)
    if learned is not None:
        core.closing.learn(job_type, len(items), seconds, learned)
    cost = BatchCost(
        job_type=job_type,
        size=len(items),
        hold_s=closed.hold_s if closed else 0.0,
        seconds=seconds,
        joules=joules,
        predicted_joules=closed.predicted_joules if closed else None,
    )
    core.observers.after_batch_costed(cost)
