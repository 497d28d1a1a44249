"""The producer half of the `greenq` command: submit, stream, report, dlq, pool, top, gateway, gateway-key.

The `greenq` entry point is workers/commands/cli.py, which adds the commands that run models or workers
(worker, demo, exporter, bench, build-model) to these. This module imports nothing from
workers/, so `python -m greenq.producers.cli` serves a storefront that has shared/ and producers/ alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TextIO, TypeAlias

from greenq.shared import job_types
from greenq.shared.errors import BrokerUnavailable, GreenqError, InvalidJob, ResultTimeout
from greenq.shared.results import JobStatus
from greenq.shared.settings import Settings

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # what `add_subparsers()` returns

EXIT_JOBS_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def main(argv: list[str] | None = None) -> int:
    """The producer commands alone (`greenq` itself is greenq.workers.commands.cli.main)."""
    parser, sub = new_parser()
    add_commands(sub)
    return run(parser, argv)


def new_parser() -> tuple[argparse.ArgumentParser, SubParsers]:
    parser = argparse.ArgumentParser(prog="greenq", description="LLM jobs for online stores, with energy receipts.")
    return parser, parser.add_subparsers(dest="command", required=True)


def add_commands(sub: SubParsers) -> None:
    p = sub.add_parser("submit", help="submit a JSON-lines file of jobs and write their results")
    p.add_argument("job_type", choices=job_types.names())
    p.add_argument("file", type=Path, help="one job per line ('-' for standard input)")
    p.add_argument("--out", type=Path, help="write results here as JSON lines (default: standard output)")
    p.add_argument("--timeout-s", type=float, default=3600.0, help="give up waiting after this long")
    p.add_argument("--no-wait", action="store_true", help="print job ids and exit without waiting")
    p.add_argument("--progress", choices=["auto", "on", "off"], default="auto")
    p.set_defaults(func=_submit)

    p = sub.add_parser("stream", help="print a job's text as it decodes, then a line about its result")
    p.add_argument("job_id")
    p.add_argument("--timeout-s", type=float, default=3600.0, help="give up waiting after this long")
    p.add_argument("--json", action="store_true", help="end with the result as JSON (on standard output)")
    p.set_defaults(func=_stream)

    p = sub.add_parser("report", help="J/job, gCO2e/job, throughput and latency by job type")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", type=Path, help="a results JSON-lines file (from greenq submit --out)")
    source.add_argument("--metrics-url", action="append", help="a worker's /metrics URL (repeatable)")
    p.set_defaults(func=_report)

    p = sub.add_parser("dlq", help="the dead-letter store: list | show ID | retry ID | purge [ID]")
    p.add_argument("action", choices=["list", "show", "retry", "purge"])
    p.add_argument("letter_id", nargs="?")
    p.set_defaults(func=_dlq)

    p = sub.add_parser("pool", help="live workers: status, queues, batch policy, drain")
    pool = p.add_subparsers(dest="pool_command", required=True)
    q = pool.add_parser(
        "status", help="each worker's device, queues, policy, readiness, batch, jobs/s, learned batch costs"
    )
    q.add_argument("--json", action="store_true")
    for name, help_text in (
        ("add-queue", "start consuming a job type's queue"),
        ("remove-queue", "stop consuming a job type's queue"),
    ):
        q = pool.add_parser(name, help=help_text)
        q.add_argument("node", help="worker node name, or 'all'")
        q.add_argument("job_type", choices=job_types.names())
    q = pool.add_parser("set-policy", help="change a job type's batch policy at runtime")
    q.add_argument("node", help="worker node name, or 'all'")
    q.add_argument("job_type", choices=job_types.names())
    q.add_argument(
        "--mode", choices=["fixed", "adaptive"], help="fixed: close after --max-wait-s; adaptive: fewest J/job"
    )
    q.add_argument("--max-batch-size", type=int)
    q.add_argument("--max-wait-s", type=float)
    q.add_argument("--max-hold-s", type=float, help="adaptive mode: the longest a forming batch is held")
    q.add_argument("--max-batch-tokens", type=int)
    q = pool.add_parser("drain", help="stop consuming; finish the jobs already held")
    q.add_argument("node", help="worker node name, or 'all'")
    p.set_defaults(func=_pool)

    p = sub.add_parser("top", help="a live view of queues and workers")
    p.add_argument("--interval-s", type=float, default=2.0)
    p.add_argument("--iterations", type=int, default=None, help="stop after this many refreshes")
    p.set_defaults(func=_top)

    p = sub.add_parser("gateway", help="serve the HTTP API (FastAPI + uvicorn)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=None, help="default: GREENQ_GATEWAY_PORT")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.set_defaults(func=_gateway)

    p = sub.add_parser("gateway-key", help="make an API key for a tenant; prints the key once and its file entry")
    p.add_argument("tenant")
    p.add_argument("--rate-limit-per-s", type=int, default=50)
    p.add_argument("--max-outstanding", type=int, default=5000)
    p.set_defaults(func=_gateway_key)


def run(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse, read the settings once, run the chosen command and map greenq's errors to exit codes."""
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"greenq: invalid settings: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args, settings))
    except BrokerUnavailable as exc:
        print(f"greenq: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except GreenqError as exc:
        print(f"greenq: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _submit(args: argparse.Namespace, settings: Settings) -> int:
    from greenq.producers.client import Client
    from greenq.producers.jsonl import read_lines

    job_type: str = args.job_type
    source = sys.stdin if str(args.file) == "-" else args.file.open(encoding="utf-8")
    progress = sys.stderr.isatty() if args.progress == "auto" else args.progress == "on"
    out: TextIO = args.out.open("w", encoding="utf-8") if args.out else sys.stdout
    rejected = 0
    with Client(settings) as client, source, out:
        prepared, line_of = [], {}
        for line in read_lines(source, job_type):
            try:
                if line.error is not None:
                    raise line.error
                assert line.spec is not None
                prepared.append((line.number, client.prepare(line.spec)))
            except InvalidJob as exc:
                rejected += 1
                for field, problem in exc.errors:
                    print(f"line {line.number}: {field}: {problem}", file=sys.stderr)
                _write(out, {"line": line.number, "status": JobStatus.rejected.value, "error": str(exc)})
        deferred = sum(client.deferral_of(envelope) is not None for _, envelope in prepared)
        job_ids = client.publish([envelope for _, envelope in prepared], progress=progress)
        line_of = {job_id: number for job_id, (number, _) in zip(job_ids, prepared, strict=True)}
        waiting = f" ({deferred} deferred to the cleanest grid hours before their run_by)" if deferred else ""
        print(f"submitted {len(job_ids)} {job_type} jobs{waiting}, rejected {rejected}", file=sys.stderr)
        if args.no_wait:
            for job_id in job_ids:
                _write(out, {"line": line_of[job_id], "job_id": job_id})
            return EXIT_JOBS_FAILED if rejected else 0
        failed = 0
        try:
            for result in client.as_completed(job_ids, timeout_s=args.timeout_s, progress=progress):
                failed += not result.status.is_success
                _write(out, {"line": line_of.get(result.job_id), **result.to_json()})
        except ResultTimeout as exc:
            print(f"greenq: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
    if failed or rejected:
        print(f"{failed} jobs did not succeed, {rejected} lines rejected", file=sys.stderr)
        return EXIT_JOBS_FAILED
    return 0


def _stream(args: argparse.Namespace, settings: Settings) -> int:
    from greenq.producers.client import Client

    with Client(settings) as client:
        try:
            for piece in client.stream(args.job_id, timeout_s=args.timeout_s):
                if isinstance(piece, str):
                    sys.stdout.write(piece)
                    sys.stdout.flush()
                    continue
                sys.stdout.write("\n")
                if args.json:
                    _write(sys.stdout, piece.to_json())
                energy = f", {piece.energy_j:.3f} J" if piece.energy_j is not None else ""
                first = piece.timings.first_token_s
                ttft = f", first text after {first:.2f} s" if first is not None else ""
                error = f": {piece.error}" if piece.error else ""
                print(f"{piece.status.value}{error} ({piece.generated_tokens} tokens{ttft}{energy})", file=sys.stderr)
                return 0 if piece.status.is_success else EXIT_JOBS_FAILED
        except ResultTimeout as exc:
            print(f"\ngreenq: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
    return EXIT_UNAVAILABLE  # unreachable: a stream ends with its result or raises


def _write(out: TextIO, record: dict[str, object]) -> None:
    out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from greenq.producers.report import report_from_metrics, report_from_results

    if args.results:
        print(report_from_results(args.results.read_text(encoding="utf-8").splitlines()))
    else:
        print(report_from_metrics(args.metrics_url))
    return 0


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from greenq.producers.deadletters import run_dlq

    return run_dlq(settings, args.action, args.letter_id)


def _pool(args: argparse.Namespace, settings: Settings) -> int:
    from greenq.producers import pool
    from greenq.producers.client import Client
    from greenq.shared.celery_app import worker_statuses

    with Client(settings) as client:
        app = client.app
        if args.pool_command == "status":
            statuses = worker_statuses(app, pool.STATUS_TIMEOUT_S)
            print(json.dumps(statuses, indent=2) if args.json else pool.status_table(statuses))
            return 0 if statuses else EXIT_UNAVAILABLE
        if args.pool_command == "add-queue":
            print(pool.add_queue(app, args.node, args.job_type))
        elif args.pool_command == "remove-queue":
            print(pool.remove_queue(app, args.node, args.job_type))
        elif args.pool_command == "set-policy":
            answer = pool.set_policy(
                app,
                args.node,
                args.job_type,
                mode=args.mode,
                max_batch_size=args.max_batch_size,
                max_wait_s=args.max_wait_s,
                max_hold_s=args.max_hold_s,
                max_batch_tokens=args.max_batch_tokens,
            )
            print(answer)
            if '"error"' in answer:
                return EXIT_USAGE
        else:
            print(pool.drain(app, args.node))
    return 0


def _top(args: argparse.Namespace, settings: Settings) -> int:
    from greenq.producers.client import Client
    from greenq.producers.top import run_top

    with Client(settings) as client:
        try:
            run_top(client, args.interval_s, args.iterations)
        except KeyboardInterrupt:
            pass
    return 0


def _gateway(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    if settings.gateway_tenants_file is None:
        print(
            "greenq gateway: set GREENQ_GATEWAY_TENANTS_FILE (make keys with `greenq gateway-key NAME`)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    uvicorn.run(
        "greenq.producers.gateway.main:app",
        host=args.host,
        port=args.port or settings.gateway_port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
    )
    return 0


def _gateway_key(args: argparse.Namespace, settings: Settings) -> int:
    import secrets

    from greenq.producers.gateway.tenants import Tenant, hash_key, new_key

    key = new_key()
    entry = Tenant(
        name=args.tenant,
        key_sha256=hash_key(key),
        rate_limit_per_s=args.rate_limit_per_s,
        max_outstanding=args.max_outstanding,
        callback_secret=secrets.token_hex(32),
    )
    print(f"API key for {args.tenant} (shown once; greenq stores only its hash):\n  {key}\n")
    print('Add to the tenants file (GREENQ_GATEWAY_TENANTS_FILE), under "tenants":')
    print("  " + entry.model_dump_json())
    print(
        "\nIts callback_secret signs this tenant's callbacks (a tenant without one cannot ask for them);"
        "\ngive it to the tenant, over a private channel, to verify X-Greenq-Signature."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
