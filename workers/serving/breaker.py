"""Telling a sick device from a bad job: the worker's circuit breaker trips on the first device fault.

A CUDA error such as an illegal memory access is sticky: it poisons the process's CUDA
context, and every later call on the device fails too, whatever the job. Retrying in the
same process cannot help, and bisecting the batch would fail each of its jobs alone, then
every job after them. So one fault is enough: the batcher hands back every job it holds,
the faulting batch's included, and the worker exits with `DEVICE_FAULT_EXIT_CODE` for the
launcher to start it afresh. Memory exhaustion is not a device fault: the batcher splits
such batches (`greenq.workers.serving.triage`).

>>> is_device_fault(RuntimeError("CUDA error: an illegal memory access was encountered"))
True
>>> is_device_fault(ValueError("prompt too long"))
False
"""

from __future__ import annotations

DEVICE_FAULT_EXIT_CODE = 75  # EX_TEMPFAIL: not this job's fault; the launcher restarts the worker

# torch >= 2.8 raises AcceleratorError for CUDA errors; older versions a RuntimeError with the same text.
_FAULT_TYPES = frozenset({"AcceleratorError", "CudaError"})
_FAULT_TEXTS = (
    "cuda error",
    "cuda driver error",
    "cublas_status_",
    "cudnn_status_",
    "cudnn error",
    "nccl error",
    "hip error",
    "illegal memory access",
    "device-side assert",
    "unspecified launch failure",
    "uncorrectable ecc error",
)
_MEMORY_TEXTS = ("out of memory", "alloc_failed")


def is_device_fault(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from, says the device failed (not the job, not memory)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).lower()
        if any(t in text for t in _MEMORY_TEXTS):
            return False
        if any(t.__name__ in _FAULT_TYPES for t in type(current).__mro__) or any(t in text for t in _FAULT_TEXTS):
            return True
        current = current.__cause__ or current.__context__
    return False
