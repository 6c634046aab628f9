"""``mtrl report``: from finished runs to tables and pictures, with honest uncertainty.

The score matrix of a method is runs x tasks: per-task success rates. Aggregates follow
rliable (Agarwal et al., 2021): the IQM is the mean of the middle 50% of all run-task scores
(``scipy.stats.trim_mean(scores, 0.25)`` on the flattened matrix), the mean is their mean, and
the 95% intervals are percentile intervals of a stratified bootstrap that resamples runs
independently within each task. "final" scores are the last evaluation's per-task success
(summary.json); "best" scores are the per-task success of the evaluation with the highest
mean success (eval.jsonl), so their row means are the runs' ``best_success_mean``, the number
the older MT10 papers report. Learning curves are the IQM over seeds of each run's mean success
over tasks, at every evaluation step that all runs of a method share. Probability of improvement
P(X > Y) is the Mann-Whitney statistic per task averaged over tasks; ties count one half, so P(X > Y) + P(Y > X) = 1.

The verdict names the pairs of groups whose 95% interval of P(X > Y) excludes 0.5, and compares
only groups of at least ``MIN_RUNS`` = 3 runs. The interval comes from the stratified bootstrap,
which resamples each group's runs within each task: with 1 run every resample is that run, so the
interval is a point and "excludes 0.5" whenever the scores differ at all; with 2 runs a task has
3 distinct resamples ({a, a}, {a, b}, {b, b}) and the bootstrap's spread of a mean is sqrt(1/2) =
0.71 of the usual standard error (it divides the variance by n, not n - 1). 3 runs, where the
"fewer than 3 runs" warning stops, give 10 resamples per task and sqrt(2/3) = 0.82: a floor, not
a guarantee. With fewer the report says "No verdict" and why.

Runs are grouped by ``summary["method"]`` (else the balancer label); runs of one method whose
configs differ in a hyperparameter (e.g. a swept ``balancer.kwargs.c``) become separate groups
named ``cagrad (c=0.5)``. The summary.json fields in ``SUMMARY_SETTINGS`` are settings too, with
the value they had before the field existed (``critic_loss``: runs without it summed the two
critics' losses). Seed, device, schedule and length keys never split a group, but the Groups
table names every setting whose value differs between groups, these included.

Two sections follow the tables, each in its own module: the static-weights grid against
``grad_norm_scaling`` (mtrl.static_grid, when the runs hold such a grid) and the imbalance
diagnosis (mtrl.imbalance).

rliable, pandas and matplotlib come with the ``analysis`` extra and are imported only here.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from mtrl.config import ConfigError, flatten_config
from mtrl.imbalance import imbalance_section
from mtrl.report_shared import (
    BOOTSTRAP_SEED,
    MIN_RUNS,
    RESAMPLES,
    WHY_MIN_RUNS,
    Run,
    group_colors,
    interval_estimates,
    method_of,
    plural,
    seeded,
    shorten,
    table,
    with_ci,
    write_csv,
)
from mtrl.static_grid import static_grid_section

# Config keys that say how or how long a run ran, not what was trained: they never split a group.
_NOT_A_METHOD = {
    "seed",
    "device",
    "torch_threads",
    "vector_strategy",
    "total_env_steps",
    "eval_every",
    "checkpoint_every",
    "keep_checkpoints",
    "log_every",
    "grad_stats_every",
    "max_nonfinite_in_row",
    "balancer.critic",
    "balancer.actor",
}
GRAD_TAGS = ["grad/critic/conflict_frac", "grad/actor/conflict_frac", "grad/critic/norm_ratio", "grad/actor/norm_ratio"]
# summary.json fields that are settings (they split groups like a hyperparameter), with the value of
# runs made before the field existed, by agent: MT-SAC's critic loss was the sum over the two
# critics until it became the reference's mean; stable-baselines3's (stl_sac) was always the mean.
SUMMARY_SETTINGS = {"critic_loss": {"mtsac": "sum", "stl_sac": "mean"}}
# Keys that say which method a run is: the group label names it, so they are never listed as a
# difference between groups (balancer hyperparameters still split the groups of one method).
_METHOD_KEYS = ("agent", "sac.multi_head", "balancer.")


def settings(run: Run) -> dict:
    """What a run was trained with: its flattened config and the settings its summary.json records."""
    agent = run.summary.get("agent", run.config.get("agent", "mtsac"))
    return {**run.config, **{k: run.summary.get(k, before.get(agent)) for k, before in SUMMARY_SETTINGS.items()}}


def value_text(value) -> str:
    """A setting's value as labels show it: lists and mappings in YAML's flow style
    (``[1, 1, 4]``, ``{reach-v3: 4}``), everything else as ``str``."""
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
    return str(value)


def _short_names(keys: list[str]) -> dict[str, str]:
    """Each key by its last part (``c`` for ``balancer.kwargs.c``), or whole where two would clash."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last, strict=True)}


def find_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Run directories (holding summary.json) at or anywhere below each path."""
    from mtrl.logger import read_eval_log

    found: dict[Path, None] = {}
    for p in map(Path, paths):
        if not p.exists():
            raise ConfigError(f"{p} does not exist")
        if (p / "summary.json").is_file():
            found[p.resolve()] = None
        else:
            for s in sorted(p.rglob("summary.json")):
                found[s.parent.resolve()] = None
    if not found:
        raise ConfigError(f"no finished runs (a directory with summary.json) in or below {', '.join(map(str, paths))}")
    runs = []
    for path in found:
        try:
            summary = json.loads((path / "summary.json").read_text())
            evals = read_eval_log(path)
            cfg_file = path / "config.yaml"
            config = flatten_config(yaml.safe_load(cfg_file.read_text()) or {}) if cfg_file.is_file() else {}
            missing = [k for k in ("balancer", "final_success", "env_steps") if k not in summary]
            if missing:
                raise KeyError(", ".join(missing))
        except (ValueError, KeyError, yaml.YAMLError) as e:
            raise ConfigError(f"{path} is not a readable run ({type(e).__name__}: {e})") from None
        runs.append(Run(path, summary, evals, config))
    return runs


def label_runs(runs: list[Run]) -> None:
    """Set each run's group label: its method, plus the hyperparameters that vary within it."""
    by_method: dict[str, list[Run]] = {}
    for r in runs:
        by_method.setdefault(method_of(r.summary), []).append(r)
    for method, group in by_method.items():
        keys = sorted({k for r in group for k in settings(r)} - _NOT_A_METHOD)
        varying = [k for k in keys if len({repr(settings(r).get(k)) for r in group}) > 1]
        short = _short_names(varying)
        for r in group:
            r.settings = ", ".join(f"{short[k]}={value_text(settings(r).get(k))}" for k in varying)
            r.label = method + (f" ({r.settings})" if varying else "")
            r.split_by = varying


_FROM_SUMMARY = ("env_steps", *SUMMARY_SETTINGS)  # known for every run, with or without config.yaml


def group_differences(groups: dict[str, list[Run]]) -> dict[str, dict[str, str]]:
    """Per group, {setting: value} for the settings in its label and every other setting whose value
    is not the same in all groups (the keys that never split a group included; method keys only
    through the label). A value ``3000/300000``: the group's runs differ in it. Runs without
    config.yaml tell only the summary's settings."""

    def values(group: list[Run], key: str) -> str:  # "" when no run of the group knows the key
        found = {
            repr(v): v
            for r in group
            if r.config or key in _FROM_SUMMARY
            for v in [r.summary["env_steps"] if key == "env_steps" else settings(r).get(key)]
        }

        def number(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        ordered = sorted(found.values(), key=lambda v: (0, v, "") if number(v) else (1, 0, str(v)))
        return "/".join(map(value_text, ordered))

    keys = sorted({k for g in groups.values() for r in g for k in [*settings(r), "env_steps"]} - {"seed"})
    across = [
        k
        for k in keys
        if not k.startswith(_METHOD_KEYS) and len({v for g in groups.values() if (v := values(g, k))}) > 1
    ]
    shown = {
        label: [k for k in keys if k in g[0].split_by or (k in across and values(g, k))] for label, g in groups.items()
    }
    short = _short_names(sorted({k for ks in shown.values() for k in ks}))
    return {label: {short[k]: values(groups[label], k) for k in ks} for label, ks in shown.items()}


# What makes scores comparable at all: the same tasks, the same episodes, the same evaluation.
PROTOCOL_KEYS = ("max_episode_steps", "num_goals", "eval_episodes")


def _protocol(run: Run) -> dict:
    return {
        "taskset": run.config.get("taskset", run.summary.get("taskset")),
        "tasks": len(run.summary["final_success"]),
        **{k: run.config.get(k) for k in PROTOCOL_KEYS},
    }


def protocol_difference(runs: list[Run]) -> str | None:
    """How the runs' task sets or episode protocols differ ("max_episode_steps=50 (1 run, e.g.
    PATH); max_episode_steps=500 (...)"), or None when they are all the same."""
    found: dict[str, list[Run]] = {}
    for r in runs:
        found.setdefault(json.dumps(_protocol(r)), []).append(r)
    if len(found) < 2:
        return None
    protocols = [json.loads(p) for p in found]
    differ = [k for k in protocols[0] if len({repr(p[k]) for p in protocols}) > 1]
    return "; ".join(
        " ".join(f"{k}={p[k]}" for k in differ) + f" ({plural(len(rs), 'run')}, e.g. {rs[0].path})"
        for p, rs in zip(protocols, found.values(), strict=True)
    )


def check_protocols(runs: list[Run], allow_mixed: bool) -> None:
    """Refuse (ConfigError, one line) runs of different task sets or episode protocols, unless
    ``allow_mixed`` (then build warns); runs of different tasks never share a report (build says so)."""
    if (differ := protocol_difference(runs)) and not allow_mixed:
        raise ConfigError(
            f"these runs differ in task set or episode protocol: {differ}; report them "
            "separately, or pass --allow-mixed to put them side by side"
        )


def _best_eval(run: Run) -> dict | None:
    return max(run.evals, key=lambda e: e["success_mean"]) if run.evals else None  # max keeps the first of ties


def score_matrices(runs: list[Run], tasks: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """final and best scores, each [runs, tasks]."""
    final = np.array([[r.summary["final_success"][t] for t in tasks] for r in runs], dtype=float)
    best = np.array(
        [[(_best_eval(r) or {"success": r.summary["final_success"]})["success"][t] for t in tasks] for r in runs],
        dtype=float,
    )
    return final, best


def curve_scores(runs: list[Run], tasks: list[str]) -> tuple[list[int], np.ndarray]:
    """The evaluation steps all runs share and each run's mean success over the tasks there,
    as [runs, 1, steps]: the curve is an IQM over seeds of ``success_mean``. (An IQM over run x
    task scores, as in the tables, sits at 0 for most of an MT10 run, where most tasks are
    still at 0 and the middle half of the scores is all zeros.)"""
    steps = sorted(set.intersection(*({e["step"] for e in r.evals} for r in runs)))
    at = [{e["step"]: e for e in r.evals} for r in runs]
    means = np.array([[np.mean([a[s]["success"][t] for t in tasks]) for s in steps] for a in at], dtype=float)
    return steps, means.reshape(len(runs), 1, len(steps))


def _iqm_mean(scores: np.ndarray) -> np.ndarray:
    """[runs, tasks, k] -> [IQM_1, mean_1, ..., IQM_k, mean_k] over runs and tasks."""
    from scipy.stats import trim_mean

    flat = scores.reshape(-1, scores.shape[-1])
    return np.stack([trim_mean(flat, 0.25, axis=0), flat.mean(axis=0)], axis=1).reshape(-1)


def _iqm_per_step(scores: np.ndarray) -> np.ndarray:
    """[runs, tasks, steps] -> IQM over runs (and tasks) at each step."""
    from scipy.stats import trim_mean

    return trim_mean(scores.reshape(-1, scores.shape[-1]), 0.25, axis=0)


def aggregates(final: np.ndarray, best: np.ndarray, reps: int) -> dict:
    """IQM and mean of final and best scores with their CIs (one bootstrap for all four)."""
    point, ci = interval_estimates(np.stack([final, best], axis=-1), _iqm_mean, reps)
    names = ["final_iqm", "final_mean", "best_iqm", "best_mean"]
    return {n: {"value": float(point[i]), "ci": [float(ci[0, i]), float(ci[1, i])]} for i, n in enumerate(names)}


def probability_of_improvement(x: np.ndarray, y: np.ndarray, reps: int) -> dict:
    """P(X > Y) on [runs, tasks] scores; a CI when both have as many runs (the bootstrap pairs them)."""
    from rliable import library as rly
    from rliable import metrics

    p = float(metrics.probability_of_improvement(x, y))
    if x.shape[0] != y.shape[0]:
        return {"value": p, "ci": None}
    _, ci = seeded(rly.get_interval_estimates, {"xy": [x, y]}, metrics.probability_of_improvement, reps=reps)
    lo, hi = np.ravel(ci["xy"])
    return {"value": p, "ci": [float(lo), float(hi)]}


def grad_stats(run_dir: Path) -> dict[str, float | None]:
    """Mean of each gradient-statistics scalar over a run's TensorBoard events (None if absent)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = run_dir / "tb"
    if not tb.is_dir():
        return dict.fromkeys(GRAD_TAGS)
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags().get("scalars", []))
    return {t: float(np.mean([e.value for e in acc.Scalars(t)])) if t in tags else None for t in GRAD_TAGS}


def build(runs: list[Run], reps: int) -> dict:
    """Every number of the report (what report.json holds)."""
    tasks = list(runs[0].summary["final_success"])
    for r in runs:
        if set(r.summary["final_success"]) != set(tasks):
            raise ConfigError(f"{r.path} has other tasks than {runs[0].path}; report runs of one task set together")
    label_runs(runs)
    groups: dict[str, list[Run]] = {}
    for r in sorted(runs, key=lambda r: (r.label, r.summary.get("seed", 0), str(r.path))):
        groups.setdefault(r.label, []).append(r)
    methods, scores = {}, {}
    differs = group_differences(groups)
    for label, group in groups.items():
        final, best = score_matrices(group, tasks)
        scores[label] = final
        steps, curve = curve_scores(group, tasks)
        if steps:
            point, ci = interval_estimates(curve, _iqm_per_step, reps)
        grads = [grad_stats(r.path) for r in group]
        methods[label] = {
            "settings": group[0].settings,
            "differs": differs[label],  # what the Groups table shows: every setting that differs between groups
            "without_config": sum(not r.config for r in group),
            "runs": [str(r.path) for r in group],
            "seeds": [r.summary.get("seed") for r in group],
            "env_steps": sorted({r.summary["env_steps"] for r in group}),
            **aggregates(final, best, reps),
            "per_task_final": dict(zip(tasks, final.mean(axis=0).tolist(), strict=True)),
            "curve": {"steps": steps, "iqm": point.tolist(), "ci_low": ci[0].tolist(), "ci_high": ci[1].tolist()}
            if steps
            else {"steps": [], "iqm": [], "ci_low": [], "ci_high": []},
            "grad": {
                t: (float(np.mean(v)) if (v := [x for g in grads if (x := g[t]) is not None]) else None)
                for t in GRAD_TAGS
            },
        }
    labels = list(groups)
    poi = {}
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            p = probability_of_improvement(scores[a], scores[b], reps)
            poi[f"{a} > {b}"] = p
            flip = None if p["ci"] is None else [1 - p["ci"][1], 1 - p["ci"][0]]
            poi[f"{b} > {a}"] = {"value": 1 - p["value"], "ci": flip}
    tau = np.linspace(0.0, 1.0, 101)
    profiles = {}
    for label, s in scores.items():
        # score distribution: fraction of run-task scores above tau, with its bootstrap CI
        point, ci = interval_estimates(s, lambda x: (x.reshape(-1, 1) > tau).mean(axis=0), reps)
        profiles[label] = {
            "tau": tau.tolist(),
            "fraction": point.tolist(),
            "ci_low": ci[0].tolist(),
            "ci_high": ci[1].tolist(),
        }
    for label, short in short_labels(groups).items():
        methods[label]["short"] = short
    data = {
        "tasks": tasks,
        "reps": reps,
        "bootstrap_seed": BOOTSTRAP_SEED,
        "methods": methods,
        "probability_of_improvement": poi,
        "performance_profile": profiles,
        "protocols_differ": protocol_difference(runs),
    }
    data["warnings"] = warnings(data)
    data["verdict"] = verdict(data)
    return data


def short_labels(groups: dict[str, list[Run]]) -> dict[str, str]:
    """Label -> what plots and tables show: the label itself when short, else its method and a
    letter per group of that method (``ew (A)``, ``ew (B)``); report.md's key spells them out."""
    return shorten({label: method_of(group[0].summary) for label, group in groups.items()})


def verdict(data: dict) -> str:
    """One sentence: the pairs of groups of at least MIN_RUNS runs whose probability of improvement
    has a 95% CI that excludes 0.5, or "No verdict" saying why (too few runs: WHY_MIN_RUNS; every
    interval holds 0.5: "at this budget")."""
    short = {m: d["short"] for m, d in data["methods"].items()}
    labels = list(short)
    if len(labels) < 2:
        return "One group only: nothing to compare."
    runs = {m: len(d["runs"]) for m, d in data["methods"].items()}
    counts = sorted(set(runs.values()))
    budget = plural(counts[0], "run") if len(counts) == 1 else f"{'/'.join(map(str, counts))} runs"
    budget += " per group"
    few = [short[m] for m in labels if runs[m] < MIN_RUNS]
    pairs = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :] if min(runs[a], runs[b]) >= MIN_RUNS]
    if not pairs:
        named = " and ".join([", ".join(few[:-1]), few[-1]] if len(few) > 1 else few)
        return (
            f"No verdict ({budget}): a verdict needs at least {MIN_RUNS} runs in each group, and "
            f"{named} {'has' if len(few) == 1 else 'have'} fewer. {WHY_MIN_RUNS}"
        )
    poi = data["probability_of_improvement"]
    wins, open_pairs, no_ci = [], [], []
    for a, b in pairs:
        p = poi[f"{a} > {b}"]
        if p["ci"] is None:
            no_ci.append(f"{short[a]} / {short[b]}")
        elif p["ci"][0] > 0.5 or p["ci"][1] < 0.5:
            x, y = (a, b) if p["ci"][0] > 0.5 else (b, a)
            wins.append(f"{short[x]} beats {short[y]} with P({short[x]} > {short[y]}) = {with_ci(poi[f'{x} > {y}'])}")
        else:
            open_pairs.append(f"P({short[a]} > {short[b]}) = {with_ci(p)}")
    if wins:
        sentence = (
            f"Verdict ({budget}; the pairs whose 95% CI of the probability of improvement, from "
            f"{RESAMPLES}, excludes 0.5): {'; '.join(wins)}."
        )
        if open_pairs:
            sentence += f" No verdict where the interval holds 0.5: {'; '.join(open_pairs)}."
        steps = {s for d in data["methods"].values() for s in d["env_steps"]}
        if len(steps) > 1 or data.get("protocols_differ"):
            sentence += (
                " The groups differ in run length or episode protocol (see the warnings): this ranks these runs."
            )
    elif open_pairs:
        sentence = (
            f"No verdict at this budget ({budget}): every 95% interval of the probability of improvement "
            f"(from {RESAMPLES}) holds 0.5 ({'; '.join(open_pairs)})."
        )
    else:
        sentence = f"No verdict at this budget ({budget})."
    if no_ci:
        sentence += f" No interval, so no verdict, for {', '.join(no_ci)}: their groups have different numbers of runs."
    if few:
        sentence += (
            f" No verdict for {', '.join(few)}: fewer than {MIN_RUNS} runs, too few for a bootstrap over "
            "runs to mean something."
        )
    return sentence


def warnings(data: dict) -> list[str]:
    """What makes the numbers less than they seem: few runs, different lengths, mixed protocols
    (printed on stderr and listed in report.md)."""
    out = [
        f"{m} has {plural(len(d['runs']), 'run')}; intervals from fewer than {MIN_RUNS} runs mean little, "
        "and no verdict is drawn for it"
        for m, d in data["methods"].items()
        if len(d["runs"]) < MIN_RUNS
    ]
    steps = {m: d["env_steps"] for m, d in data["methods"].items()}
    if len({s for v in steps.values() for s in v}) > 1:
        shown = ", ".join(f"{m}: {'/'.join(map(str, v))}" for m, v in steps.items())
        out.append(f"runs ended at different env_steps ({shown}); their final scores are not comparable")
    if data.get("protocols_differ"):
        out.append(
            f"these runs differ in task set or episode protocol ({data['protocols_differ']}); "
            "--allow-mixed puts them side by side, but their scores are not comparable"
        )
    return out


# --- output ---------------------------------------------------------------------------------------
def fmt_number(x: float | None, digits: int = 2) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


_STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1, 1, 1)), "v"), ((0, (1, 3)), "P")]


def _style(i: int) -> dict:
    ls, marker = _STYLES[i % len(_STYLES)]
    return {"linestyle": ls, "marker": marker, "alpha": 0.85, "lw": 1.6}


def _steps_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    from mtrl.progress import format_steps

    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: format_steps(x)))


def _key_note(fig, data: dict) -> float:
    """Below the axes, what each shortened label stands for; returns the height it needs (inches)."""
    import textwrap

    rows = [
        line
        for m, d in data["methods"].items()
        if d["short"] != m
        for line in textwrap.wrap(f"{d['short']}: {m}", width=int(fig.get_figwidth() * 17), subsequent_indent="    ")
    ]
    if not rows:
        return 0.0
    fig.text(0.01, 0.01, "\n".join(rows), fontsize=7, va="bottom", ha="left", family="monospace")
    return 0.16 * len(rows) + 0.1


def _finish(fig, path: Path, note: float) -> None:
    """Tight layout, leaving ``note`` inches at the bottom for the key."""
    height = fig.get_figheight()
    fig.set_figheight(height + note)
    fig.tight_layout(rect=(0, note / (height + note), 1, 1))
    fig.savefig(path)


def _banded(d: dict) -> bool:
    """Whether a group gets a CI band: one from fewer than MIN_RUNS runs is a line or close to one."""
    return len(d["runs"]) >= MIN_RUNS


def _band_title(title: str, data: dict) -> str:
    """The title, promising 95% CI bands only for the groups that have them."""
    banded = sum(map(_banded, data["methods"].values()))
    if banded == len(data["methods"]):
        return f"{title}, 95% CI"
    if banded == 0:
        return f"{title}, no CI band (under {MIN_RUNS} runs)"
    return f"{title}, 95% CI for groups of {MIN_RUNS}+ runs"


def _drawn(ax) -> dict:
    """What a plot shows, for its caller to check: the title, the legend, the bands."""
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    return {"title": ax.get_title(), "labels": labels, "bands": len(ax.collections)}


def plot_curves(data: dict, path: Path) -> dict:
    import matplotlib.pyplot as plt

    colors = group_colors(list(data["methods"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for i, (m, d) in enumerate(data["methods"].items()):
        c = d["curve"]
        if c["steps"]:
            label = f"{d['short']} ({plural(len(d['runs']), 'run')}{'' if _banded(d) else ', no band'})"
            ax.plot(c["steps"], c["iqm"], ms=4, color=colors[m], label=label, **_style(i))
            if _banded(d):
                ax.fill_between(c["steps"], c["ci_low"], c["ci_high"], color=colors[m], alpha=0.15, lw=0)
    ax.set_xlabel("env steps (transitions over all tasks)")
    ax.set_ylabel("IQM success rate")
    ax.set_ylim(-0.02, 1.02)
    _steps_axis(ax)
    ax.set_title(_band_title("Mean evaluation success over tasks: IQM over seeds", data), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.8)
    _finish(fig, path, _key_note(fig, data))
    drawn = _drawn(ax)
    plt.close(fig)
    return drawn


def plot_profile(data: dict, path: Path) -> dict:
    import matplotlib.pyplot as plt

    colors = group_colors(list(data["methods"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for i, (m, p) in enumerate(data["performance_profile"].items()):
        d = data["methods"][m]
        style = {**_style(i), "marker": None}
        # "(no band)" only beside banded groups: where none has one, the title says so
        label = d["short"] + ("" if _banded(d) or not any(map(_banded, data["methods"].values())) else " (no band)")
        ax.step(p["tau"], p["fraction"], where="post", color=colors[m], label=label, **style)
        if _banded(d):
            ax.fill_between(p["tau"], p["ci_low"], p["ci_high"], step="post", color=colors[m], alpha=0.15, lw=0)
    ax.set_xlabel(r"final success rate $\tau$")
    ax.set_ylabel(r"fraction of runs x tasks with success > $\tau$")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(_band_title("Performance profile (final)", data), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    _finish(fig, path, _key_note(fig, data))
    drawn = _drawn(ax)
    plt.close(fig)
    return drawn


def plot_aggregates(data: dict, path: Path) -> None:
    """Point estimates and CIs of the four aggregates, one panel each (rliable's interval plot),
    with the point estimate written beside each interval."""
    import matplotlib.pyplot as plt

    labels = list(data["methods"])
    colors = group_colors(labels)
    names = [
        ("final_iqm", "final IQM"),
        ("final_mean", "final mean"),
        ("best_iqm", "best IQM"),
        ("best_mean", "best mean"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(10, 1.2 + 0.45 * len(labels)), dpi=100, sharey=True)
    for ax, (key, title) in zip(axes, names, strict=True):
        for i, m in enumerate(labels):
            e = data["methods"][m][key]
            ax.barh(i, max(e["ci"][1] - e["ci"][0], 0.004), left=e["ci"][0], height=0.6, color=colors[m], alpha=0.6)
            ax.plot([e["value"]] * 2, [i - 0.3, i + 0.3], color="k", lw=1.5)
            right = e["ci"][1] < 0.75  # the number goes right of the interval, or left of it near 1
            ax.text(
                e["ci"][1] + 0.03 if right else e["ci"][0] - 0.03,
                i,
                f"{e['value']:.2f}",
                va="center",
                ha="left" if right else "right",
                fontsize=8,
            )
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("success rate", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), [data["methods"][m]["short"] for m in labels], fontsize=8)
    axes[0].invert_yaxis()
    _finish(fig, path, _key_note(fig, data))
    plt.close(fig)


def _differs(d: dict) -> str:
    """A group's cell of the Groups table."""
    cell = [f"{k}={v}" for k, v in d["differs"].items()]
    if d["without_config"]:
        cell.append(f"no config.yaml ({plural(d['without_config'], 'run')})")
    return ", ".join(cell) or "-"


def write(data: dict, out: Path) -> None:
    methods, tasks = data["methods"], data["tasks"]
    labels = list(methods)
    out.mkdir(parents=True, exist_ok=True)
    agg_names = [
        ("final_iqm", "final IQM"),
        ("final_mean", "final mean"),
        ("best_iqm", "best IQM"),
        ("best_mean", "best mean"),
    ]

    write_csv(
        out / "aggregates.csv",
        ["method", "runs", *(f"{k}{s}" for k, _ in agg_names for s in ("", "_ci_low", "_ci_high"))],
        [
            [m, len(d["runs"]), *(v for k, _ in agg_names for v in (d[k]["value"], *d[k]["ci"]))]
            for m, d in methods.items()
        ],
    )
    per_task = [[t, *(methods[m]["per_task_final"][t] for m in labels)] for t in tasks]
    write_csv(out / "per_task_success.csv", ["task", *labels], per_task)
    write_csv(
        out / "probability_of_improvement.csv",
        ["x", "y", "p_x_better", "ci_low", "ci_high"],
        [[*k.split(" > "), v["value"], *(v["ci"] or ["", ""])] for k, v in data["probability_of_improvement"].items()],
    )
    write_csv(
        out / "grad_stats.csv",
        ["method", *GRAD_TAGS],
        [[m, *("" if d["grad"][t] is None else d["grad"][t] for t in GRAD_TAGS)] for m, d in methods.items()],
    )
    plot_aggregates(data, out / "aggregates.png")
    plot_curves(data, out / "learning_curves.png")
    plot_profile(data, out / "performance_profile.png")
    (out / "report.json").write_text(json.dumps(data, indent=1) + "\n")

    poi = data["probability_of_improvement"]
    sh = {m: d["short"] for m, d in methods.items()}
    shorts = [sh[m] for m in labels]
    md = [
        "# Comparison report\n",
        (
            f"{plural(sum(len(d['runs']) for d in methods.values()), 'run')} on {plural(len(tasks), 'task')}. "
            "Scores are per-task success rates; IQM = mean of the middle 50% of all run x task scores; [95% CI] "
            "from a stratified bootstrap that resamples each group's runs within each task (rliable, "
            f"{data['reps']} resamples). *final*: the last evaluation; *best*: the evaluation with the highest "
            "mean success (what the older MT10 papers report, an optimistic number).\n"
        ),
        "## Verdict\n",
        data["verdict"] + "\n",
        *(["## Warnings\n", "".join(f"- {w}\n" for w in data["warnings"])] if data["warnings"] else []),
        "## Groups\n",
        "Runs are grouped by method and by the settings that differ between runs of one method (seed, device, "
        "length and schedule keys never split a group). The last column names every setting whose value differs "
        "between groups, splitting or not (a/b: the group's runs differ in it).\n",
        table(
            ["group", "runs", "settings that differ between groups"],
            [[d["short"], str(len(d["runs"])), _differs(d)] for d in methods.values()],
        ),
        "## Aggregates\n",
        table(
            ["method", "runs", *(t for _, t in agg_names)],
            [[d["short"], str(len(d["runs"])), *(with_ci(d[k]) for k, _ in agg_names)] for m, d in methods.items()],
        ),
        "![aggregates](aggregates.png)\n",
        "## Learning curves\n",
        "Each run's mean success over the tasks; the curve is the IQM over seeds, at the evaluation steps all "
        f"runs of a method share, with a 95% bootstrap CI band over seeds for groups of at least {MIN_RUNS} runs.\n",
        "![learning curves](learning_curves.png)\n",
        "## Probability of improvement\n",
        (
            "P(row > column) on final per-task success: the chance that a run of the row method beats a run of "
            f"the column method on a task, averaged over tasks; [95% CI] from {RESAMPLES}, when both groups have "
            "as many runs.\n"
        ),
        table(
            ["P(row > col)", *shorts],
            [[sh[a], *("" if a == b else with_ci(poi[f"{a} > {b}"]) for b in labels)] for a in labels],
        ),
        "## Performance profile\n",
        "![performance profile](performance_profile.png)\n",
        "## Final success per task (mean over runs)\n",
        table(
            ["task", *shorts],
            [[t, *map(fmt_number, values)] for t, *values in per_task]
            + [
                ["**mean**", *(fmt_number(float(np.mean(list(methods[m]["per_task_final"].values())))) for m in labels)]
            ],
        ),
        "## Gradient statistics (mean over logged updates and runs)\n",
        (
            "conflict_frac: fraction of task pairs whose gradients have a negative cosine; norm_ratio: largest over "
            "smallest per-task gradient norm. Blank: not logged.\n"
        ),
        table(
            ["method", *GRAD_TAGS],
            [[d["short"], *(fmt_number(d["grad"][t]) for t in GRAD_TAGS)] for m, d in methods.items()],
        ),
        "## Runs\n",
        "".join(f"- {d['short']}: " + ", ".join(f"`{p}`" for p in d["runs"]) + "\n" for m, d in methods.items()),
    ]
    (out / "report.md").write_text("\n".join(md))


def report(paths: list[str], out: str | Path, reps: int = 2000, allow_mixed: bool = False) -> int:
    if reps < 100:
        raise ConfigError(f"--reps must be at least 100 for a 95% interval, got {reps}")
    try:
        import matplotlib
        import rliable  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"mtrl report needs {e.name}: pip install 'mtrl[analysis]'") from None
    matplotlib.use("Agg")
    runs = find_runs(paths)
    check_protocols(runs, allow_mixed)
    data = build(runs, reps)
    print(describe_groups(data, paths), file=sys.stderr)
    for line in data["warnings"]:
        print(f"mtrl: warning: {line}", file=sys.stderr)
    write(data, Path(out))
    grid_md, grid_sentence = static_grid_section(runs, data["tasks"], Path(out), reps)
    with open(Path(out) / "report.md", "a") as f:
        f.write("".join("\n" + md for md in (grid_md, imbalance_section(runs, data["tasks"], Path(out), reps)) if md))
    print(f"mtrl: {data['verdict']}", file=sys.stderr)
    if grid_sentence:
        print(f"mtrl: static weights: {grid_sentence}", file=sys.stderr)
    print(
        f"mtrl: report of {plural(len(runs), 'run')} ({', '.join(data['methods'])}) in {Path(out) / 'report.md'}",
        file=sys.stderr,
    )
    return 0


def describe_groups(data: dict, paths: list[str]) -> str:
    """Which runs were found and how they were grouped, one line per group (paths relative to
    the folder given, when there is one)."""
    roots = [Path(p).resolve() for p in paths]

    def shown(run: str) -> str:
        for root in roots:
            if Path(run).is_relative_to(root) and Path(run) != root:
                return str(Path(run).relative_to(root))
        return run

    methods = data["methods"]
    n = sum(len(d["runs"]) for d in methods.values())
    lines = [
        f"mtrl: found {plural(n, 'run')} in {', '.join(map(str, paths))}, "
        f"{plural(len(methods), 'group')} (by method and the settings that differ):"
    ]
    for m, d in methods.items():
        name = d["short"] if d["short"] == m else f"{d['short']} = {m}"
        lines.append(f"mtrl:   {name}: {plural(len(d['runs']), 'run')}: {', '.join(shown(r) for r in d['runs'])}")
    return "\n".join(lines)
