"""(a) The ceiling: pre-formed batches straight into the worker's runtime, in this process."""

from __future__ import annotations

import time
from typing import Any

from greenq.shared.settings import Settings
from greenq.workers.commands.bench.workload import BenchConfig
from greenq.workers.energy.carbon import co2e_grams
from greenq.workers.energy.meters.detect import detect_meter
from greenq.workers.model.runtime import HFRuntime
from greenq.workers.model.types import GenerationRequest


def measure_ceiling(
    runtime: HFRuntime, prompts: list[tuple[int, ...]], batch_size: int, config: BenchConfig, settings: Settings
) -> dict[str, Any]:
    """The limit for this model on this machine at `batch_size`."""
    gen = settings.generation["reply"].model_copy(
        update={"max_new_tokens": config.new_tokens, "min_new_tokens": config.new_tokens}
    )
    requests = [GenerationRequest(p, config.new_tokens, gen) for p in prompts]
    runtime.generate(requests[:batch_size])  # warm this shape
    on_gpu = config.device.startswith("cuda")
    meter = detect_meter(settings.energy_meter, on_gpu, settings.rapl_root, settings.cpu_watts_per_core)
    if on_gpu:
        import torch

        torch.cuda.synchronize()
    before = sum(meter.read().values())
    start = time.perf_counter()
    tokens = 0
    for i in range(0, len(requests), batch_size):
        tokens += sum(g.generated_tokens for g in runtime.generate(requests[i : i + batch_size]))
    wall_s = time.perf_counter() - start
    energy_j = sum(meter.read().values()) - before
    return {
        "batch_size": batch_size,
        "jobs": len(requests),
        "wall_s": wall_s,
        "jobs_per_s": len(requests) / wall_s,
        "tokens_per_s": tokens / wall_s,
        "joules_per_job": energy_j / len(requests),
        "co2e_grams_per_job": co2e_grams(energy_j / len(requests), settings.carbon_intensity_g_per_kwh, settings.pue),
        "energy_source": meter.source,
    }
