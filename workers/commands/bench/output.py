"""Writing a bench run: JSON (everything), a Markdown summary, and PNG plots."""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

FILES = ("bench.json", "summary.md", "throughput_vs_batch.png", "joules_vs_batch.png", "latency_cdf.png")


def machine() -> dict[str, Any]:
    import os

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def commit() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=5,
            ).stdout.strip()
            or "unknown"
        )
    except OSError:
        return "unknown"


def write_outputs(result: dict[str, Any], out_dir: Path, command: str) -> list[Path]:
    return write_run(result, out_dir, command, markdown, plot, FILES)


def write_run(
    result: dict[str, Any],
    out_dir: Path,
    command: str,
    summarise: Callable[[dict[str, Any]], str],
    draw: Callable[[dict[str, Any], Path], None],
    files: tuple[str, ...],
) -> list[Path]:
    """Stamp a bench result (date, machine, commit, command), write its JSON and summary, draw its plots."""
    result = {
        **result,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": commit(),
        "command": command,
    }
    (out_dir / "bench.json").write_text(json.dumps(result, indent=2))
    (out_dir / "summary.md").write_text(summarise(result))
    draw(result, out_dir)
    return [out_dir / name for name in files]


def _fmt(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "–"


def _row(name: str, r: dict[str, Any]) -> str:
    lat, queue = r.get("latency_s", {}), r.get("queue_s", {})
    fmt = _fmt
    return (
        f"| {name} | {r['jobs_per_s']:.2f} | {r['tokens_per_s']:.1f} | {fmt(lat.get('p50'))} | "
        f"{fmt(lat.get('p95'))} | {fmt(lat.get('p99'))} | {fmt(queue.get('p50'))} | {fmt(queue.get('p99'))} | "
        f"{fmt(r.get('mean_batch_size', r.get('batch_size')))} | {r['joules_per_job']:.3f} | "
        f"{r.get('co2e_grams_per_job', float('nan')):.2e} | {r.get('energy_source')} |"
    )


def markdown(result: dict[str, Any]) -> str:
    c = result["config"]
    ceiling = result["ceiling"][str(c["batch_size"])]
    ratios = result["ratios"]
    lines = [
        f"# greenq bench — {result['date']}",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores. Commit `{result['commit']}`.",
        f"Command: `{result['command']}`",
        f"Workload: {c['jobs']} reply jobs, model `{c['model']}`, prompts {c['min_prompt_tokens']}–"
        f"{c['max_prompt_tokens']} tokens, exactly {c['new_tokens']} new tokens, B = {c['batch_size']}, "
        f"max wait {c['max_wait_s'] * 1000:.0f} ms.",
        "",
        "| run | jobs/s | tokens/s | e2e p50 s | e2e p95 s | e2e p99 s | queue p50 s | queue p99 s | mean batch "
        "| J/job | gCO2e/job | energy source |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        _row(f"(a) ceiling, B={c['batch_size']}", ceiling),
        _row(f"(a) ceiling, B={c['batch_size']}, again after (b)", result["ceiling_after_greenq"]),
        _row("(b) greenq, saturation", result["greenq_saturation"]),
        _row(
            f"(b) greenq, {result['greenq_fixed_rate']['offered_jobs_per_s']:.2f} jobs/s offered",
            result["greenq_fixed_rate"],
        ),
        _row("(c) naive, one task per job", result["naive"]),
        "",
        f"- (b)/(a) throughput at saturation: **{ratios['greenq_over_ceiling']:.3f}** (target ≥ 0.90; (a) is the "
        "mean of the two ceiling runs around (b))",
        f"- (b)/(c) throughput: **{ratios['greenq_over_naive']:.2f}×** (target ≥ 5)",
    ]
    if ratios.get("joules_per_job_B_over_B1") is not None:
        lines.append(
            f"- J/job at B={c['batch_size']} ÷ J/job at B=1 (ceiling sweep): "
            f"**{ratios['joules_per_job_B_over_B1']:.3f}** (target ≤ 0.25)"
        )
    lines += ["", "Ceiling sweep:", "", "| B | jobs/s | tokens/s | J/job |", "|---|---|---|---|"]
    for b, r in sorted(result["ceiling"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {b} | {r['jobs_per_s']:.2f} | {r['tokens_per_s']:.1f} | {r['joules_per_job']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = sorted(result["ceiling"].items(), key=lambda kv: int(kv[0]))
    sizes = [int(b) for b, _ in sweep]
    for name, key, label in (
        ("throughput_vs_batch.png", "jobs_per_s", "jobs/s"),
        ("joules_vs_batch.png", "joules_per_job", "J per job"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(sizes, [r[key] for _, r in sweep], marker="o", label="(a) ceiling")
        if key == "jobs_per_s":
            ax.axhline(
                result["greenq_saturation"][key],
                color="green",
                linestyle="--",
                label=f"(b) greenq, B={result['config']['batch_size']}",
            )
            ax.axhline(result["naive"][key], color="red", linestyle=":", label="(c) naive")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size B")
        ax.set_ylabel(label)
        ax.set_title(f"{label} against batch size ({result['config']['model']})")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (
        ("greenq_fixed_rate", "(b) greenq, fixed rate"),
        ("greenq_saturation", "(b) greenq, saturation"),
        ("naive", "(c) naive, saturation"),
    ):
        values = sorted(result[key]["latencies_s"])
        if values:
            ax.step(values, [(i + 1) / len(values) for i in range(len(values))], where="post", label=label)
    ax.set_xlabel("end-to-end latency, s")
    ax.set_ylabel("fraction of jobs")
    ax.set_title("latency CDF")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "latency_cdf.png", dpi=100)
    plt.close(fig)
