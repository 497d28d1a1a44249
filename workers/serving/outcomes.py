"""What a job waiting in the batcher ends with: its `BatchOutcome`, or one of the named errors.

A task thread blocks on the job's future; every loop resolves it with one of these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass

from greenq.shared.errors import GreenqError
from greenq.workers.energy.accountant import EnergyShare
from greenq.workers.model.types import Generation


class JobExpiredInBatcher(GreenqError):
    """The job's deadline passed before a batch took it."""


class Requeue(GreenqError):
    """The worker is shutting down before this job's batch started, or its device failed: give the job back."""


class LeaseLost(GreenqError):
    """The job's lease was lost before its batch started (this worker was paused, or cut off from Redis, for
    longer than the lease): another worker may be computing it, so it is not computed here."""


LeaseCheck = Callable[[Sequence[str]], Set[str]]  # of these job ids, those whose lease this worker lost


@dataclass(frozen=True)
class BatchOutcome:
    generation: Generation
    batch_size: int  # static: the batch's size; continuous: the most rows the job decoded with
    started_at: float
    finished_at: float
    energy: EnergyShare | None = None
    first_text_at: float | None = None  # when its first text was decoded (None: it generated none)
