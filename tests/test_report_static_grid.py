"""The static-grid section of `mtrl report` on hand-written runs whose scores are known: the
grid's best is chosen on the lower half of the seeds and reported on the upper half, its IQMs,
intervals and the difference to grad_norm_scaling against independent numpy/scipy math, and the
sentence in each case (within, above, below, too few runs, too few seeds, no section)."""

import json

import numpy as np
import pytest
from scipy.stats import trim_mean

pytest.importorskip("rliable")
pytest.importorskip("matplotlib")

from mtrl.cli import main
from tests.test_report import STEPS, TASKS, stratified_bootstrap, write_run

GOOD = [0.9, 0.8, 0.7, 0.6]  # per-task final success of a good run
BAD = [0.1, 0.2, 0.0, 0.3]


def static_run(root, weights, seed, final):
    config = {"balancer": {"critic": "static", "actor": "static", "kwargs": {"weights": weights}}}
    name = "static_" + "-".join(map(str, weights))
    write_run(root / name / f"seed{seed}", "static", seed, [final] * len(STEPS), config=config, method="static")


def other_run(root, balancer, seed, final):
    write_run(root / balancer / f"seed{seed}", balancer, seed, [final] * len(STEPS), method=balancer)


def noisy(base, seed):
    return np.clip(np.array(base) + np.random.default_rng(seed).uniform(-0.05, 0.05, len(base)), 0, 1).round(3).tolist()


def report(root, tmp_path, reps=200):
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out), "--reps", str(reps)]) == 0
    path = out / "static_grid.json"
    return (json.loads(path.read_text()) if path.is_file() else None), out


def test_best_is_chosen_on_the_lower_seeds_and_scored_on_the_others(tmp_path):
    """A is best on seeds 0-2 and worst on 3-5; B the reverse: A is chosen, and reported low."""
    root = tmp_path / "runs"
    held = {}
    for seed in range(6):
        a, b = (GOOD, BAD) if seed < 3 else (BAD, GOOD)
        static_run(root, [1, 1, 1, 4], seed, noisy(a, seed))
        static_run(root, [4, 1, 1, 1], seed, noisy(b, 10 + seed))
        other_run(root, "grad_norm_scaling", seed, noisy(GOOD, 20 + seed))
        other_run(root, "ew", seed, noisy(BAD, 30 + seed))
        if seed >= 3:
            held.setdefault("a", []).append(noisy(BAD, seed))
            held.setdefault("gns", []).append(noisy(GOOD, 20 + seed))
    grid, out = report(root, tmp_path, reps=1000)
    assert grid["select_seeds"] == [0, 1, 2] and grid["held_seeds"] == [3, 4, 5]
    assert grid["best"] == "static (weights=[1, 1, 1, 4])"
    a, gns = np.array(held["a"]), np.array(held["gns"])
    assert grid["selection"]["static (weights=[1, 1, 1, 4])"] > grid["selection"]["static (weights=[4, 1, 1, 1])"]
    assert grid["overall"][grid["best"]]["value"] == pytest.approx(trim_mean(a.ravel(), 0.25), abs=1e-12)
    for i, t in enumerate(TASKS):
        assert grid["per_task"][grid["best"]][t]["value"] == pytest.approx(a[:, i].mean(), abs=1e-12)  # 3 runs: IQM = mean
    lo, hi = stratified_bootstrap(a, lambda s: trim_mean(s.ravel(), 0.25), 4000, np.random.default_rng(1))
    assert grid["overall"][grid["best"]]["ci"] == pytest.approx([lo, hi], abs=0.03)
    diff = trim_mean(gns.ravel(), 0.25) - trim_mean(a.ravel(), 0.25)
    assert grid["difference"]["value"] == pytest.approx(diff, abs=1e-12)
    assert grid["difference"]["ci"][0] > 0  # gns scores ~0.75 against ~0.15 on every held-out run
    assert grid["sentence"].startswith("grad_norm_scaling is above the grid's best, static (weights=[1, 1, 1, 4])")
    assert set(grid["overall"]) == {grid["best"], "grad_norm_scaling", "ew"}
    md = (out / "report.md").read_text()
    assert grid["sentence"] in md and "| **all tasks** |" in md
    rows = (out / "static_grid.csv").read_text().splitlines()
    assert len(rows) == 1 + len(TASKS) + 1 and rows[-1].startswith("all tasks,")


@pytest.mark.parametrize("gns,start", [(GOOD, "grad_norm_scaling is within the interval"), (BAD, "grad_norm_scaling is below")])
def test_sentence_reads_the_difference_interval(gns, start, tmp_path):
    root = tmp_path / "runs"
    for seed in range(6):
        static_run(root, [1, 2, 1, 1], seed, noisy(GOOD, seed))
        other_run(root, "grad_norm_scaling", seed, noisy(gns, seed))  # same noise: equal to the best when gns is GOOD
    grid, _ = report(root, tmp_path)
    assert grid["sentence"].startswith(start), grid["sentence"]
    lo, hi = grid["difference"]["ci"]
    assert (lo <= 0 <= hi) == (gns is GOOD)
    assert grid["ew"] is None and set(grid["overall"]) == {grid["best"], "grad_norm_scaling"}


def test_too_few_held_out_runs_give_no_verdict(tmp_path):
    root = tmp_path / "runs"
    for seed in (1, 2):
        for w in ([1, 1, 1, 4], [4, 1, 1, 1]):
            static_run(root, w, seed, noisy(GOOD, seed))
        other_run(root, "grad_norm_scaling", seed, noisy(BAD, seed))
    grid, _ = report(root, tmp_path)
    assert grid["select_seeds"] == [1] and grid["held_seeds"] == [2]
    assert grid["sentence"].startswith("No verdict: the grid's best") and "a verdict needs at least 3" in grid["sentence"]


def test_one_shared_seed_cannot_hold_one_out(tmp_path):
    root = tmp_path / "runs"
    static_run(root, [1, 1, 1, 4], 1, GOOD)
    static_run(root, [4, 1, 1, 1], 2, GOOD)  # the grid points share no seed
    other_run(root, "grad_norm_scaling", 1, BAD)
    grid, _ = report(root, tmp_path)
    assert grid["shared_seeds"] == [] and "needs at least 2" in grid["sentence"]


def test_no_section_without_grad_norm_scaling(tmp_path):
    root = tmp_path / "runs"
    for seed in (1, 2):
        static_run(root, [1, 1, 1, 4], seed, GOOD)
        other_run(root, "ew", seed, BAD)
    grid, out = report(root, tmp_path)
    assert grid is None and "Static loss weights" not in (out / "report.md").read_text()
