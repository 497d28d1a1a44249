"""Runs (a), (b) and (c) on one workload, in that order, and gathers their figures."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from greenq.shared.queues import BENCH_NAIVE_TASK
from greenq.shared.settings import Settings
from greenq.workers.commands.bench.ceiling import measure_ceiling
from greenq.workers.commands.bench.deployment import Deployment, run_fixed_rate, run_saturation, worker_env
from greenq.workers.commands.bench.workload import BenchConfig, encode_payload, make_payloads, write_templates
from greenq.workers.model.local_model import resolve_model
from greenq.workers.model.runtime import HFRuntime, warm_up


class Progress:
    def __init__(self) -> None:
        self._start = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self._start:7.1f} s] {message}", file=sys.stderr, flush=True)


def run_bench(config: BenchConfig, settings: Settings, out_dir: Path) -> dict[str, Any]:
    progress = Progress()
    out_dir.mkdir(parents=True, exist_ok=True)
    templates = write_templates(out_dir)

    import torch

    torch.set_num_threads(config.torch_threads)
    progress(f"model {config.model}: preparing (built locally on first use)")
    model_path = resolve_model(config.model, settings.model_cache_dir)
    runtime = HFRuntime(model_path, config.device, config.dtype, label=config.model)
    warm_up(runtime)
    payloads = make_payloads(runtime, config, templates)
    prompts = [encode_payload(runtime, p, templates) for p in payloads]
    progress(
        f"{len(payloads)} jobs, prompts {min(map(len, prompts))}–{max(map(len, prompts))} tokens, "
        f"{config.new_tokens} new tokens each"
    )

    ceiling: dict[int, dict[str, Any]] = {}
    for batch_size in sorted(set(config.sweep) | {config.batch_size}):
        count = len(prompts) if batch_size == config.batch_size else max(batch_size, config.sweep_jobs)
        ceiling[batch_size] = measure_ceiling(runtime, prompts[:count], batch_size, config, settings)
        c = ceiling[batch_size]
        progress(f"(a) ceiling B={batch_size}: {c['jobs_per_s']:.2f} jobs/s, {c['joules_per_job']:.2f} J/job")

    env = worker_env(config, settings, model_path, templates)
    deploy = Deployment(settings, env, out_dir)
    try:
        deploy.start("greenq.workers.edge.process", "bench@greenq", config.device)
        run_saturation(deploy, payloads[: config.batch_size])  # warm the worker's shapes
        progress("(b) greenq worker ready; saturation run")
        greenq = run_saturation(deploy, payloads)
        progress(
            f"(b) greenq saturation: {greenq['jobs_per_s']:.2f} jobs/s, mean batch {greenq['mean_batch_size']:.1f}"
        )
        # This machine drifts: measure the ceiling again right after (b), and compare with the mean.
        after = measure_ceiling(runtime, prompts, config.batch_size, config, settings)
        progress(f"(a) ceiling B={config.batch_size} again: {after['jobs_per_s']:.2f} jobs/s")
        rate = config.rate_fraction * ceiling[config.batch_size]["jobs_per_s"]
        fixed = run_fixed_rate(deploy, payloads, rate)
        progress(
            f"(b) greenq at {rate:.2f} jobs/s offered: p50 {fixed['latency_s']['p50']:.2f} s, "
            f"p99 {fixed['latency_s']['p99']:.2f} s"
        )
        deploy.stop_worker()
        deploy.start("greenq.workers.commands.bench.naive", "naive@greenq", config.device)
        run_saturation(deploy, payloads[:2], task=BENCH_NAIVE_TASK)
        progress("(c) naive worker ready; saturation run")
        naive = run_saturation(deploy, payloads, task=BENCH_NAIVE_TASK)
        progress(f"(c) naive: {naive['jobs_per_s']:.2f} jobs/s")
    finally:
        deploy.close()

    main = ceiling[config.batch_size]
    ceiling_jobs_per_s = (main["jobs_per_s"] + after["jobs_per_s"]) / 2
    return {
        "config": asdict(config),
        "ceiling": {str(b): c for b, c in ceiling.items()},
        "ceiling_after_greenq": after,
        "greenq_saturation": greenq,
        "greenq_fixed_rate": fixed,
        "naive": naive,
        "ratios": {
            "greenq_over_ceiling": greenq["jobs_per_s"] / ceiling_jobs_per_s,
            "greenq_over_naive": greenq["jobs_per_s"] / naive["jobs_per_s"],
            "joules_per_job_B_over_B1": (main["joules_per_job"] / ceiling[1]["joules_per_job"])
            if 1 in ceiling
            else None,
        },
    }
