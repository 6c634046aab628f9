"""What ``mtrl report`` and its sections (mtrl.static_grid, mtrl.imbalance) share: the record of
a finished run, the seeded bootstrap, the verdict's run floor, and the markdown, CSV and label
formatting. It imports none of them, so each section imports this and the report imports the
sections.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BOOTSTRAP_SEED = 0  # rliable resamples with numpy's global RNG; seeded so a report is reproducible
MIN_RUNS = 3  # runs per group for a verdict; why: WHY_MIN_RUNS and mtrl.report's docstring
WHY_MIN_RUNS = (
    "The intervals come from a bootstrap that resamples each group's runs within each task: with 1 run "
    "every resample is that run, so the interval is a point that excludes 0.5 whenever the scores differ; "
    "with 2, a task has 3 distinct resamples and the interval is about 30% narrower than the runs' spread "
    "warrants."
)
RESAMPLES = "a bootstrap that resamples each group's runs within each task"  # where the intervals come from


@dataclass
class Run:
    path: Path
    summary: dict
    evals: list[dict]
    config: dict  # flattened config.yaml; {} when the run has none
    label: str = field(default="")
    settings: str = field(default="")  # the hyperparameters in the label: "c=0.5, hidden_sizes=[8]"
    split_by: list[str] = field(default_factory=list)  # their keys: ["balancer.kwargs.c", "sac.hidden_sizes"]


def plural(n: int, word: str) -> str:
    """A count as a person writes it: ``1 run``, ``2 runs``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def method_of(summary: dict) -> str:
    """The method a run's summary.json names (runs from before the field: its balancer)."""
    return summary.get("method", summary["balancer"])


def seeded(fn, *args, **kwargs):
    state = np.random.get_state()
    np.random.seed(BOOTSTRAP_SEED)
    try:
        return fn(*args, **kwargs)
    finally:
        np.random.set_state(state)


def interval_estimates(scores: np.ndarray, func, reps: int) -> tuple[np.ndarray, np.ndarray]:
    """rliable's point estimate and 95% stratified-bootstrap percentile CI ([2, ...]) of func."""
    from rliable import library as rly

    point, ci = seeded(rly.get_interval_estimates, {"x": scores}, func, reps=reps)
    return point["x"], ci["x"]


SHORT_LABEL = 24  # longer group labels become "method (A)" in plots and tables, with a key


def shorten(methods: dict[str, str]) -> dict[str, str]:
    """Label -> shown label, given each label's method (see :func:`short_labels`)."""
    out: dict[str, str] = {}
    letters: dict[str, int] = {}
    for label, method in methods.items():
        if len(label) <= SHORT_LABEL:
            out[label] = label
        else:
            n = letters[method] = letters.get(method, -1) + 1
            out[label] = f"{method} ({chr(ord('A') + n % 26)}{n // 26 or ''})"
    return out


def with_ci(e: dict) -> str:
    return f"{e['value']:.2f} [{e['ci'][0]:.2f}, {e['ci'][1]:.2f}]" if e["ci"] else f"{e['value']:.2f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def group_colors(labels: list[str]) -> dict[str, tuple]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(labels)}
