"""`greenq bench`: the same workload three ways, side by side in one run.

(a) ceiling — the worker's own runtime called in-process on pre-formed batches;
(b) greenq — producer → Redis → a real worker process, at saturation and at a fixed rate;
(c) naive — one Celery task per job, no batching, the same warm model.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from producers.client import Client, JobSpec
from producers.summary import percentile
from shared.jobs import parse_job
from shared.local_redis import LocalRedis, start_redis
from shared.results import JobResult, JobStatus
from shared.settings import Settings
from workers.carbon import co2e_grams
from workers.local_model import resolve_model
from workers.meters.detect import detect_meter
from workers.prompts import build_messages
from workers.runtime import GenerationRequest, HFRuntime, warm_up

BENCH_TEMPLATE = "[system]\n\n[user]\n$message\n"
WORDS = (
    "order parcel refund size colour cotton bottle delivery tracking return week invoice shoes scarf "
    "discount warehouse courier package address payment receipt exchange replacement damaged"
).split()
READY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class BenchConfig:
    model: str = "local:gpt2-small"
    jobs: int = 64
    batch_size: int = 16
    max_wait_s: float = 0.05
    new_tokens: int = 32
    min_prompt_tokens: int = 24
    max_prompt_tokens: int = 40
    sweep: tuple[int, ...] = (1, 2, 4, 8, 16)
    sweep_jobs: int = 32
    rate_fraction: float = 0.5
    dtype: str = "float32"
    device: str = "cpu"  # or "cuda:0": the ceiling and both workers run there
    torch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    seed: int = 0


QUICK = {"model": "local:tiny", "jobs": 16, "batch_size": 4, "new_tokens": 8, "sweep": (1, 4), "sweep_jobs": 8}


def quick(config: BenchConfig) -> BenchConfig:
    return replace(config, **QUICK)  # type: ignore[arg-type]


class Progress:
    def __init__(self) -> None:
        self._start = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self._start:7.1f} s] {message}", file=sys.stderr, flush=True)


def make_payloads(runtime: HFRuntime, config: BenchConfig, templates: Path) -> list[dict[str, Any]]:
    """Reply jobs whose rendered prompts are min..max prompt tokens long (seeded)."""
    rng = random.Random(config.seed)
    payloads = []
    for _ in range(config.jobs):
        target = rng.randint(config.min_prompt_tokens, config.max_prompt_tokens)
        words: list[str] = []
        length = 0
        for _ in range(1000):  # add words until the target; a word that overshoots the max is swapped
            if length >= target:
                break
            words.append(rng.choice(WORDS))
            length = len(encode_payload(runtime, {"customer_message": " ".join(words)}, templates))
            if length > config.max_prompt_tokens:
                words.pop()
                length = len(encode_payload(runtime, {"customer_message": " ".join(words)}, templates))
        payloads.append({"customer_message": " ".join(words)})
    return payloads


def encode_payload(runtime: HFRuntime, payload: dict[str, Any], templates: Path) -> tuple[int, ...]:
    job = parse_job("reply", payload)
    return tuple(runtime.encode(runtime.render(build_messages("reply", job, templates))))


def measure_ceiling(
    runtime: HFRuntime, prompts: list[tuple[int, ...]], batch_size: int, config: BenchConfig, settings: Settings
) -> dict[str, Any]:
    """Pre-formed batches straight into the runtime: the limit for this model on this machine."""
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


def describe(results: list[JobResult], wall_s: float, settings: Settings) -> dict[str, Any]:
    ok = [r for r in results if r.status is JobStatus.succeeded]
    e2e = [r.timings.end_to_end_s for r in ok]
    queue = [r.timings.queue_s for r in ok]
    energies = [r.energy_j for r in ok if r.energy_j is not None]
    joules = sum(energies) / len(energies) if energies else float("nan")
    return {
        "jobs": len(results),
        "succeeded": len(ok),
        "wall_s": wall_s,
        "jobs_per_s": len(ok) / wall_s,
        "tokens_per_s": sum(r.generated_tokens for r in ok) / wall_s,
        "latency_s": {f"p{q}": percentile(e2e, q) for q in (50, 95, 99)},
        "queue_s": {f"p{q}": percentile(queue, q) for q in (50, 95, 99)},
        "mean_batch_size": sum(r.batch_size for r in ok) / max(1, len(ok)),
        "joules_per_job": joules,
        "co2e_grams_per_job": joules * settings.carbon_intensity_g_per_kwh / 3.6e6 * settings.pue,
        "energy_source": ok[0].energy_source if ok else None,
        "latencies_s": e2e,
    }


class Deployment:
    """A private Redis and one worker process (greenq's or the naive one) for the bench."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.redis: LocalRedis = start_redis(_free_port())
        self.env = {**env, "GREENQ_BROKER_URL": self.redis.url}
        self.log_dir = log_dir
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            self.settings = Settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.client = Client(self.settings)
        self.worker: subprocess.Popen[bytes] | None = None

    def start(self, module: str, node: str, device: str) -> None:
        log = (self.log_dir / f"{node.split('@')[0]}.log").open("wb")
        torch_device = "cuda:0" if device.startswith("cuda") else "cpu"
        self.worker = subprocess.Popen(
            [sys.executable, "-m", module, "--node-name", node, "--device", device, "--torch-device", torch_device],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.worker.poll() is not None:
                raise RuntimeError(f"{module} exited; see {log.name}")
            if self.client.app.control.ping(destination=[node], timeout=0.5):
                return
        raise RuntimeError(f"{module} did not become ready")

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            self.worker.wait(timeout=120)

    def close(self) -> None:
        self.stop_worker()
        self.client.close()
        self.redis.stop()


def run_saturation(deploy: Deployment, payloads: list[dict[str, Any]], task: str | None = None) -> dict[str, Any]:
    client = deploy.client
    start = time.perf_counter()
    if task is None:
        ids = client.submit_many(JobSpec("reply", p) for p in payloads)
    else:
        ids = [
            client.app.send_task(
                task,
                args=[
                    client.prepare(JobSpec("reply", p))
                    .model_copy(update={"job_id": f"naive-{i}-{time.time_ns()}"})
                    .encode()
                ],
                queue="greenq.naive",
            ).id
            for i, p in enumerate(payloads)
        ]
    results = list(client.as_completed(ids, timeout_s=3600, progress=sys.stderr.isatty()))
    return describe(results, time.perf_counter() - start, deploy.settings)


def run_fixed_rate(deploy: Deployment, payloads: list[dict[str, Any]], rate_per_s: float) -> dict[str, Any]:
    client = deploy.client
    ids: list[str] = []
    start = time.perf_counter()

    def submit() -> None:
        for i, payload in enumerate(payloads):
            delay = start + i / rate_per_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            ids.append(client.submit("reply", payload))

    submitter = threading.Thread(target=submit)
    submitter.start()
    submitter.join()
    results = list(client.as_completed(ids, timeout_s=3600))
    summary = describe(results, time.perf_counter() - start, deploy.settings)
    summary["offered_jobs_per_s"] = rate_per_s
    return summary


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_bench(config: BenchConfig, settings: Settings, out_dir: Path) -> dict[str, Any]:
    progress = Progress()
    out_dir.mkdir(parents=True, exist_ok=True)
    templates = out_dir / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "reply.txt").write_text(BENCH_TEMPLATE)

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

    env = {
        "GREENQ_MODEL": model_path,
        "GREENQ_DTYPE": config.dtype,
        "GREENQ_PROMPT_TEMPLATES_DIR": str(templates),
        "GREENQ_TORCH_THREADS": str(config.torch_threads),
        "GREENQ_METRICS_PORT": "0",
        "GREENQ_LOG_LEVEL": "WARNING",
        "GREENQ_GENERATION__REPLY__MAX_NEW_TOKENS": str(config.new_tokens),
        "GREENQ_GENERATION__REPLY__MIN_NEW_TOKENS": str(config.new_tokens),
        "GREENQ_BATCH__REPLY__MAX_BATCH_SIZE": str(config.batch_size),
        "GREENQ_BATCH__REPLY__MAX_WAIT_S": str(config.max_wait_s),
        "GREENQ_BATCH__REPLY__MAX_BATCH_TOKENS": "10000000",
        "GREENQ_ENERGY_METER": settings.energy_meter,
        "GREENQ_CPU_WATTS_PER_CORE": str(settings.cpu_watts_per_core),
        "GREENQ_CARBON_INTENSITY_G_PER_KWH": str(settings.carbon_intensity_g_per_kwh),
    }
    deploy = Deployment(env, out_dir)
    try:
        deploy.start("workers.process", "bench@greenq", config.device)
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
        deploy.start("workers.naive", "naive@greenq", config.device)
        from workers.naive import NAIVE_TASK

        run_saturation(deploy, payloads[:2], task=NAIVE_TASK)
        progress("(c) naive worker ready; saturation run")
        naive = run_saturation(deploy, payloads, task=NAIVE_TASK)
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
