"""The imbalance section of `mtrl report` on hand-written run directories whose answer is known
(success set by the norm share, by the cosine with the update, or by neither): the per-run rank
correlations, their pooling and bootstrap intervals against scipy and a bootstrap written here,
the verdict, the figure, and runs that predate the statistics."""

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

pytest.importorskip("rliable")
pytest.importorskip("matplotlib")

from mtrl.cli import main
from mtrl.imbalance import build_imbalance, plot_imbalance
from mtrl.report import find_runs, label_runs
from tests.test_report import check_png

TASKS = [f"task{i}-v3" for i in range(8)]
EVAL_STEPS = [100, 200, 300]
STAT_STEPS = [50, 150, 250, 300]  # the last third of a 300-step run: 250 and 300
RUNS, REPS, SEED = 6, 1000, 0


def write_run(path, method, seed, final, stats=None, tb_keys=("norm", "norm_share", "proj", "cos_update")):
    """A finished run whose task t's success rises linearly to ``final[t]`` over the evaluations,
    and whose TensorBoard holds ``stats[key]`` ([len(STAT_STEPS), tasks]) under
    grad/<critic|actor>/<key>/<task> for the keys in ``tb_keys`` (both losses get the same values)."""
    path.mkdir(parents=True)
    evals = [
        {
            "step": s,
            "success": {t: float(f) * (i + 1) / 3 for t, f in zip(TASKS, final, strict=True)},
            "return": dict.fromkeys(TASKS, 0.0),
        }
        for i, s in enumerate(EVAL_STEPS)
    ]
    for e in evals:
        e["success_mean"] = float(np.mean(list(e["success"].values())))
    (path / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    summary = {
        "taskset": "custom",
        "balancer": "none" if method == "stl_sac" else method,
        "method": method,
        "seed": seed,
        "env_steps": EVAL_STEPS[-1],
        "final_success": evals[-1]["success"],
        "final_success_mean": evals[-1]["success_mean"],
        "best_success_mean": evals[-1]["success_mean"],
    }
    (path / "summary.json").write_text(json.dumps(summary))
    if stats is None:
        return
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(path / "tb"))
    for loss in ("critic", "actor"):
        for key in tb_keys:
            for i, step in enumerate(STAT_STEPS):
                for t, task in enumerate(TASKS):
                    w.add_scalar(f"grad/{loss}/{key}/{task}", stats[key][i, t], step)
    w.close()


def make_stats(rng):
    """Per-task gradient norms and cosines with the update, and what the trainer derives from
    them, as float32 (what TensorBoard stores)."""
    norm = rng.uniform(0.1, 2.0, (len(STAT_STEPS), len(TASKS)))
    cos = rng.uniform(0.1, 0.9, (len(STAT_STEPS), len(TASKS)))
    stats = {"norm": norm, "norm_share": norm / norm.sum(axis=1, keepdims=True), "cos_update": cos, "proj": norm * cos}
    return {k: v.astype(np.float32).astype(float) for k, v in stats.items()}


def scenario(root, driver, rng, stl=False):
    """RUNS runs (methods A and B alternating); final success is a monotone function of the
    run's mean norm share (driver "norm"), mean cosine ("cos"), or independent noise ("none")."""
    truth = []
    for k in range(RUNS):
        stats = make_stats(rng)
        key = {"norm": "norm_share", "cos": "cos_update"}.get(driver)
        final = (
            rng.uniform(0, 1, len(TASKS))
            if key is None
            else np.argsort(np.argsort(stats[key].mean(axis=0))) / len(TASKS)
        )
        method = "AB"[k % 2]
        write_run(root / method / f"seed{k}", method, k, final, stats)
        truth.append((stats, final))
    stl_final = None
    if stl:
        stl_final = rng.uniform(0, 1, (2, len(TASKS)))
        for k in range(2):
            write_run(root / "stl_sac" / f"seed{k}", "stl_sac", k, stl_final[k])
        stl_final = stl_final.mean(axis=0)
    return truth, stl_final


def load(root, reps=REPS):
    runs = find_runs([root])
    label_runs(runs)
    return build_imbalance(runs, TASKS, reps)


def reference(within, reps=REPS):
    """Mean of the within-run rhos; 95% percentile bootstrap over runs, written here."""
    r = np.array(within)
    idx = np.random.default_rng(SEED).integers(0, len(r), (reps, len(r)))
    return r.mean(), np.percentile(r[idx].mean(axis=1), [2.5, 97.5])


def reference_difference(a, b, reps=REPS):
    a, b = np.array(a), np.array(b)
    idx = np.random.default_rng(SEED).integers(0, len(a), (reps, len(a)))
    return abs(a.mean()) - abs(b.mean()), np.percentile(np.abs(a[idx].mean(1)) - np.abs(b[idx].mean(1)), [2.5, 97.5])


def auc(final):
    """Success rising linearly from final/3 to final over three equally spaced evaluations."""
    return final * (1 / 3 + 2 * 2 / 3 + 1) / 4


def predictors(stats, window):
    rows = slice(None) if window == "train" else slice(2, None)
    proj = stats["proj"] / np.abs(stats["proj"]).sum(axis=1, keepdims=True)
    return {
        "norm_share": stats["norm_share"][rows].mean(0),
        "proj_share": proj[rows].mean(0),
        "cos_update": stats["cos_update"][rows].mean(0),
    }


@pytest.fixture(scope="module", params=["norm", "cos", "none"])
def known(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    rng = np.random.default_rng({"norm": 1, "cos": 2, "none": 3}[request.param])
    truth, stl_final = scenario(root, request.param, rng, stl=True)
    data = load(root)
    seeds = [data["rows"][k * len(TASKS)]["seed"] for k in range(RUNS)]  # the report's run order
    return request.param, root, [truth[s] for s in seeds], stl_final, data


def test_rows_hold_the_run_averages(known):
    _, _, truth, stl_final, data = known
    assert len(data["rows"]) == RUNS * len(TASKS) and data["stl_runs"] and len(data["runs"]) == RUNS
    by_run = [data["rows"][k * len(TASKS) : (k + 1) * len(TASKS)] for k in range(RUNS)]
    for (stats, final), rows in zip(truth, by_run, strict=True):
        assert [r["task"] for r in rows] == TASKS
        np.testing.assert_allclose([r["final"] for r in rows], final)
        np.testing.assert_allclose([r["auc"] for r in rows], auc(final))
        np.testing.assert_allclose([r["vs_stl"] for r in rows], final - stl_final)
        for window, suffix in (("train", ""), ("last3", "_last3")):
            for name, value in predictors(stats, window).items():
                for loss in ("critic", "actor"):
                    np.testing.assert_allclose(
                        [r[f"{loss}_{name}{suffix}"] for r in rows], value, rtol=1e-9, err_msg=name
                    )


def test_correlations_and_intervals_match_independent_computation(known):
    _, _, truth, stl_final, data = known
    outcomes = {"final": lambda f: f, "auc": auc, "vs_stl": lambda f: f - stl_final}
    for outcome, of in outcomes.items():
        for window in ("train", "last3"):
            for name in ("norm_share", "proj_share", "cos_update"):
                within = [spearmanr(predictors(s, window)[name], of(f)).statistic for s, f in truth]
                e = data["correlations"][f"critic/{name}|{window}|{outcome}"]
                assert e["per_run"] == pytest.approx(within, abs=1e-12)
                value, ci = reference(within)
                assert e["value"] == pytest.approx(value, abs=1e-12) and e["runs"] == RUNS
                assert e["ci"] == pytest.approx(ci, abs=1e-12)
                assert data["correlations"][f"actor/{name}|{window}|{outcome}"]["value"] == e["value"]
            for name in ("norm_share", "proj_share"):
                a = [spearmanr(predictors(s, window)[name], of(f)).statistic for s, f in truth]
                b = [spearmanr(predictors(s, window)["cos_update"], of(f)).statistic for s, f in truth]
                value, ci = reference_difference(a, b)
                e = data["comparisons"][f"critic/{name} - critic/cos_update|{window}|{outcome}"]
                assert e["value"] == pytest.approx(value, abs=1e-12) and e["ci"] == pytest.approx(ci, abs=1e-12)


def test_verdict_matches_the_known_answer(known):
    driver, _, _, _, data = known
    norm = data["correlations"]["critic/norm_share|train|auc"]
    cos = data["correlations"]["critic/cos_update|train|auc"]
    diffs = [
        data["comparisons"][f"{loss}/{p} - {loss}/cos_update|train|auc"]
        for loss in ("critic", "actor")
        for p in ("norm_share", "proj_share")
    ]
    if driver == "norm":
        assert norm["value"] == pytest.approx(1.0) and norm["ci"] == pytest.approx([1.0, 1.0])
        assert diffs[0]["ci"][0] > 0.3
        assert data["verdict"].startswith("Imbalance explains the lagging tasks better than conflict"), data["verdict"]
    elif driver == "cos":
        assert cos["value"] == pytest.approx(1.0)
        assert diffs[0]["ci"][1] < -0.3
        assert data["verdict"].startswith("Conflict explains the lagging tasks better than imbalance"), data["verdict"]
    else:
        # no relation: every primary interval straddles 0, and the report says so
        assert all(d["ci"][0] <= 0 <= d["ci"][1] for d in diffs)
        assert abs(norm["value"]) < 0.5 and abs(cos["value"]) < 0.5
        assert data["verdict"].startswith("No verdict: every 95% interval"), data["verdict"]


def test_report_writes_the_section_csv_and_figure(tmp_path):
    """`mtrl report` end to end on the norm-share scenario (few resamples: the numbers are checked above)."""
    root = tmp_path / "runs"
    scenario(root, "norm", np.random.default_rng(1), stl=True)
    out = tmp_path / "rep"
    assert main(["report", str(root), "--out", str(out), "--reps", "200"]) == 0
    data = load(root, reps=200)
    md = (out / "report.md").read_text()
    section = md[md.index("## Imbalance or conflict") :]
    assert "](imbalance.png)" in section and data["verdict"] in section
    assert data["verdict"].startswith("Imbalance explains")
    assert "| critic norm share | training | +1.00 [+1.00, +1.00] |" in section and "final success - STL" in section
    assert "Notes:" not in section  # every run logged every statistic, 7 of 8 tasks above 0
    rows = (out / "imbalance.csv").read_text().splitlines()
    assert len(rows) == 1 + RUNS * len(TASKS)
    assert rows[0].startswith("run,method,seed,task,auc,final,vs_stl,critic_norm_share,critic_norm_share_last3")
    saved = json.loads((out / "imbalance.json").read_text())
    assert saved["verdict"] == data["verdict"] and saved["correlations"] == json.loads(json.dumps(data["correlations"]))
    pixels = check_png(out / "imbalance.png")
    assert pixels.shape[1] > 1000  # three panels
    drawn = plot_imbalance(data, tmp_path / "again.png")
    assert drawn == {"critic": RUNS * len(TASKS), "actor": RUNS * len(TASKS)}


def test_runs_without_the_new_statistics_still_report(tmp_path):
    """A run from before the update statistics (only grad/<loss>/norm) gets its norm share from the
    norms; one without TensorBoard events gets outcomes only; the section names what is missing."""
    rng = np.random.default_rng(4)
    for k in range(3):
        stats = make_stats(rng)
        write_run(tmp_path / f"old{k}", "ew", k, rng.uniform(0, 1, len(TASKS)), stats, tb_keys=("norm",))
    write_run(tmp_path / "bare", "ew", 9, rng.uniform(0, 1, len(TASKS)))
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path), "--out", str(out), "--reps", "200"]) == 0
    data = json.loads((out / "imbalance.json").read_text())
    e = data["correlations"]["critic/norm_share|train|auc"]
    assert e["runs"] == 3 and e["ci"] is not None
    assert data["correlations"]["critic/cos_update|train|auc"]["runs"] == 0
    assert len(data["missing"]["critic/proj_share"]) == 4 and len(data["missing"]["critic/norm_share"]) == 1
    md = (out / "report.md").read_text()
    section = md[md.index("## Imbalance or conflict") :]
    assert "4 of 4 runs did not log `grad/critic/proj`" in section
    assert "1 of 4 runs did not log `grad/critic/norm_share or grad/critic/norm`" in section
    assert "norm share derived from the per-task norms" in section
    assert "No verdict: an interval needs correlations from at least 2 runs" in section
    assert "at most 2 tasks" not in section  # uniform random successes: every task above 0
    rows = (out / "imbalance.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * len(TASKS)
    check_png(out / "imbalance.png")  # the derived norm shares are still plotted


def test_no_statistics_at_all_reports_without_a_figure(tmp_path):
    for k in range(2):
        write_run(tmp_path / f"r{k}", "ew", k, np.linspace(0, 1, len(TASKS)))
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path), "--out", str(out), "--reps", "200"]) == 0
    section = (out / "report.md").read_text().split("## Imbalance or conflict")[1]
    assert "no run logged per-task gradient statistics, so there is no figure" in section
    # linspace(0, 1): one task at 0, seven above (AUC of a rising curve)
    assert "at most 2 tasks" not in section
    assert "No verdict" in section and not (out / "imbalance.png").exists()


def test_smoke_run_statistics_reach_the_report(smoke_run, tmp_path):
    """The trainer's tags are the ones the report reads: every predictor of every task is filled."""
    runs = find_runs([smoke_run])
    label_runs(runs)
    data = build_imbalance(runs, list(runs[0].summary["final_success"]), 200)
    assert not data["missing"] and not data["derived"] and len(data["rows"]) == 10
    for row in data["rows"]:
        for loss in ("critic", "actor"):
            for name in ("norm_share", "proj_share", "cos_update"):
                assert row[f"{loss}_{name}"] is not None and np.isfinite(row[f"{loss}_{name}"])
    assert sum(r["critic_norm_share"] for r in data["rows"]) == pytest.approx(1.0, abs=1e-5)


def test_runs_with_one_successful_task_are_flagged(tmp_path):
    """Early in MT10 training one task succeeds and the rest sit at 0: the rho is then only that
    task's rank on the predictor, and the section says so."""
    rng = np.random.default_rng(5)
    for k in range(2):
        write_run(tmp_path / f"r{k}", "ew", k, np.eye(len(TASKS))[k], make_stats(rng))
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path), "--out", str(out), "--reps", "200"]) == 0
    section = (out / "report.md").read_text().split("## Imbalance or conflict")[1]
    assert "in 2 of 2 runs at most 2 tasks have a success AUC above 0 (per run: 1, 1)" in section


def test_one_run_reads_in_the_singular(tmp_path):
    """One multi-task run (no projections logged) and one single-task run: each count of 1 is singular."""
    from tests.test_report import plurals_wrong

    rng = np.random.default_rng(6)
    write_run(tmp_path / "mt", "ew", 0, rng.uniform(0, 1, len(TASKS)), make_stats(rng), tb_keys=("norm", "cos_update"))
    write_run(tmp_path / "stl", "stl_sac", 0, rng.uniform(0, 1, len(TASKS)))
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path), "--out", str(out), "--reps", "200"]) == 0
    section = (out / "report.md").read_text().split("## Imbalance or conflict")[1]
    data = json.loads((out / "imbalance.json").read_text())
    assert data["verdict"].startswith("No verdict: an interval needs correlations from at least 2 runs")
    assert data["comparisons"]["critic/norm_share - critic/cos_update|train|auc"]["runs"] == 1
    # the counts are stated (1 run with both predictors, 1 reference run, 1 run without projections)
    assert "there is 1." in data["verdict"], data["verdict"]
    assert "1 multi-task run (1 single-task run serves as the reference)" in section
    assert "1 of 1 run did not log `grad/critic/proj`" in section
    assert plurals_wrong(section) == [], plurals_wrong(section)


@pytest.mark.parametrize("runs", [1, 3])
def test_correlation_panel_promises_intervals_only_where_drawn(runs, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(7)
    for k in range(runs):
        write_run(tmp_path / f"r{k}", "ew", k, rng.uniform(0, 1, len(TASKS)), make_stats(rng))
    data = load(tmp_path, reps=200)
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to read its axes
    plot_imbalance(data, tmp_path / "imbalance.png")
    panel = figures[0].axes[2]
    bars = [c for c in panel.containers if c.has_xerr]
    assert ("95% CI" in panel.get_xlabel()) == bool(bars) == (runs > 1), (panel.get_xlabel(), len(bars))
