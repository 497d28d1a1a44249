"""The baseline greenq is measured against: one Celery task per job, no batching.

What most tutorials build: a warm model in a worker process, and a task that builds the
prompt, generates for that one job and returns. Used only by `greenq bench`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from greenq.shared.celery_app import make_celery, register_task
from greenq.shared.envelope import Envelope
from greenq.shared.jobs import parse_job
from greenq.shared.queues import BENCH_NAIVE_QUEUE, BENCH_NAIVE_TASK
from greenq.shared.results import JobResult, JobStatus, Timings
from greenq.shared.settings import Settings
from greenq.workers.energy.meters.detect import detect_meter
from greenq.workers.model.local_model import resolve_model
from greenq.workers.model.prompts import build_messages
from greenq.workers.model.runtime import HFRuntime, warm_up
from greenq.workers.model.types import GenerationRequest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="greenq-naive-worker")
    parser.add_argument("--node-name", default="naive@%h")
    parser.add_argument("--device", default="cpu", help="physical device label")
    parser.add_argument("--torch-device", default="cpu")
    args = parser.parse_args(argv)
    settings = Settings()
    logging.basicConfig(level=settings.log_level)
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    runtime = HFRuntime(
        resolve_model(settings.model, settings.model_cache_dir), args.torch_device, settings.dtype, label=settings.model
    )
    warm_up(runtime)
    on_gpu = args.torch_device.startswith("cuda")
    meter = detect_meter(settings.energy_meter, on_gpu, settings.rapl_root, settings.cpu_watts_per_core)
    app = make_celery(settings)

    @register_task(app, name=BENCH_NAIVE_TASK, acks_late=True, bind=True)
    def generate(task: Any, body: dict[str, Any]) -> dict[str, Any]:
        received = time.time()
        envelope = Envelope.decode(body)
        job = parse_job(envelope.job_type, envelope.payload)
        gen = settings.generation[envelope.job_type]
        messages = build_messages(envelope.job_type, job, settings.prompt_templates_dir)
        ids = tuple(runtime.encode(runtime.render(messages)))
        before = sum(meter.read().values())
        started = time.time()
        out = runtime.generate([GenerationRequest(ids, gen.max_new_tokens, gen)])[0]
        finished = time.time()
        energy_j = sum(meter.read().values()) - before
        return JobResult(
            job_id=task.request.id,
            job_type=envelope.job_type,
            status=JobStatus.succeeded,
            text=out.text,
            finish_reason=out.finish_reason,
            prompt_tokens=len(ids),
            generated_tokens=out.generated_tokens,
            model=settings.model,
            worker=args.node_name,
            device=args.device,
            batch_size=1,
            energy_j=energy_j,
            energy_source=meter.source,
            finished_at=finished,
            timings=Timings(
                queue_s=received - envelope.submitted_at,
                compute_s=finished - started,
                end_to_end_s=finished - envelope.submitted_at,
            ),
        ).to_json()

    worker = app.Worker(
        hostname=args.node_name,
        queues=[BENCH_NAIVE_QUEUE],
        pool="solo",
        concurrency=1,
        loglevel=settings.log_level,
        without_mingle=True,
        without_gossip=True,
    )
    worker.start()
    return int(worker.exitcode or 0)


if __name__ == "__main__":
    sys.exit(main())
