"""Writing a `greenq bench --load` run: JSON (everything), a Markdown summary, and PNG plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from greenq.shared import job_types
from greenq.workers.commands.bench.load_stats import (
    ENERGY_RATIO_TARGET,
    ENERGY_TARGET_FRACTIONS,
    THROUGHPUT_RATIO_TARGET,
)
from greenq.workers.commands.bench.output import write_run

FILES = ("bench.json", "summary.md", "joules_vs_load.png", "p95_vs_objective.png")
# greenq's own objectives, for the note that the bench's are scaled down.
REAL_OBJECTIVES_S = {spec.name: spec.latency_objective_s for spec in job_types.specs()}


def write_load_outputs(result: dict[str, Any], out_dir: Path, command: str) -> list[Path]:
    return write_run(result, out_dir, command, markdown, plot, FILES)


def _f(value: object, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return "–"
    return f"{value:.{digits}f}"


def _seconds(value: float) -> str:
    return f"{value / 60:g} min" if value >= 120 else f"{value:g} s"


def _latency_cell(stats: dict[str, Any]) -> str:
    if not stats["jobs"]:
        return "–"
    mark = "met" if stats["met"] else "**missed**"
    return f"{_f(stats['p50_s'])} / {_f(stats['p95_s'])} ({mark})"


def _row(policy: str, label: str, window: dict[str, Any], job_types: list[str]) -> str:
    cells = [
        policy,
        label,
        str(window["succeeded"]),
        _f(window["offered_jobs_per_s"]),
        _f(window["achieved_jobs_per_s"]),
        _f(window["mean_batch_size"], 1),
        _f(window["active_joules_per_job"], 3),
        _f(window["total_joules_per_job"], 3),
        *(_latency_cell(window["by_type"][t]) for t in job_types),
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(result: dict[str, Any]) -> str:
    c, load, ceiling, ratios = result["config"], result["load"], result["ceiling"], result["ratios"]
    job_types = list(load["mix"])
    weight = sum(load["mix"].values())
    mix = ", ".join(f"{t} {100 * w / weight:.0f} %" for t, w in load["mix"].items())
    objectives = ", ".join(f"{t} {_seconds(s)}" for t, s in load["objectives_s"].items())
    real = ", ".join(f"{t} {_seconds(REAL_OBJECTIVES_S[t])}" for t in job_types if t in REAL_OBJECTIVES_S)
    cap = (
        f" (windows cut short to about {load['max_jobs_per_window']} jobs where that is fewer)"
        if load["max_jobs_per_window"]
        else ""
    )
    sources = sorted({p["saturation"]["energy_source"] for p in result["policies"].values()} - {None})
    lines = [
        f"# greenq bench --load — {result['date']}",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores. Commit `{result['commit']}`.",
        f"Command: `{result['command']}`",
        f"Workload: model `{c['model']}` on {c['device']}, B = {c['batch_size']}, max wait "
        f"{c['max_wait_s'] * 1000:.0f} ms; prompts {c['min_prompt_tokens']}–{c['max_prompt_tokens']} tokens and "
        f"exactly {c['new_tokens']} new tokens for every job type; job types mixed {mix} (seeded).",
        f"Load: Poisson arrivals (seeded) for {load['duration_s']:g} s per fraction of the ceiling{cap}, "
        "submitted open-loop, results awaited after; both policies get the same arrivals. Ceiling (in-process, "
        f"B = {c['batch_size']}): **{ceiling['jobs_per_s']:.2f} jobs/s**, {ceiling['joules_per_job']:.3f} J/job.",
        f"Latency objectives (p95, end to end) are **bench-scaled**: {objectives} — not greenq's defaults "
        f"({real}), which would need hour-long windows.",
        f"Energy ({', '.join(sources) or 'none'}): *active* J/job is the mean of the results' `energy_j` (what the "
        "worker's meter saw inside batches); *total* J/job is the whole window's energy (idle included) "
        f"÷ jobs, read from {result['total_energy_note'] or 'no window meter'}.",
        f"Saturation: each policy's own worker, a burst of {load['burst_batches']} × B jobs submitted at once, "
        "just before its load windows; the ratios below divide by it.",
        "",
        "| policy | load | jobs | offered jobs/s | achieved jobs/s | mean batch | active J/job | total J/job | "
        + " | ".join(f"{t} p50 / p95 s" for t in job_types)
        + " |",
        "|---" * (8 + len(job_types)) + "|",
    ]
    for name, policy in result["policies"].items():
        lines.append(_row(name, "saturation burst", policy["saturation"], job_types))
        for key, window in policy["fractions"].items():
            lines.append(_row(name, f"{key} × ceiling", window, job_types))
    lag_s = max(w["max_submit_lag_s"] for p in result["policies"].values() for w in p["fractions"].values())
    lines += [
        "",
        "Mean batch is the mean over jobs of the size of the batch each ran in; a window lasts its arrivals' "
        "duration or until its last result, whichever is later; achieved jobs/s and total J/job are over it. "
        f"Submissions ran at most {lag_s * 1000:.0f} ms behind their schedule.",
        "",
        f"| policy | load | active J/job ÷ saturation | total J/job ÷ saturation | every p95 met | target: active ≤ "
        f"{ENERGY_RATIO_TARGET:g}× and every p95 met (at {', '.join(f'{f:g}' for f in ENERGY_TARGET_FRACTIONS)}) |",
        "|---|---|---|---|---|---|",
    ]
    for name, by_fraction in ratios["energy"].items():
        for key, r in by_fraction.items():
            target = "–" if r["target_met"] is None else ("met" if r["target_met"] else "**missed**")
            lines.append(
                f"| {name} | {key} × ceiling | {_f(r['active_over_saturation'], 3)} | "
                f"{_f(r['total_over_saturation'], 3)} | {'yes' if r['objectives_met'] else '**no**'} | {target} |"
            )
    throughput = ratios["adaptive_over_fixed_throughput_at_1"]
    if throughput is not None:
        met = "met" if ratios["throughput_target_met"] else "**missed**"
        lines += [
            "",
            f"- adaptive ÷ fixed achieved throughput at 1 × ceiling: **{throughput:.3f}** "
            f"(target ≥ {THROUGHPUT_RATIO_TARGET:g}: {met})",
        ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = result["policies"]
    colours = dict(zip(policies, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=False))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, title in zip(
        axes, ("active_joules_per_job", "total_joules_per_job"), ("active J/job", "total J/job"), strict=True
    ):
        for name, policy in policies.items():
            points = sorted((float(f), w[key]) for f, w in policy["fractions"].items())
            ax.plot([x for x, _ in points], [y for _, y in points], marker="o", color=colours[name], label=name)
            ax.axhline(policy["saturation"][key], color=colours[name], linestyle=":", label=f"{name}, saturation")
        ax.set_xlabel("offered load, fraction of the ceiling")
        ax.set_title(title)
        ax.legend()
    axes[0].set_ylabel("J per job")
    fig.suptitle(f"J/job against load ({result['config']['model']})")
    fig.tight_layout()
    fig.savefig(out_dir / "joules_vs_load.png", dpi=100)
    plt.close(fig)

    job_types = list(result["load"]["mix"])
    fig, axes = plt.subplots(1, len(job_types), figsize=(4 * len(job_types), 4), squeeze=False)
    for ax, job_type in zip(axes[0], job_types, strict=True):
        for name, policy in policies.items():
            points = sorted((float(f), w["by_type"][job_type]["p95_s"]) for f, w in policy["fractions"].items())
            ax.plot([x for x, _ in points], [y for _, y in points], marker="o", color=colours[name], label=name)
        ax.axhline(result["load"]["objectives_s"][job_type], color="red", linestyle="--", label="objective")
        ax.set_yscale("log")
        ax.set_xlabel("offered load, fraction of the ceiling")
        ax.set_ylabel("p95 end-to-end latency, s")
        ax.set_title(job_type)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "p95_vs_objective.png", dpi=100)
    plt.close(fig)
