"""The device breaker: which errors are the device's fault, and what a worker does when one trips."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from greenq.shared import job_types
from greenq.shared.policies import BatchPolicy, GenerationSettings
from greenq.workers.edge.metrics import WorkerMetrics
from greenq.workers.edge.observers import MetricsObserver, RestartOnDeviceFault
from greenq.workers.model.types import GenerationRequest
from greenq.workers.serving.batcher import Batcher, Requeue
from greenq.workers.serving.breaker import is_device_fault
from tests.fake_runtime import EchoRuntime


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
    signals: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: signals.append((pid, sig)))
    ready = threading.Event()
    ready.set()
    metrics = WorkerMetrics(CollectorRegistry())
    metrics.watch_readiness(ready.is_set)

    def sick(requests: Sequence[GenerationRequest]) -> None:
        raise AcceleratorError("CUDA error: an illegal memory access was encountered")

    batcher = Batcher(
        {"echo": EchoRuntime(fail_when=sick)},
        {t: BatchPolicy(max_wait_s=0.01) for t in job_types.names()},
        observers=[MetricsObserver(metrics), RestartOnDeviceFault(ready)],
    )
    batcher.start()
    request = GenerationRequest((1, 2, 3), 4, GenerationSettings(max_new_tokens=4))
    with pytest.raises(Requeue):
        batcher.submit("job-1", "reply", "echo", request, priority=5).result(timeout=10)
    batcher.stop(timeout_s=5)
    assert not ready.is_set()
    assert metrics.registry.get_sample_value("greenq_worker_ready") == 0
    assert metrics.registry.get_sample_value("greenq_device_faults_total") == 1
    assert signals == [(os.getpid(), signal.SIGTERM)]
