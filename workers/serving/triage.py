"""What a failed model call means, decided in one place for both loops.

A device fault (`greenq.workers.serving.breaker`) trips the breaker: every job goes back to the queue and
the worker restarts. Otherwise the call's jobs are split until the one that fails stands alone, so
one bad job never fails the jobs that would have succeeded without it; out of memory also lowers
the size cap (`greenq.workers.serving.size_cap`) before the split.

>>> triage(RuntimeError("CUDA error: an illegal memory access was encountered"), rows=8).action
'trip'
>>> triage(ValueError("bad"), rows=1).action
'fail'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from greenq.workers.serving.breaker import is_device_fault


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA or otherwise) or Python's MemoryError, without importing torch."""
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


@dataclass(frozen=True)
class Triage:
    action: Literal["trip", "fail", "split"]  # trip the breaker; fail the job alone; split the jobs
    out_of_memory: bool = False  # lower the size cap first


def triage(exc: BaseException, rows: int) -> Triage:
    """What to do after a model call over `rows` jobs raised `exc`."""
    if is_device_fault(exc):
        return Triage("trip")
    return Triage("fail" if rows == 1 else "split", is_out_of_memory(exc))
