"""Writing a `greenq bench --carbon` run: JSON (everything), a Markdown table against the targets, one plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from greenq.workers.commands.bench.output import write_run

FILES = ("bench.json", "summary.md", "releases_vs_intensity.png")
RATIO_TARGETS = {"perfect": 0.90, "noisy": 0.75}  # of the capacitated perfect-foresight bound (the issue's)


def write_carbon_outputs(result: dict[str, Any], out_dir: Path, command: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_run(result, out_dir, command, markdown, plot, FILES)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _ratio_cell(run: dict[str, Any]) -> str:
    ratio = run["ratio_to_bound"]
    if ratio is None:
        return "–"
    target = RATIO_TARGETS[run["forecast"]]
    return f"**{ratio:.3f}** ({'met' if ratio >= target else 'missed'}, ≥ {target:.2f})"


def table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| slack | forecast | jobs | saving | bound (K/slot) | ratio | uncapacitated, these jobs | README bound, "
        "this day | missed run_by | after release_by (max s) | duplicates | peak/slot | wall s | days/min |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        cells = [
            f"{r['slack_h']:g} h",
            r["forecast"],
            str(r["jobs"]),
            _pct(r["saving"]),
            _pct(r["bound_saving"]),
            _ratio_cell(r),
            _pct(r["uncapacitated_saving_these_jobs"]),
            _pct(r["readme_bound_this_day"]),
            str(r["deadlines_missed"]),
            f"{r['released_after_release_by']} ({r['max_s_after_release_by']:.0f})",
            str(r["duplicates"]),
            str(r["peak_releases_per_slot"]),
            f"{r['wall_s']:.1f}",
            f"{r['virtual_days_per_real_minute']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    c, a, runs = result["config"], result["arrivals"], result["runs"]
    mix = ", ".join(f"{t} {100 * w:.0f} %" for t, w in c["mix"])
    first, last = c["business_hours"]
    lines = [
        f"# greenq bench --carbon — {result['date']}",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores. Commit `{result['commit']}`.",
        f"Command: `{result['command']}`",
        f"Trace: `{Path(c['trace']).name}`, {c['days']:g} day(s) of arrivals from {c['start']}, 5-min steps; "
        f"ticking continues for the slack after the last arrival.",
        f"Arrivals: {a['jobs']} jobs ({mix}), Poisson per 5-min step, {c['business_jobs_per_step']:g}/step in "
        f"business hours {first:02d}–{last:02d} local (UTC{c['utc_offset_h']:+g}), {c['night_jobs_per_step']:g}/step "
        f"otherwise: mean {a['mean_per_step']:.2f}/step, peak {a['peak_per_step']}.",
        f"Scheduler: the real `Scheduler` ×2 (ticking in turn, 1 s and 2 s into each step), real Redis and Celery "
        f"publisher; slot {c['slot_s']:g} s, release guard (latency objective) {c['objective_s']:g} s, "
        f"capacity K = {c['capacity_per_slot']} jobs per slot, planning ahead for later arrivals "
        f"{'on' if result.get('plan_ahead', True) else 'off'}. Noisy forecast: trace × (1 + e), e uniform in "
        f"±{100 * c['noise_fraction']:.0f} % (seed {c['seed']}).",
        f"Fleet: {result['fleet_model']}.",
        "",
        *table(runs),
        "",
        "- saving: 1 − mean true intensity at release ÷ at submission. bound: the same for the offline optimum on "
        "the same jobs, windows [submission step, release_by step] and K per slot; ratio = saving ÷ bound.",
        "- uncapacitated, these jobs: each job at its window's minimum, no capacity. README bound: a job at every "
        "step of this day, window [i, i + slack] (the trace README's convention), no capacity.",
        "- after release_by: released later than run_by − objective (the tick comes 1–2 s into the job's last "
        "slot); max s is the worst. Every such job is still inside its release guard.",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    perfect = [r for r in result["runs"] if r["forecast"] == "perfect"]
    if not perfect:
        return
    fig, axes = plt.subplots(len(perfect), 1, figsize=(9, 2.4 * len(perfect)), sharex=True, squeeze=False)
    values = result["trace_g_per_kwh"]
    for ax, run in zip(axes[:, 0], perfect, strict=True):
        steps = range(len(run["releases_per_step"]))
        ax.plot([s / 12 for s in steps], values[: len(steps)], color="black", linewidth=0.8, label="g/kWh")
        ax.set_ylabel("g/kWh")
        twin = ax.twinx()
        twin.bar([s / 12 for s in steps], run["releases_per_step"], width=1 / 12, color="green", alpha=0.6)
        twin.set_ylabel("released")
        ax.set_zorder(twin.get_zorder() + 1)  # the trace over the bars
        ax.patch.set_visible(False)
        ax.set_title(f"slack {run['slack_h']:g} h, perfect forecast: releases per slot", fontsize=9)
    axes[-1, 0].set_xlabel("hours from the first arrival")
    fig.tight_layout()
    fig.savefig(out_dir / "releases_vs_intensity.png", dpi=100)
    plt.close(fig)
