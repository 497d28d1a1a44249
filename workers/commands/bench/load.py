"""`greenq bench --load`: J/job and latency under open-loop Poisson load, per batch policy.

The ceiling (in-process, at the configured B) sets the load scale. Then, for each policy, a fresh
worker process with that policy for every job type runs a saturation burst (4 × B jobs at once)
and one window of Poisson arrivals per fraction of the ceiling. Both workers see the same jobs
at the same offsets. The knobs, bench-scaled latency objectives included, are in load_config.py.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from greenq.producers.client import JobSpec
from greenq.shared.policies import BatchMode
from greenq.shared.settings import Settings
from greenq.workers.commands.bench.arrivals import Arrival, burst, schedule
from greenq.workers.commands.bench.ceiling import measure_ceiling
from greenq.workers.commands.bench.deployment import Deployment, worker_env
from greenq.workers.commands.bench.load_config import LoadConfig, check_load, policy_env
from greenq.workers.commands.bench.load_stats import fraction_key, load_ratios, window_summary
from greenq.workers.commands.bench.mixed_workload import make_typed_payloads, write_templates
from greenq.workers.commands.bench.run import Progress
from greenq.workers.commands.bench.window_energy import IDLE_NOTES, read_j, window_meter
from greenq.workers.commands.bench.workload import BenchConfig, encode_job
from greenq.workers.energy.meters import EnergyMeter
from greenq.workers.model.local_model import resolve_model
from greenq.workers.model.runtime import HFRuntime, warm_up

RESULT_TIMEOUT_S = 3600.0
Pools = Mapping[str, Sequence[dict[str, Any]]]


def payload_for(pools: Pools, arrival: Arrival) -> dict[str, Any]:
    """The arrival's payload: its type's pool, cycled through."""
    pool = pools[arrival.job_type]
    return dict(pool[arrival.nth_of_type % len(pool)])


def submit_open_loop(deploy: Deployment, arrivals: Sequence[Arrival], pools: Pools) -> tuple[list[str], float]:
    """Submit each job at its scheduled offset, never waiting for results; returns ids and the worst lag."""
    ids: list[str] = []
    lag_s = 0.0
    start = time.perf_counter()
    for arrival in arrivals:
        delay_s = start + arrival.at_s - time.perf_counter()
        if delay_s > 0:
            time.sleep(delay_s)
        else:
            lag_s = max(lag_s, -delay_s)
        ids.append(deploy.client.submit(arrival.job_type, payload_for(pools, arrival)))
    return ids, lag_s


def run_window(
    deploy: Deployment,
    arrivals: Sequence[Arrival],
    pools: Pools,
    meter: EnergyMeter | None,
    load: LoadConfig,
    offered_jobs_per_s: float | None = None,
) -> dict[str, Any]:
    """One window: submit on schedule, await every result, and read the window meter around it all.

    With `offered_jobs_per_s` None the jobs are a burst, submitted at once; otherwise the window
    lasts at least as long as jobs arrive, however early the last result came.
    """
    arrivals_s = 0.0 if offered_jobs_per_s is None else load.arrivals_s(offered_jobs_per_s)
    before_j = read_j(meter) if meter is not None else 0.0
    start = time.perf_counter()
    started_at = time.time()
    if offered_jobs_per_s is None:  # all at once, through one pipelined connection
        specs = [JobSpec(a.job_type, payload_for(pools, a)) for a in arrivals]
        ids, lag_s = deploy.client.submit_many(specs), 0.0
    else:
        ids, lag_s = submit_open_loop(deploy, arrivals, pools)
    results = list(deploy.client.as_completed(ids, timeout_s=RESULT_TIMEOUT_S))
    time.sleep(max(0.0, start + arrivals_s - time.perf_counter()))  # idle to the window's end counts too
    energy_j = read_j(meter) - before_j if meter is not None else None
    return window_summary(results, started_at, arrivals_s, energy_j, load.objectives_s, offered_jobs_per_s, lag_s)


def run_policy(
    mode: BatchMode,
    deploy: Deployment,
    device: str,
    pools: Pools,
    ceiling_jobs_per_s: float,
    config: BenchConfig,
    load: LoadConfig,
    settings: Settings,
    progress: Progress,
) -> dict[str, Any]:
    """Warm a fresh worker with `mode`, then its saturation burst and one Poisson window per fraction."""
    deploy.start("greenq.workers.edge.process", f"bench-{mode}@greenq", device)
    assert deploy.worker is not None
    warm = run_window(deploy, burst(config.batch_size, load.mix, config.seed + 1), pools, None, load)
    progress(f"{mode}: worker ready and warm")
    meter = None
    try:
        meter = window_meter(warm["energy_source"], settings, deploy.worker.pid)
    except Exception as exc:  # no NVML or RAPL readable from here: active figures only
        progress(f"{mode}: no window meter for {warm['energy_source']} ({exc}); total J/job left out")
    try:
        total = load.burst_batches * config.batch_size
        saturation = run_window(deploy, burst(total, load.mix, config.seed), pools, meter, load)
        progress(
            f"{mode}: saturation burst of {total}: {saturation['achieved_jobs_per_s']:.2f} jobs/s, "
            f"{saturation['active_joules_per_job']:.3f} J/job active, {saturation['total_joules_per_job']:.3f} total"
        )
        fractions: dict[str, dict[str, Any]] = {}
        for i, fraction in enumerate(load.fractions):
            rate = fraction * ceiling_jobs_per_s
            arrivals = schedule(rate, load.arrivals_s(rate), load.mix, config.seed + 100 + i)
            window = run_window(deploy, arrivals, pools, meter, load, offered_jobs_per_s=rate)
            fractions[fraction_key(fraction)] = window
            progress(
                f"{mode} at {fraction:g} × ceiling ({rate:.2f} jobs/s offered, {len(arrivals)} jobs in "
                f"{load.arrivals_s(rate):.1f} s): "
                f"{window['achieved_jobs_per_s']:.2f} jobs/s, mean batch {window['mean_batch_size']:.1f}, "
                f"{window['active_joules_per_job']:.3f} J/job active, {window['total_joules_per_job']:.3f} total, "
                f"objectives {'met' if window['objectives_met'] else 'MISSED'}"
            )
    finally:
        if meter is not None:
            meter.close()
        deploy.stop_worker()
    return {"saturation": saturation, "fractions": fractions}


def run_load(config: BenchConfig, load: LoadConfig, settings: Settings, out_dir: Path) -> dict[str, Any]:
    progress = Progress()
    out_dir.mkdir(parents=True, exist_ok=True)
    job_types = list(check_load(load).mix)
    templates = write_templates(out_dir, job_types)

    import torch

    torch.set_num_threads(config.torch_threads)
    progress(f"model {config.model}: preparing (built locally on first use)")
    model_path = resolve_model(config.model, settings.model_cache_dir)
    runtime = HFRuntime(model_path, config.device, config.dtype, label=config.model)
    warm_up(runtime)
    pools = make_typed_payloads(runtime, config, templates, job_types, load.payloads_per_type)
    mixed = burst(config.jobs, load.mix, config.seed)
    prompts = [encode_job(runtime, a.job_type, payload_for(pools, a), templates) for a in mixed]
    ceiling = measure_ceiling(runtime, prompts, config.batch_size, config, settings)
    progress(
        f"ceiling B={config.batch_size}: {ceiling['jobs_per_s']:.2f} jobs/s, {ceiling['joules_per_job']:.3f} J/job"
    )

    base = worker_env(config, settings, model_path, templates)
    policies: dict[str, dict[str, Any]] = {}
    for mode in load.policies:
        deploy = Deployment(settings, policy_env(base, config, load, mode), out_dir)
        try:
            policies[mode] = run_policy(
                mode, deploy, config.device, pools, ceiling["jobs_per_s"], config, load, settings, progress
            )
        finally:
            deploy.close()
    sources = {p["saturation"]["energy_source"] for p in policies.values()}
    return {
        "mode": "load",
        "config": asdict(config),
        "load": asdict(load),
        "ceiling": ceiling,
        "policies": policies,
        "ratios": load_ratios(policies),
        "total_energy_note": "; ".join(IDLE_NOTES[s] for s in sorted(sources) if s in IDLE_NOTES),
    }
