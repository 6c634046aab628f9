"""The imbalance section of ``mtrl report``: does the share of the update a task gets predict
which tasks lag, and does it predict them better than conflict does?

Predictors, per run and task, for the critic and the actor, from the TensorBoard statistics of
the applied update d (logged every ``grad_stats_every`` updates; mtrl.gradients):

- ``norm_share``  |g_t| / sum_j |g_j| (imbalance). Runs older than the tag get it from
  ``grad/<loss>/norm/<task>``, which they logged.
- ``proj_share``  proj_t / sum_j |proj_j|, proj_t = g_t.d/|d| (imbalance: how much of the
  update's progress goes task t's way). Normalised by the summed |proj| rather than |d| so it
  lies in [-1, 1] and does not move when a balancer rescales d (CAGrad, Nash-MTL do).
- ``cos_update``  cos(g_t, d) (conflict: task t's gradient pointing away from the update).

each averaged over every logged step of the run (window ``train``) and over its last third
(``last3``: steps >= 2/3 of the run's env steps).

Outcomes per task: ``auc``, the area under the task's evaluation success curve over the evaluated
steps divided by their span (its time-averaged success; the primary outcome, less noisy than one
evaluation); ``final``, the last evaluation's success; and, when ``stl_sac`` runs of the task set
are among the inputs, ``vs_stl``, final success minus the mean final success of the single-task
runs (negative: the task lags behind its single-task result).

Statistics: Spearman's rho between a predictor and an outcome across the tasks of one run (none
where either is equal on every task), pooled as the mean over runs, with a 95% percentile
bootstrap interval over runs (runs drawn with replacement). The comparison the claim needs is
|pooled rho| of an imbalance predictor minus |pooled rho| of ``cos_update`` for the same loss, its
interval from the same resampled runs. The verdict is read off the four comparisons fixed in
advance (outcome ``auc``, window ``train``, critic and actor, norm and projection share against
cosine); it says "no verdict" unless the intervals are off 0 and agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtrl.report_shared import BOOTSTRAP_SEED, Run, group_colors, plural, shorten, table, write_csv

LOSSES = ("critic", "actor")
PREDICTORS = ("norm_share", "proj_share", "cos_update")
IMBALANCE = ("norm_share", "proj_share")
CONFLICT = "cos_update"
WINDOWS = ("train", "last3")
NAMES = {
    "norm_share": "norm share",
    "proj_share": "projection share",
    "cos_update": "cos with update",
    "auc": "success AUC",
    "final": "final success",
    "vs_stl": "final success - STL",
    "train": "training",
    "last3": "last third",
}
PRIMARY = ("auc", "train")


def _is_stl(run: Run) -> bool:
    return run.summary.get("method") == "stl_sac" or run.summary.get("agent") == "stl_sac"


def read_update_stats(run_dir: Path, tasks: list[str]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """{"<loss>/<predictor>": (steps [n], values [n, tasks])} from a run's TensorBoard events, and
    notes on what was derived from older tags."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    notes: list[str] = []
    if not (run_dir / "tb").is_dir():
        return series, notes
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags().get("scalars", []))

    def per_task(prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
        if not all(f"{prefix}/{t}" in tags for t in tasks):
            return None
        by_task = [{e.step: e.value for e in acc.Scalars(f"{prefix}/{t}")} for t in tasks]
        steps = np.array(sorted(set.intersection(*(set(b) for b in by_task))), dtype=np.int64)
        return steps, np.array([[b[s] for b in by_task] for s in steps], dtype=float).reshape(len(steps), len(tasks))

    for loss in LOSSES:
        share = per_task(f"grad/{loss}/norm_share")
        if share is None and (norms := per_task(f"grad/{loss}/norm")) is not None:
            steps, n = norms
            share = steps, n / np.maximum(n.sum(axis=1, keepdims=True), 1e-12)
            notes.append(f"{loss} norm share from grad/{loss}/norm")
        if share is not None:
            series[f"{loss}/norm_share"] = share
        if (proj := per_task(f"grad/{loss}/proj")) is not None:
            steps, p = proj
            series[f"{loss}/proj_share"] = steps, p / np.maximum(np.abs(p).sum(axis=1, keepdims=True), 1e-12)
        if (cos := per_task(f"grad/{loss}/cos_update")) is not None:
            series[f"{loss}/cos_update"] = cos
    return series, notes


def success_auc(evals: list[dict], tasks: list[str]) -> np.ndarray:
    """Per task, the area under the success curve over the evaluated steps / their span."""
    steps = np.array([e["step"] for e in evals], dtype=float)
    success = np.array([[e["success"][t] for t in tasks] for e in evals], dtype=float)
    if len(steps) == 1:
        return success[0]
    return np.trapezoid(success, steps, axis=0) / (steps[-1] - steps[0])


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rho (average ranks for ties); None when x or y is equal on every task."""
    from scipy.stats import rankdata

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def bootstrap_indices(n: int, reps: int) -> np.ndarray:
    """[reps, n] run indices drawn with replacement (seeded: a report is reproducible)."""
    return np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, (reps, n))


def _interval(stats: np.ndarray) -> list[float]:
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return [float(lo), float(hi)]


def pooled(rhos: list[float | None], reps: int) -> dict:
    """Mean of the within-run rhos and its bootstrap CI over runs (None with fewer than 2 runs)."""
    r = np.array([x for x in rhos if x is not None], dtype=float)
    if len(r) == 0:
        return {"value": None, "ci": None, "runs": 0}
    ci = _interval(r[bootstrap_indices(len(r), reps)].mean(axis=1)) if len(r) >= 2 else None
    return {"value": float(r.mean()), "ci": ci, "runs": len(r)}


def abs_difference(a: list[float | None], b: list[float | None], reps: int) -> dict:
    """|pooled rho_a| - |pooled rho_b| over the runs where both exist, resampling runs jointly."""
    pairs = np.array(
        [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None], dtype=float
    ).reshape(-1, 2)
    if len(pairs) == 0:
        return {"value": None, "ci": None, "runs": 0}
    value = float(abs(pairs[:, 0].mean()) - abs(pairs[:, 1].mean()))
    if len(pairs) < 2:
        return {"value": value, "ci": None, "runs": 1}
    means = pairs[bootstrap_indices(len(pairs), reps)].mean(axis=1)  # [reps, 2]
    return {"value": value, "ci": _interval(np.abs(means[:, 0]) - np.abs(means[:, 1])), "runs": len(pairs)}


@dataclass
class RunStats:
    """One multi-task run's per-task outcomes and predictors."""

    run: str
    method: str
    outcomes: dict[str, np.ndarray]  # outcome -> [tasks]
    predictors: dict[tuple[str, str], np.ndarray | None]  # (loss/predictor, window) -> [tasks]


def build_imbalance(runs: list[Run], tasks: list[str], reps: int) -> dict:
    """Every number of the section: per run and task rows, correlations, comparisons, verdict."""
    stl = [r for r in runs if _is_stl(r)]
    mt = sorted((r for r in runs if not _is_stl(r)), key=lambda r: (r.label, r.summary.get("seed", 0), str(r.path)))
    stl_final = np.mean([[r.summary["final_success"][t] for t in tasks] for r in stl], axis=0) if stl else None
    outcomes = ["auc", "final", *(["vs_stl"] if stl else [])]
    keys = [f"{loss}/{p}" for loss in LOSSES for p in PREDICTORS]
    rows: list[dict] = []
    per_run: list[RunStats] = []
    missing: dict[str, list[str]] = {}
    derived: list[str] = []
    for r in mt:
        series, notes = read_update_stats(r.path, tasks)
        derived += [f"{r.path}: {n}" for n in notes]
        final = np.array([r.summary["final_success"][t] for t in tasks], dtype=float)
        out = {"final": final, "auc": success_auc(r.evals, tasks) if r.evals else final}
        if stl_final is not None:
            out["vs_stl"] = final - stl_final
        pred: dict[tuple[str, str], np.ndarray | None] = {}
        for key in keys:
            if key not in series:
                missing.setdefault(key, []).append(str(r.path))
                continue
            steps, values = series[key]
            late = steps >= (2 / 3) * r.summary["env_steps"]
            pred[(key, "train")] = values.mean(axis=0)
            pred[(key, "last3")] = values[late].mean(axis=0) if late.any() else None
        per_run.append(RunStats(str(r.path), r.label or r.summary.get("method", r.summary["balancer"]), out, pred))
        for i, t in enumerate(tasks):
            row = {"run": str(r.path), "method": per_run[-1].method, "seed": r.summary.get("seed"), "task": t}
            row.update({o: float(out[o][i]) for o in outcomes})
            for key in keys:
                for w in WINDOWS:
                    v = pred.get((key, w))
                    row[f"{key.replace('/', '_')}{'' if w == 'train' else '_last3'}"] = (
                        None if v is None else float(v[i])
                    )
            rows.append(row)

    def rhos(key: str, window: str, outcome: str) -> list[float | None]:
        return [
            None if (p := d.predictors.get((key, window))) is None else spearman(p, d.outcomes[outcome])
            for d in per_run
        ]

    correlations: dict[str, dict] = {}
    for o in outcomes:
        for w in WINDOWS:
            for key in keys:
                within = rhos(key, w, o)
                correlations[f"{key}|{w}|{o}"] = {**pooled(within, reps), "per_run": within}
    comparisons: dict[str, dict] = {}
    for o in outcomes:
        for w in WINDOWS:
            for loss in LOSSES:
                for p in IMBALANCE:
                    comparisons[f"{loss}/{p} - {loss}/{CONFLICT}|{w}|{o}"] = abs_difference(
                        rhos(f"{loss}/{p}", w, o), rhos(f"{loss}/{CONFLICT}", w, o), reps
                    )
    flat_outcome = {o: int(sum(np.ptp(d.outcomes[o]) == 0 for d in per_run)) for o in outcomes}
    data: dict = {
        "tasks": tasks,
        "reps": reps,
        "bootstrap_seed": BOOTSTRAP_SEED,
        "outcomes": outcomes,
        "runs": [d.run for d in per_run],
        "methods": [d.method for d in per_run],
        "stl_runs": [str(r.path) for r in stl],
        "rows": rows,
        "correlations": correlations,
        "comparisons": comparisons,
        "missing": missing,
        "derived": derived,
        "outcome_equal_on_every_task": flat_outcome,
    }
    data["tasks_above_zero"] = [int((d.outcomes[PRIMARY[0]] > 0).sum()) for d in per_run]
    data["verdict"] = verdict(data)
    return data


def _ci(e: dict, digits: int = 2) -> str:
    if e["value"] is None:
        return ""
    return f"{e['value']:+.{digits}f}" + (f" [{e['ci'][0]:+.{digits}f}, {e['ci'][1]:+.{digits}f}]" if e["ci"] else "")


def _label(key: str) -> str:
    loss, p = key.split("/")
    return f"{loss} {NAMES[p]}"


def verdict(data: dict) -> str:
    """One sentence from the four primary comparisons (outcome auc, window train)."""
    o, w = PRIMARY
    primary = {k.split("|")[0]: v for k, v in data["comparisons"].items() if k.endswith(f"|{w}|{o}")}
    with_ci = {k: v for k, v in primary.items() if v["ci"] is not None}
    if not with_ci:
        n = max((v["runs"] for v in primary.values()), default=0)
        return (
            f"No verdict: an interval needs correlations from at least 2 runs with both an imbalance and the "
            f"conflict predictor and a {NAMES[o]} that differs between tasks; "
            f"there {'is' if n == 1 else 'are'} {n}."
        )
    up = [k for k, v in with_ci.items() if v["ci"][0] > 0]
    down = [k for k, v in with_ci.items() if v["ci"][1] < 0]

    def shown(ks: list[str]) -> str:
        return "; ".join(f"{_label(k.split(' - ')[0])} vs {_label(k.split(' - ')[1])}: {_ci(with_ci[k])}" for k in ks)

    n = max(v["runs"] for v in with_ci.values())  # at least 2: an interval needs 2 runs
    if up and not down:
        return (
            f"Imbalance explains the lagging tasks better than conflict here ({n} runs; difference of |rho| with "
            f"{NAMES[o]}, 95% CI above 0 for {shown(up)})."
        )
    if down and not up:
        return (
            f"Conflict explains the lagging tasks better than imbalance here ({n} runs; difference of |rho| with "
            f"{NAMES[o]}, 95% CI below 0 for {shown(down)})."
        )
    if up and down:
        return f"No verdict: the comparisons disagree ({n} runs; above 0: {shown(up)}; below 0: {shown(down)})."
    return (
        f"No verdict: every 95% interval of |rho(imbalance)| - |rho(conflict)| with {NAMES[o]} contains 0 ({n} runs)."
    )


def plot_imbalance(data: dict, path: Path) -> dict[str, int]:
    """Outcome (primary) against mean norm share, one point per run and task, coloured by method,
    one panel per loss; and the pooled correlations with their intervals. Returns the number of
    points drawn in each scatter panel."""
    import matplotlib.pyplot as plt

    o, w = PRIMARY
    methods = list(dict.fromkeys(data["methods"]))
    colors = group_colors(methods)
    # long group labels ("ew (adam_eps=..., ...)") as report.py shows them: "ew (A)", with a key
    short = shorten({m: m.split(" (")[0] for m in methods})
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), dpi=100, gridspec_kw={"width_ratios": [1, 1, 1.2]})
    drawn = {}
    for ax, loss in zip(axes, LOSSES, strict=False):  # the third panel, the correlations: below
        col = f"{loss}_norm_share"
        n = 0
        for m in methods:
            pts = [(r[col], r[o]) for r in data["rows"] if r["method"] == m and r[col] is not None]
            if pts:
                shares, successes = zip(*pts, strict=True)
                ax.scatter(shares, successes, s=22, alpha=0.75, color=colors[m], label=short[m], edgecolors="none")
                n += len(pts)
        drawn[loss] = n
        k = len(data["tasks"])
        ax.axvline(1 / k, color="grey", lw=0.8, ls="--", label=f"equal share 1/{k}")
        ax.set_xlabel(f"{loss} norm share |g_t| / sum |g_j| (mean over training)")
        ax.set_ylabel(f"{NAMES[o]} of the task")
        ax.set_ylim(-0.04, 1.04)
        ax.set_title(f"{loss}: one point per run and task" + ("" if n else " (not logged)"), fontsize=10)
        ax.grid(alpha=0.3)
        if n:  # below the panel: the points near success 1 are the interesting ones
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    ax = axes[2]
    labels, markers = [], {"auc": "o", "final": "s", "vs_stl": "^"}
    keys = [f"{loss}/{p}" for loss in LOSSES for p in PREDICTORS]
    for j, outcome in enumerate(data["outcomes"]):
        for i, key in enumerate(keys):
            e = data["correlations"][f"{key}|{w}|{outcome}"]
            if e["value"] is None:
                continue
            y = i + (j - (len(data["outcomes"]) - 1) / 2) * 0.22
            err = None if e["ci"] is None else [[e["value"] - e["ci"][0]], [e["ci"][1] - e["value"]]]
            ax.errorbar(
                e["value"],
                y,
                xerr=err,
                fmt=markers[outcome],
                color=f"C{j}",
                ms=5,
                capsize=2,
                label=NAMES[outcome] if outcome not in labels else None,
            )
            labels.append(outcome)
    for i, key in enumerate(keys):
        if all(data["correlations"][f"{key}|{w}|{x}"]["value"] is None for x in data["outcomes"]):
            ax.text(-1.0, i, "not logged, or no run with differing outcomes", fontsize=7, color="grey", va="center")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(keys)), [_label(k) for k in keys], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-1.05, 1.05)
    # an interval needs 2 runs: promise one only where an error bar is drawn
    cis = any(e["ci"] is not None for k, e in data["correlations"].items() if k.split("|")[1] == w)
    ax.set_xlabel("Spearman rho across tasks, mean over runs" + (", 95% CI" if cis else ", no CI (under 2 runs)"))
    ax.set_title("Correlation with the task's outcome", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if labels:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    label_key = [f"{short[m]}: {m}" for m in methods if short[m] != m]
    if label_key:
        fig.text(0.01, -0.02, "\n".join(label_key), fontsize=7, family="monospace", va="top")
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return drawn


def write_imbalance(data: dict, out: Path) -> str:
    """imbalance.csv (run x task), imbalance.json (everything), imbalance.png; the markdown part."""
    rows = data["rows"]
    header = list(rows[0]) if rows else ["run", "method", "seed", "task", *data["outcomes"]]
    write_csv(out / "imbalance.csv", header, [["" if r[h] is None else r[h] for h in header] for r in rows])
    (out / "imbalance.json").write_text(json.dumps(data, indent=1) + "\n")
    logged = any(r.get(f"{loss}_norm_share") is not None for r in rows for loss in LOSSES)
    if logged:
        plot_imbalance(data, out / "imbalance.png")
    o, w = PRIMARY
    keys = [f"{loss}/{p}" for loss in LOSSES for p in PREDICTORS]
    md = [
        "## Imbalance or conflict: what predicts the lagging tasks?\n",
        (
            plural(len(data["runs"]), "multi-task run")
            + (
                f" ({plural(len(data['stl_runs']), 'single-task run')} "
                f"{'serves' if len(data['stl_runs']) == 1 else 'serve'} as the reference)"
                if data["stl_runs"]
                else ""
            )
            + ". Per run and task, from the "
            "TensorBoard statistics of the applied update d: *norm share* |g_t| / sum_j |g_j|; *projection share* "
            "proj_t / sum_j |proj_j| with proj_t = g_t.d/|d|; *cos with update* cos(g_t, d), each averaged over the "
            "logged steps of the whole run (*training*) or its last third. Outcomes: *success AUC* (area under the "
            "task's evaluation success curve / its span), *final success*"
            + (", *final success - STL* (minus the mean final success of the stl_sac runs)" if data["stl_runs"] else "")
            + f". rho: Spearman across the {plural(len(data['tasks']), 'task')} of a run, mean over runs, [95% "
            f"bootstrap CI over runs, {data['reps']} resamples]. Per run and task: `imbalance.csv`; all numbers: "
            "`imbalance.json`.\n"
        ),
        f"**Verdict.** {data['verdict']}\n",
    ]
    if logged:
        md.append("![imbalance](imbalance.png)\n")
    md += [
        "Rank correlation with the outcome (higher rho: a larger value goes with more success):\n",
        table(
            ["predictor", "window", *(NAMES[x] for x in data["outcomes"])],
            [
                [_label(k), NAMES[win], *(_ci(data["correlations"][f"{k}|{win}|{x}"]) for x in data["outcomes"])]
                for win in WINDOWS
                for k in keys
            ],
        ),
        "Imbalance against conflict: |rho| of the imbalance predictor minus |rho| of cos with update, same loss "
        f"(the verdict reads the *{NAMES[o]}*, *{NAMES[w]}* column; four comparisons, not corrected for "
        "multiplicity):\n",
        table(
            ["comparison", *(f"{NAMES[x]} ({NAMES[win]})" for x in data["outcomes"] for win in WINDOWS)],
            [
                [
                    f"{_label(f'{loss}/{p}')} - {_label(f'{loss}/{CONFLICT}')}",
                    *(
                        _ci(data["comparisons"][f"{loss}/{p} - {loss}/{CONFLICT}|{win}|{x}"])
                        for x in data["outcomes"]
                        for win in WINDOWS
                    ),
                ]
                for loss in LOSSES
                for p in IMBALANCE
            ],
        ),
    ]
    notes = []
    flat = {x: n for x, n in data["outcome_equal_on_every_task"].items() if n}
    if flat:
        notes.append(
            "runs whose outcome is equal on every task (no correlation): "
            + ", ".join(f"{NAMES[x]} {n}" for x, n in flat.items())
        )
    few = [n for n in data["tasks_above_zero"] if n <= 2]
    if few:
        notes.append(
            f"in {len(few)} of {plural(len(data['runs']), 'run')} at most 2 tasks have a {NAMES[o]} "
            "above 0 (per run: "
            f"{', '.join(map(str, data['tasks_above_zero']))}): such a run's rho only says where those tasks "
            "rank on the predictor"
        )
    for key, paths in data["missing"].items():
        loss, p = key.split("/")
        tag = {
            "norm_share": f"grad/{loss}/norm_share or grad/{loss}/norm",
            "proj_share": f"grad/{loss}/proj",
            "cos_update": f"grad/{loss}/cos_update",
        }[p]
        notes.append(
            f"{len(paths)} of {plural(len(data['runs']), 'run')} did not log `{tag}` (runs from before these "
            f"statistics, or without TensorBoard events): no {_label(key)} for " + ", ".join(f"`{x}`" for x in paths)
        )
    if data["derived"]:
        notes.append(
            f"norm share derived from the per-task norms in {plural(len(data['derived']), 'case')}: "
            + "; ".join(data["derived"])
        )
    if not logged:
        notes.append("no run logged per-task gradient statistics, so there is no figure")
    if notes:
        md += ["Notes:\n", "".join(f"- {n}\n" for n in notes)]
    return "\n".join(md)


def imbalance_section(runs: list[Run], tasks: list[str], out: Path, reps: int) -> str:
    """The report hook: writes imbalance.csv, imbalance.json, imbalance.png into ``out`` and
    returns the markdown part of report.md."""
    return write_imbalance(build_imbalance(runs, tasks, reps), out)
