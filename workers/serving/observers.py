"""What watches the batch thread: one Protocol with a method per moment, and their one dispatcher.

The moments are named for when they fire, as dramatiq's middleware hooks are. `Observers` is the one
dispatcher: it calls every observer for each moment, on the batch thread, in the order given. An
observer that raises is logged (its class and the moment), counted (`on_error`, the worker's
`greenq_observer_errors_total`), and the others and the batch go on: an observer cannot fail a
batch. That holds for the worker's `AttemptObserver` (workers/edge/observers.py) too:
`AttemptCounter.record` already retries Redis and then lets the batch go on unrecorded, so an
attempt is a best effort, not a precondition of the batch. Keep observers quick. Subclass
`BaseObserver` and override only the moments you need:

>>> class Count(BaseObserver):
...     def after_batch_succeeded(self, model, job_ids): print(model, len(job_ids))
>>> batcher = Batcher(runtimes, settings.batch, observers=[Count()])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchCost:
    """What one successful batch cost, and what the adaptive policy had predicted for it."""

    job_type: str  # of its most urgent job: the cost model it teaches
    size: int
    hold_s: float  # its first job's arrival in the batcher to the batch's start
    seconds: float
    joules: float | None  # None without an energy meter
    predicted_joules: float | None  # None when the batch was not planned by the adaptive policy


class BatchObserver(Protocol):
    def before_batch(self, model: str, job_ids: Sequence[str]) -> None:
        """A batch is about to run on `model`."""

    def on_text(self, model: str, texts: Mapping[str, str]) -> None:
        """A decoding step added text to these jobs (job id → the new text); many times per batch, so be quick."""

    def after_batch(self, model: str, job_ids: Sequence[str]) -> None:
        """The batch's model call returned or raised; not after a device fault, which ends the worker as a crash."""

    def after_batch_succeeded(self, model: str, job_ids: Sequence[str]) -> None:
        """Every job of the batch got its output (and its energy share), just before their futures resolve."""

    def after_batch_costed(self, cost: BatchCost) -> None:
        """A batch succeeded and its cost is known (the adaptive policy has learned from it)."""

    def on_oom(self, size_cap: int) -> None:
        """A batch ran out of memory: max batch size lowered to `size_cap` for a while; the batch is split."""

    def on_device_fault(self, exc: BaseException) -> None:
        """The device failed (`breaker.py`): the batcher runs nothing more and hands every job back."""


class Observers:
    """Every observer, for each moment; one that raises is logged and counted, and the rest still run.

    >>> observers = Observers([MetricsObserver(metrics)], on_error=lambda observer, moment: ...)
    >>> observers.before_batch("m", ["job-1"])
    """

    def __init__(self, observers: Sequence[BatchObserver], on_error: Callable[[str, str], None] | None = None):
        self._observers = tuple(observers)
        self._on_error = on_error

    def _each(self, moment: str, call: Callable[[BatchObserver], None]) -> None:
        for observer in self._observers:
            try:
                call(observer)
            except Exception:
                name = type(observer).__name__
                log.exception("observer %s raised in %s; the batch goes on", name, moment)
                self._count(name, moment)

    def _count(self, name: str, moment: str) -> None:
        if self._on_error is None:
            return
        try:
            self._on_error(name, moment)
        except Exception:  # counting the error is not the batch's work either
            log.exception("counting observer %s's error in %s failed", name, moment)

    def before_batch(self, model: str, job_ids: Sequence[str]) -> None:
        self._each("before_batch", lambda o: o.before_batch(model, job_ids))

    def on_text(self, model: str, texts: Mapping[str, str]) -> None:
        self._each("on_text", lambda o: o.on_text(model, texts))

    def after_batch(self, model: str, job_ids: Sequence[str]) -> None:
        self._each("after_batch", lambda o: o.after_batch(model, job_ids))

    def after_batch_succeeded(self, model: str, job_ids: Sequence[str]) -> None:
        self._each("after_batch_succeeded", lambda o: o.after_batch_succeeded(model, job_ids))

    def after_batch_costed(self, cost: BatchCost) -> None:
        self._each("after_batch_costed", lambda o: o.after_batch_costed(cost))

    def on_oom(self, size_cap: int) -> None:
        self._each("on_oom", lambda o: o.on_oom(size_cap))

    def on_device_fault(self, exc: BaseException) -> None:
        self._each("on_device_fault", lambda o: o.on_device_fault(exc))


class BaseObserver:
    """Every moment of `BatchObserver`, doing nothing."""

    def before_batch(self, model: str, job_ids: Sequence[str]) -> None:
        pass

    def on_text(self, model: str, texts: Mapping[str, str]) -> None:
        pass

    def after_batch(self, model: str, job_ids: Sequence[str]) -> None:
        pass

    def after_batch_succeeded(self, model: str, job_ids: Sequence[str]) -> None:
        pass

    def after_batch_costed(self, cost: BatchCost) -> None:
        pass

    def on_oom(self, size_cap: int) -> None:
        pass

    def on_device_fault(self, exc: BaseException) -> None:
        pass
