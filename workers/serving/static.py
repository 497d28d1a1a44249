"""The static loop: jobs form batches by `batching.select_batch` (closed by the fixed rule or the adaptive
plan, `greenq.workers.serving.closing`), and each batch runs to its end in one `generate` before the next starts
(`greenq.workers.serving.generate`).
"""

from __future__ import annotations

import logging
import math

from greenq.workers.serving.batching import next_wakeup, select_batch
from greenq.workers.serving.core import ServingCore
from greenq.workers.serving.generate import Closed, run_batch
from greenq.workers.serving.queue import Waiting

log = logging.getLogger(__name__)


class StaticLoop:
    def __init__(self, core: ServingCore) -> None:
        self._core = core
        self._batch: list[Waiting] = []  # the batch taken from the queue and not yet resolved

    def held(self) -> list[Waiting]:
        return [item for item in self._batch if not item.future.done()]

    def serve(self) -> None:
        """Run batches until the queue is stopping and empty."""
        core = self._core
        while (batch := self._next_batch()) is not None:
            items, closed = batch
            self._batch = items
            items = core.still_leased(items)
            if not items:
                continue
            try:
                run_batch(core, items, closed)
            except BaseException as exc:  # never leave a task thread waiting on a dead batcher
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(exc)
                log.exception("batcher error")
            self._batch = []

    def _next_batch(self) -> tuple[list[Waiting], Closed] | None:
        """Block until a batch is ready; None once stopping with nothing left."""
        core, queue = self._core, self._core.queue
        while True:
            policies = core.policies_now()
            with queue.cond:
                now = core.clock()
                alive = queue.alive(now)
                rule = core.closing.rule(policies, now, queue.expecting(now))
                # Stopping: flush what is left at once rather than waiting out the max wait.
                selection = select_batch(alive, policies, math.inf if queue.stopping else now, rule)
                if selection is not None:
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug(
                            "batch of %d closes (full: %s); %d more waiting; backlog %s",
                            len(selection.jobs),
                            selection.full,
                            len(alive) - len(selection.jobs),
                            dict(core.closing.backlog()),
                        )
                    hold_s = now - min(job.arrived_at for job in selection.jobs)
                    closed = Closed(hold_s, core.closing.predicted_joules(selection.jobs, policies))
                    return queue.take(selection.jobs), closed
                if queue.stopping:
                    return None
                wake = next_wakeup(alive, policies, rule)
                lapses_at = core.size_cap.lapses_at()
                if lapses_at is not None:
                    wake = min(wake or lapses_at, lapses_at)
                queue.wait(None if wake is None else max(0.0, wake - now))
