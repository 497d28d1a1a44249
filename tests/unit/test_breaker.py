"""The device breaker: which errors are the device's fault, and what a worker does when one trips."""

from __future__ import annotations

import os
import signal

import pytest

from shared import job_types
from shared.policies import BatchPolicy
from workers import metrics
from workers.batcher import Batcher
from workers.breaker import is_device_fault
from workers.fake_runtime import EchoRuntime


class AcceleratorError(RuntimeError):
    """Named as torch >= 2.8 names its CUDA errors, without importing torch."""


class OutOfMemoryError(RuntimeError):
    """Named as torch names its allocator's error."""


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("CUDA error: an illegal memory access was encountered"),
        RuntimeError("CUDA error: device-side assert triggered\nCompile with `TORCH_USE_CUDA_DSA`"),
        RuntimeError("CUDA error: unspecified launch failure"),
        RuntimeError("CUDA driver error: an illegal instruction was encountered"),
        RuntimeError("CUDA error: uncorrectable ECC error encountered"),
        RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, opa, opb, m, n, k, ...)`"),
        RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"),
        RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1296, unhandled cuda error"),
        RuntimeError("HIP error: an illegal memory access was encountered"),
        AcceleratorError("the launch timed out and was terminated"),
    ],
    ids=lambda e: str(e)[:40],
)
def test_device_faults(exc: BaseException) -> None:
    assert is_device_fault(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("prompt is 2000 tokens; the limit is 1024"),
        RuntimeError("injected failure for a marked job"),
        RuntimeError("Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!"),
        KeyError("model"),
        MemoryError(),
        OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity)"),
        RuntimeError("CUDA error: out of memory"),
        RuntimeError("CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    ],
    ids=lambda e: f"{type(e).__name__}: {str(e)[:40]}",
)
def test_job_faults_and_memory_are_not_device_faults(exc: BaseException) -> None:
    assert not is_device_fault(exc)


def test_a_device_fault_behind_another_error_counts() -> None:
    try:
        try:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        except RuntimeError as cuda:
            raise ValueError("decoding the batch failed") from cuda
    except ValueError as wrapped:
        assert is_device_fault(wrapped)


def test_a_cycle_of_causes_ends() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert not is_device_fault(a)


def test_tripping_marks_the_worker_not_ready_counts_and_asks_for_a_warm_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.control import WorkerContext
    from workers.process import _on_device_fault

    signals: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: signals.append((pid, sig)))
    batcher = Batcher({"echo": EchoRuntime()}, {t: BatchPolicy() for t in job_types.names()})
    context = WorkerContext(node="cuda0@test", device="cuda:0", batcher=batcher, ready=True)
    metrics.set_ready(True)
    before = metrics.REGISTRY.get_sample_value("greenq_device_faults_total") or 0.0
    _on_device_fault(context)
    assert not context.ready and not metrics.is_ready()
    assert metrics.REGISTRY.get_sample_value("greenq_worker_ready") == 0
    assert metrics.REGISTRY.get_sample_value("greenq_device_faults_total") == before + 1
    assert signals == [(os.getpid(), signal.SIGTERM)]
