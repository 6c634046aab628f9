"""The static-weights section of ``mtrl report``: does ``grad_norm_scaling`` match the best of a
grid of static loss weights, as the imbalance study (Guo et al., arXiv:2509.23915) found on
dense prediction?

It is written when the runs hold at least one group of the ``static`` balancer (a grid point:
one weight vector) and exactly one group of ``grad_norm_scaling``; a single ``ew`` group is
shown beside them. Selection and report use different seeds, so that the grid's best is not
flattered by having been picked on the runs it is scored on:

- the seeds shared by every static grid point are sorted; the lower half selects (the first
  floor(n/2) seeds), the upper half is held out;
- the grid's best is the point with the highest mean final success over tasks and selection
  runs (ties: the first in label order);
- the best point, ``grad_norm_scaling`` and ``ew`` are reported on their runs of the held-out
  seeds only: per task and over all tasks, the IQM of final success with a 95% stratified
  bootstrap interval (rliable; runs resampled within each task), and the difference
  IQM(grad_norm_scaling) - IQM(best) with its interval from the same kind of bootstrap, each
  group resampled on its own.

The sentence: with fewer than ``MIN_RUNS`` held-out runs in a reported group, "no verdict" (the
bootstrap over 1 or 2 runs has no spread to speak of: mtrl.report_shared.WHY_MIN_RUNS); otherwise
whether the difference's interval holds 0 ("within the interval of the grid's best"), or lies
above or below it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mtrl.report_shared import (
    MIN_RUNS,
    RESAMPLES,
    Run,
    group_colors,
    interval_estimates,
    method_of,
    plural,
    seeded,
    table,
    with_ci,
    write_csv,
)

STATIC, GNS, EW = "static", "grad_norm_scaling", "ew"


def iqm(scores: np.ndarray) -> float:
    """The IQM of every entry of ``scores`` (the mean of the middle half; with 1-3 entries, the
    mean once the trimming removes nothing)."""
    from scipy.stats import trim_mean

    return float(trim_mean(np.ravel(scores), 0.25))


def _estimate(scores: np.ndarray, reps: int) -> dict:
    """IQM of [runs, tasks] scores and its 95% stratified-bootstrap interval."""
    point, ci = interval_estimates(scores, lambda x: np.array([iqm(x)]), reps)
    return {"value": float(point[0]), "ci": [float(ci[0, 0]), float(ci[1, 0])]}


def difference(x: np.ndarray, y: np.ndarray, reps: int) -> dict:
    """IQM(x) - IQM(y) of two [runs, tasks] score matrices, each resampled on its own within tasks."""
    from rliable import library as rly

    point, ci = seeded(rly.get_interval_estimates, {"d": [x, y]}, lambda a, b: np.array([iqm(a) - iqm(b)]), reps=reps)
    return {"value": float(np.ravel(point["d"])[0]), "ci": [float(v) for v in np.ravel(ci["d"])]}


def build_static_grid(runs: list[Run], tasks: list[str], reps: int) -> dict | None:
    """The section's numbers, or None when the runs are not such a comparison. ``runs`` carry
    their group labels (mtrl.report.label_runs)."""
    groups: dict[str, list[Run]] = {}
    for r in sorted(runs, key=lambda r: (r.label, r.summary.get("seed", 0))):
        groups.setdefault(r.label, []).append(r)
    grid = {label: g for label, g in groups.items() if method_of(g[0].summary) == STATIC}
    gns = [label for label, g in groups.items() if method_of(g[0].summary) == GNS]
    ews = [label for label, g in groups.items() if method_of(g[0].summary) == EW]
    if not grid or len(gns) != 1:
        return None
    # a summary without a seed sorts as seed 0, as the groups above do
    seeds = {label: {int(r.summary.get("seed", 0)) for r in g} for label, g in groups.items()}
    shared = sorted(set.intersection(*(seeds[label] for label in grid)))
    data: dict[str, Any] = {
        "grid": list(grid),
        "grad_norm_scaling": gns[0],
        "ew": ews[0] if len(ews) == 1 else None,
        "shared_seeds": shared,
        "tasks": tasks,
    }
    if len(shared) < 2:
        data["sentence"] = (
            f"No verdict: the static grid points share {plural(len(shared), 'seed')}; choosing the "
            "grid's best on some seeds and reporting it on others needs at least 2."
        )
        return data
    select, held = shared[: len(shared) // 2], shared[len(shared) // 2 :]

    def scores(label: str, on: list[int]) -> np.ndarray:  # [runs, tasks] final success on those seeds
        return np.array(
            [
                [r.summary["final_success"][t] for t in tasks]
                for r in groups[label]
                if int(r.summary.get("seed", 0)) in on
            ],
            dtype=float,
        ).reshape(-1, len(tasks))

    selection = {label: float(scores(label, select).mean()) for label in grid}
    best = max(grid, key=lambda label: selection[label])  # max keeps the first of ties
    shown = [best, gns[0]] + ([data["ew"]] if data["ew"] else [])
    held_scores = {label: scores(label, held) for label in shown}
    data.update(
        select_seeds=select,
        held_seeds=held,
        selection=selection,
        best=best,
        held_runs={label: len(s) for label, s in held_scores.items()},
    )
    missing = [label for label, s in held_scores.items() if len(s) == 0]
    if missing:
        data["sentence"] = (
            f"No verdict: {', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no run of "
            f"held-out {seeds_text(held)}."
        )
        return data
    data["per_task"] = {
        label: {t: _estimate(s[:, [i]], reps) for i, t in enumerate(tasks)} for label, s in held_scores.items()
    }
    data["overall"] = {label: _estimate(s, reps) for label, s in held_scores.items()}
    diff = data["difference"] = difference(held_scores[gns[0]], held_scores[best], reps)
    data["sentence"] = sentence(data, diff)
    return data


def seeds_text(seeds: list[int]) -> str:
    """``seed 2``, ``seeds 3, 4, 5``."""
    return f"seed{'' if len(seeds) == 1 else 's'} {', '.join(map(str, seeds))}"


def sentence(data: dict, diff: dict) -> str:
    fewest = min(data["held_runs"].values())
    chosen = f"the grid's best, {data['best']}, chosen on {seeds_text(data['select_seeds'])}"
    measured = f"IQM(grad_norm_scaling) - IQM(best) = {with_ci(diff)} on held-out {seeds_text(data['held_seeds'])}"
    if fewest < MIN_RUNS:
        return (
            f"No verdict: {chosen}, is reported on {plural(fewest, 'held-out run')} per group at the fewest, "
            f"and a verdict needs at least {MIN_RUNS}; on these runs {measured}."
        )
    lo, hi = diff["ci"]
    if lo <= 0 <= hi:
        return f"grad_norm_scaling is within the interval of {chosen}: the 95% interval of {measured} holds 0."
    side = "above" if lo > 0 else "below"
    return f"grad_norm_scaling is {side} {chosen}: the 95% interval of {measured} excludes 0."


def plot_static_grid(data: dict, path: Path) -> None:
    """Per task and over all tasks: each reported group's held-out IQM with its 95% interval."""
    import matplotlib.pyplot as plt

    labels = list(data["overall"])
    colors = group_colors(labels)
    columns = [*data["tasks"], "all tasks"]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(columns), 3.8), dpi=100)
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        est = [*(data["per_task"][label][t] for t in data["tasks"]), data["overall"][label]]
        x = np.arange(len(columns)) - 0.4 + width * (i + 0.5)
        v = np.array([e["value"] for e in est])
        lo, hi = np.array([e["ci"][0] for e in est]), np.array([e["ci"][1] for e in est])
        name = f"{'best static: ' if label == data['best'] else ''}{label}"
        ax.errorbar(
            x,
            v,
            yerr=[v - lo, hi - v],
            fmt="o",
            color=colors[label],
            capsize=3,
            label=f"{name} ({plural(data['held_runs'][label], 'run')})",
        )
    ax.set_xticks(range(len(columns)), columns, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("final success: IQM over held-out runs")
    spread = "95% CI" if min(data["held_runs"].values()) > 1 else "one run per group: no interval"
    ax.set_title(
        f"Static grid's best vs grad_norm_scaling\nheld-out {seeds_text(data['held_seeds'])}, {spread}", fontsize=9
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_static_grid(data: dict, out: Path) -> str:
    """static_grid.json (and .csv, .png when there are held-out scores) into ``out``; returns the
    markdown section of report.md."""
    (out / "static_grid.json").write_text(json.dumps(data, indent=1) + "\n")
    md = ["## Static loss weights: the grid's best against grad_norm_scaling\n", data["sentence"] + "\n"]
    if "selection" in data:
        md += [
            f"Each static grid point's mean final success over tasks and runs on selection "
            f"{seeds_text(data['select_seeds'])}; the best is reported below on held-out "
            f"{seeds_text(data['held_seeds'])}, never on the seeds it was chosen on.\n",
            table(
                ["grid point", "selection score", "chosen"],
                [[g, f"{s:.3f}", "yes" if g == data["best"] else ""] for g, s in data["selection"].items()],
            ),
        ]
    if "overall" in data:
        labels = list(data["overall"])
        header = ["task", *(f"{'best static: ' if m == data['best'] else ''}{m}" for m in labels)]
        rows = [[t, *(with_ci(data["per_task"][m][t]) for m in labels)] for t in data["tasks"]]
        rows.append(["**all tasks**", *(with_ci(data["overall"][m]) for m in labels)])
        csv_rows = []
        for t in [*data["tasks"], None]:  # None: all tasks
            est = {m: data["overall"][m] if t is None else data["per_task"][m][t] for m in labels}
            csv_rows.append([t or "all tasks", *(v for m in labels for v in (est[m]["value"], *est[m]["ci"]))])
        write_csv(
            out / "static_grid.csv",
            ["task", *(f"{m}{s}" for m in labels for s in ("", "_ci_low", "_ci_high"))],
            csv_rows,
        )
        plot_static_grid(data, out / "static_grid.png")
        md += [
            f"Final success on the held-out seeds: IQM [95% CI from {RESAMPLES}] per task (over runs) and over all "
            f"tasks (over runs x tasks); held-out runs per group: "
            f"{', '.join(f'{m} {n}' for m, n in data['held_runs'].items())}.\n",
            table(header, rows),
            "![static grid](static_grid.png)\n",
        ]
    return "\n".join(md)


def static_grid_section(runs: list[Run], tasks: list[str], out: Path, reps: int) -> tuple[str, str]:
    """The report hook: (markdown section, sentence), or ("", "") when the runs are no static grid.
    Groups go by their full labels (``static (weights=[1, 1, 4])``), not report.md's short ones."""
    data = build_static_grid(runs, tasks, reps)
    if data is None:
        return "", ""
    return write_static_grid(data, out), data["sentence"]
