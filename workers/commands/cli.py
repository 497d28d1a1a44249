"""The `greenq` command: the producer commands (producers/cli.py) plus those that run models or workers.

The entry point lives on this side so that imports go one way: workers/ may use producers/
(the demo and the bench submit jobs as a storefront would), producers/ never uses workers/.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from greenq.producers.cli import EXIT_USAGE, SubParsers, new_parser, run
from greenq.producers.cli import add_commands as add_producer_commands
from greenq.shared.settings import Settings
from greenq.workers.model.model_builder import SHAPES

if TYPE_CHECKING:
    from greenq.workers.commands.bench.workload import BenchConfig


def main(argv: list[str] | None = None) -> int:
    parser, sub = new_parser()
    add_producer_commands(sub)
    add_commands(sub)
    return run(parser, argv)


def add_commands(sub: SubParsers) -> None:
    p = sub.add_parser("worker", help="start one worker process per device")
    p.add_argument("--devices", default="cpu", help="cpu | cpu:0,cpu:1 | cuda:0,cuda:1 | all")
    p.add_argument("--queues", default="", help="job types to serve, comma-separated (default: all)")
    p.add_argument("--model", default=None, help="model for every job type (overrides GREENQ_MODEL)")
    p.add_argument("--grace-s", type=float, default=900.0, help="on SIGTERM, wait this long before SIGKILL")
    p.set_defaults(func=_worker)

    p = sub.add_parser("demo", help="start Redis and a CPU worker if needed, run sample jobs, summarise")
    p.add_argument("--jobs", type=int, default=24)
    p.set_defaults(func=_demo)

    p = sub.add_parser("exporter", help="serve queue depth, oldest-job age and latency objectives on /metrics")
    p.add_argument("--port", type=int, default=None, help="default: GREENQ_EXPORTER_PORT")
    p.set_defaults(func=_exporter)

    p = sub.add_parser("scheduler", help="plan deferred jobs into the cleanest grid hours and release them")
    p.add_argument("--once", action="store_true", help="one tick, then exit")
    p.set_defaults(func=_scheduler)

    p = sub.add_parser("bench", help="ceiling vs greenq vs one-task-per-job, measured side by side")
    p.add_argument("--quick", action="store_true", help="a smoke run with the tiny model")
    p.add_argument("--model", help="model to bench (default local:gpt2-small; local:tiny with --quick)")
    p.add_argument("--jobs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-wait-s", type=float)
    p.add_argument("--new-tokens", type=int)
    p.add_argument("--sweep", help="batch sizes for the ceiling sweep, comma-separated")
    p.add_argument("--device", help="cpu (default) or cuda:N")
    p.add_argument("--dtype", help="float32 (default), float16 or bfloat16")
    p.add_argument("--out", type=Path, default=None, help="output folder (default out/bench-<time>)")
    p.add_argument("--load", action="store_true", help="open-loop Poisson load per batch policy, instead of (a)-(c)")
    p.add_argument("--fractions", help="--load: offered load as fractions of the ceiling (default 0.25,0.5,1.0)")
    p.add_argument("--duration-s", type=float, help="--load: seconds of arrivals per fraction (default 120)")
    p.add_argument("--policies", help="--load: batch policies to compare (default fixed,adaptive)")
    p.add_argument("--mix", help="--load: job-type weights (default reply=0.5,description=0.3,strategy=0.2)")
    p.add_argument(
        "--objectives", help="--load: bench p95 objectives, s (default reply=30,description=60,strategy=120)"
    )
    p.add_argument(
        "--interactive",
        action="store_true",
        help="replies arriving while description bursts decode: static vs continuous batching, side by side",
    )
    p.add_argument("--reply-rate-per-s", type=float, default=2.0, help="--interactive: Poisson reply arrivals")
    p.add_argument("--carbon", action="store_true", help="replay a day of the carbon trace through the scheduler")
    p.add_argument("--slacks-h", default="1,4,8,24", help="--carbon: run_by slacks, hours, comma-separated")
    p.add_argument("--days", type=float, default=3.0, help="--carbon: days of arrivals (default 3)")
    p.add_argument("--capacity", type=int, default=4, help="--carbon: K, jobs the fleet starts per 5-min slot")
    p.add_argument("--seed", type=int, default=7, help="--carbon, --interactive: arrivals (and forecast noise)")
    p.add_argument("--trace", type=Path, default=None, help="--carbon: CSV trace (default ../shared/data/carbon/)")
    p.set_defaults(func=_bench)

    p = sub.add_parser("build-model", help="build a local random-weight model (no download)")
    p.add_argument("shape", choices=sorted(SHAPES))
    p.add_argument("--out", type=Path, default=None)
    p.set_defaults(func=_build_model)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from greenq.shared.queues import parse_queues
    from greenq.workers.commands.devices import count_gpus, parse_devices
    from greenq.workers.commands.launcher import Supervisor, plan_children

    try:
        devices = parse_devices(args.devices, count_gpus())
        queues = parse_queues(args.queues)
    except ValueError as exc:
        print(f"greenq worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    specs = plan_children(
        devices, queues, socket.gethostname(), model=args.model, metrics_base_port=settings.metrics_port
    )
    return Supervisor(specs, grace_s=args.grace_s).run()


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from greenq.workers.commands.demo import run_demo

    return run_demo(settings, args.jobs)


def _exporter(args: argparse.Namespace, settings: Settings) -> int:
    from greenq.workers.commands.exporter import run_exporter

    port = args.port or settings.exporter_port
    run_exporter(
        settings.broker_url, port, settings.latency_objective_s, settings.tls_ca_file, settings.sentinel_master
    )
    return 0


def _scheduler(args: argparse.Namespace, settings: Settings) -> int:
    from greenq.workers.scheduler.run import run_scheduler

    run_scheduler(settings, once=args.once)
    return 0


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    import time
    from dataclasses import replace

    from greenq.workers.commands.bench.output import write_outputs
    from greenq.workers.commands.bench.run import run_bench
    from greenq.workers.commands.bench.workload import BenchConfig, quick

    if args.carbon:
        return _bench_carbon(args, settings)
    if args.interactive:
        return _bench_interactive(args, settings)
    config = quick(BenchConfig()) if args.quick else BenchConfig()
    overrides = {
        "model": args.model,
        "jobs": args.jobs,
        "batch_size": args.batch_size,
        "max_wait_s": args.max_wait_s,
        "new_tokens": args.new_tokens,
        "device": args.device,
        "dtype": args.dtype,
        "sweep": tuple(int(b) for b in args.sweep.split(",")) if args.sweep else None,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if args.load:
        return _bench_load(args, settings, config)
    out = args.out or Path("out") / time.strftime("bench-%Y%m%d-%H%M%S")
    result = run_bench(config, settings, out)
    for path in write_outputs(result, out, "greenq " + " ".join(sys.argv[1:])):
        print(path)
    print((out / "summary.md").read_text())
    return 0


def _bench_load(args: argparse.Namespace, settings: Settings, config: BenchConfig) -> int:
    import time
    from dataclasses import replace

    from greenq.workers.commands.bench.load import run_load
    from greenq.workers.commands.bench.load_config import (
        LoadConfig,
        check_load,
        parse_fractions,
        parse_policies,
        parse_weights,
        quick_load,
    )
    from greenq.workers.commands.bench.load_output import write_load_outputs

    load = quick_load(LoadConfig()) if args.quick else LoadConfig()
    try:
        overrides = {
            "fractions": parse_fractions(args.fractions) if args.fractions else None,
            "duration_s": args.duration_s,
            "policies": parse_policies(args.policies) if args.policies else None,
            "mix": parse_weights(args.mix) if args.mix else None,
            "objectives_s": parse_weights(args.objectives) if args.objectives else None,
        }
        load = check_load(replace(load, **{k: v for k, v in overrides.items() if v is not None}))
    except ValueError as exc:
        print(f"greenq bench --load: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = args.out or Path("out") / time.strftime("bench-load-%Y%m%d-%H%M%S")
    result = run_load(config, load, settings, out)
    for path in write_load_outputs(result, out, "greenq " + " ".join(sys.argv[1:])):
        print(path)
    print((out / "summary.md").read_text())
    return 0


def _bench_interactive(args: argparse.Namespace, settings: Settings) -> int:
    import json
    import time

    import torch

    from greenq.workers.commands.bench.interactive import InteractiveConfig, run_interactive, table
    from greenq.workers.commands.bench.run import Progress
    from greenq.workers.model.local_model import resolve_model
    from greenq.workers.model.runtime import HFRuntime, warm_up

    config = InteractiveConfig(
        model=args.model or InteractiveConfig.model,
        duration_s=args.duration_s or InteractiveConfig.duration_s,
        reply_rate_per_s=args.reply_rate_per_s,
        seed=args.seed,
        device=args.device or "cpu",
        dtype=args.dtype or "float32",
    )
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    progress = Progress()
    runtime = HFRuntime(resolve_model(config.model, settings.model_cache_dir), config.device, config.dtype)
    warm_up(runtime)
    result = run_interactive(config, settings, runtime, progress)
    out = args.out or Path("out") / time.strftime("bench-interactive-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    (out / "interactive.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "interactive.md").write_text(table(result) + "\n")
    print(table(result))
    print(f"written to {out}", file=sys.stderr)
    return 0


def _bench_carbon(args: argparse.Namespace, settings: Settings) -> int:
    import time
    from dataclasses import replace

    from greenq.workers.commands.bench.carbon_replay import ReplayConfig, check_config, parse_slacks, run_carbon
    from greenq.workers.commands.bench.carbon_replay_output import write_carbon_outputs

    try:
        config = ReplayConfig(
            days=args.days, slacks_h=parse_slacks(args.slacks_h), capacity_per_slot=args.capacity, seed=args.seed
        )
        config = check_config(config if args.trace is None else replace(config, trace=args.trace))
    except ValueError as exc:
        print(f"greenq bench --carbon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = args.out or Path("out") / time.strftime("bench-carbon-%Y%m%d-%H%M%S")
    result = run_carbon(config, settings)
    for path in write_carbon_outputs(result, out, "greenq " + " ".join(sys.argv[1:])):
        print(path)
    print((out / "summary.md").read_text())
    return 0


def _build_model(args: argparse.Namespace, settings: Settings) -> int:
    from greenq.workers.model.model_builder import build_local_model

    out = args.out or settings.model_cache_dir / args.shape
    print(build_local_model(args.shape, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
