"""`mtrl report` on hand-written run directories whose numbers are known: the aggregates, their
bootstrap intervals and the probability of improvement against independent numpy/scipy math,
the grouping of runs, the TensorBoard gradient statistics, and the pictures."""

import json

import numpy as np
import pytest
from scipy.stats import trim_mean

pytest.importorskip("rliable")
pytest.importorskip("matplotlib")

from mtrl.cli import main
from mtrl.report import build, find_runs

TASKS = ["reach-v3", "push-v3", "pick-place-v3", "door-open-v3"]
STEPS = [100, 200, 300]


def write_run(path, balancer, seed, evals, config=None, env_steps=None, method=None, extra=None):
    """A finished run: eval.jsonl from ``evals`` ([steps, tasks] success rates) and the summary
    the trainer would write from it (plus the summary fields in ``extra``)."""
    path.mkdir(parents=True)
    lines = [
        {
            "step": s,
            "success_mean": float(np.mean(row)),
            "success": dict(zip(TASKS, map(float, row), strict=True)),
            "return": dict.fromkeys(TASKS, 0.0),
        }
        for s, row in zip(STEPS, evals, strict=True)
    ]
    (path / "eval.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = {
        "taskset": "MT10",
        "balancer": balancer,
        "seed": seed,
        "env_steps": env_steps or STEPS[-1],
        "final_success_mean": lines[-1]["success_mean"],
        "final_success": lines[-1]["success"],
        "best_success_mean": max(line["success_mean"] for line in lines),
    }
    if method:
        summary["method"] = method
    summary.update(extra or {})
    (path / "summary.json").write_text(json.dumps(summary))
    if config is not None:
        import yaml

        (path / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Two methods x 5 seeds with random scores; A's are shifted up."""
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    scores = {}
    for method, shift in (("A", 0.3), ("B", 0.0)):
        scores[method] = np.clip(rng.uniform(0, 0.7, (5, len(STEPS), len(TASKS))) + shift, 0, 1).round(3)
        for k in range(5):
            write_run(root / method / f"seed{k}", method, k, scores[method][k])
    return root, scores


def stratified_bootstrap(scores, stat, reps, rng):
    """Independent of rliable: for each task, draw runs with replacement; percentile 95% CI."""
    n, m = scores.shape
    stats = [stat(scores[rng.integers(0, n, (n, m)), np.arange(m)]) for _ in range(reps)]
    return np.percentile(stats, [2.5, 97.5])


def iqm(x):
    return trim_mean(np.ravel(x), 0.25)


def test_aggregates_match_independent_math(synthetic):
    root, scores = synthetic
    data = build(find_runs([root]), reps=2000)
    assert list(data["methods"]) == ["A", "B"]
    rng = np.random.default_rng(1)
    for method, s in scores.items():
        d = data["methods"][method]
        final = s[:, -1, :]  # [runs, tasks] at the last evaluation
        best = s[np.arange(5), s.mean(axis=2).argmax(axis=1), :]  # each run's eval with the best mean
        for name, x in (("final", final), ("best", best)):
            for stat_name, stat in (("iqm", iqm), ("mean", np.mean)):
                e = d[f"{name}_{stat_name}"]
                assert e["value"] == pytest.approx(stat(x), abs=1e-9), (method, name, stat_name)
                lo, hi = e["ci"]
                assert lo <= e["value"] <= hi and hi - lo > 0.01
                ref = stratified_bootstrap(x, stat, 4000, rng)
                assert np.allclose([lo, hi], ref, atol=0.025), (method, name, stat_name, (lo, hi), ref)
        assert d["per_task_final"] == pytest.approx(dict(zip(TASKS, final.mean(axis=0), strict=True)))
        # the curve: at every evaluation step, the IQM over seeds of each run's mean over tasks,
        # its CI a bootstrap over seeds
        assert d["curve"]["steps"] == STEPS
        run_means = s.mean(axis=2)  # [runs, steps]
        assert d["curve"]["iqm"] == pytest.approx([iqm(run_means[:, i]) for i in range(len(STEPS))])
        for i, (lo, hi) in enumerate(zip(d["curve"]["ci_low"], d["curve"]["ci_high"], strict=True)):
            assert lo <= d["curve"]["iqm"][i] <= hi
            ref = stratified_bootstrap(run_means[:, i : i + 1], iqm, 4000, rng)
            assert np.allclose([lo, hi], ref, atol=0.03), (method, i, (lo, hi), ref)
    # A's scores are shifted up by 0.3: its interval lies above B's
    assert data["methods"]["A"]["final_mean"]["ci"][0] > data["methods"]["B"]["final_mean"]["ci"][1]


def test_probability_of_improvement_known_cases(tmp_path):
    from mtrl.report import probability_of_improvement

    low, high = np.full((3, 4), 0.2), np.full((3, 4), 0.8)
    assert probability_of_improvement(high, low, 500)["value"] == 1.0
    assert probability_of_improvement(low, high, 500)["value"] == 0.0
    same = probability_of_improvement(low, low, 500)
    assert same["value"] == 0.5 and same["ci"] == [0.5, 0.5]
    # one task, counted by hand: pairs (x, y) with x > y count 1, ties 1/2, over 3 x 3 pairs
    x, y = np.array([[0.1], [0.5], [0.9]]), np.array([[0.5], [0.5], [0.2]])
    wins = sum((a > b) + 0.5 * (a == b) for a in x[:, 0] for b in y[:, 0])
    assert probability_of_improvement(x, y, 500)["value"] == pytest.approx(wins / 9)


def test_probability_of_improvement_in_the_report(synthetic):
    root, scores = synthetic
    poi = build(find_runs([root]), reps=500)["probability_of_improvement"]
    a, b = scores["A"][:, -1, :], scores["B"][:, -1, :]
    by_task = [np.mean([(p > q) + 0.5 * (p == q) for p in a[:, t] for q in b[:, t]]) for t in range(len(TASKS))]
    assert poi["A > B"]["value"] == pytest.approx(np.mean(by_task))
    assert poi["B > A"]["value"] == pytest.approx(1 - poi["A > B"]["value"])
    lo, hi = poi["A > B"]["ci"]
    assert lo <= poi["A > B"]["value"] <= hi


def test_grouping_by_method_and_swept_hyperparameters(tmp_path):
    ones = np.ones((3, 4)) * 0.5
    cfg = {"seed": 1, "total_env_steps": 300, "balancer": {"critic": "cagrad", "actor": "cagrad", "kwargs": {"c": 0.5}}}
    for seed in (1, 2):
        write_run(tmp_path / f"c05_{seed}", "cagrad", seed, ones, {**cfg, "seed": seed})
        c09 = {**cfg, "seed": seed, "balancer": {**cfg["balancer"], "kwargs": {"c": 0.9}}}
        write_run(tmp_path / f"c09_{seed}", "cagrad", seed, ones, c09)
        write_run(tmp_path / f"stl_{seed}", "ew", seed, ones, method="stl_sac")
    data = build(find_runs([tmp_path]), reps=200)
    assert {m: len(d["runs"]) for m, d in data["methods"].items()} == {
        "cagrad (c=0.5)": 2,
        "cagrad (c=0.9)": 2,
        "stl_sac": 2,
    }


def test_gradient_statistics_from_tensorboard(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    write_run(tmp_path / "run", "pcgrad", 1, np.zeros((3, 4)))
    w = SummaryWriter(str(tmp_path / "run" / "tb"))
    for step, (conflict, ratio) in enumerate([(0.2, 2.0), (0.4, 6.0), (0.3, 4.0)]):
        w.add_scalar("grad/critic/conflict_frac", conflict, step)
        w.add_scalar("grad/critic/norm_ratio", ratio, step)
    w.close()
    grad = build(find_runs([tmp_path]), reps=200)["methods"]["pcgrad"]["grad"]
    assert grad["grad/critic/conflict_frac"] == pytest.approx(0.3)
    assert grad["grad/critic/norm_ratio"] == pytest.approx(4.0)
    assert grad["grad/actor/conflict_frac"] is None and grad["grad/actor/norm_ratio"] is None


def check_png(path):
    """A real, non-blank image: PNG magic, a plausible size, and pixels that vary."""
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert len(data) > 5000, path
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] >= 200 and pixels.shape[1] >= 400, pixels.shape
    assert pixels[..., :3].var() > 1e-3, f"{path} is blank"
    return pixels


def test_report_files_and_pictures(synthetic, tmp_path, capsys):
    root, scores = synthetic
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out), "--reps", "500"]) == 0
    for name in ("learning_curves.png", "performance_profile.png", "aggregates.png"):
        check_png(out / name)
    md = (out / "report.md").read_text()
    for image in ("learning_curves.png", "performance_profile.png", "aggregates.png"):
        assert f"]({image})" in md
    data = json.loads((out / "report.json").read_text())
    final_b = scores["B"][:, -1, :]
    assert f"| B | 5 | {iqm(final_b):.2f} [" in md
    rows = (out / "per_task_success.csv").read_text().splitlines()
    assert rows[0] == "task,A,B" and len(rows) == 1 + len(TASKS)
    task, a, b = rows[1].split(",")
    assert task == TASKS[0] and float(b) == pytest.approx(final_b[:, 0].mean())
    assert float(a) == pytest.approx(data["methods"]["A"]["per_task_final"][TASKS[0]])
    assert "warning" not in capsys.readouterr().err  # 5 seeds each, equal env_steps


def test_warnings_for_few_seeds_and_unequal_lengths(tmp_path, capsys):
    write_run(tmp_path / "a", "ew", 1, np.zeros((3, 4)))
    write_run(tmp_path / "b", "ew", 2, np.zeros((3, 4)), env_steps=600)
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep"), "--reps", "200"]) == 0
    err = capsys.readouterr().err
    assert "warning: ew has 2 runs;" in err and "different env_steps" in err
    md = (tmp_path / "rep" / "report.md").read_text()
    printed = [line.removeprefix("mtrl: warning: ") for line in err.splitlines() if line.startswith("mtrl: warning: ")]
    assert len(printed) == 2 and all(f"- {w}\n" in md for w in printed), (printed, md)


@pytest.mark.parametrize("what", ["missing", "empty"])
def test_bad_input_exits_2_and_writes_nothing(what, tmp_path, capsys):
    path = tmp_path / "nothing"
    if what == "empty":
        (path / "run").mkdir(parents=True)
        (path / "run" / "config.yaml").write_text("seed: 1\n")  # an unfinished run is not a result
    out = tmp_path / "rep"
    assert main(["report", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtrl: error: ") and len(err.splitlines()) == 1
    assert ("does not exist" if what == "missing" else "no finished runs") in err
    assert not out.exists()


def test_missing_analysis_extra_exits_2_naming_it(synthetic, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "rliable", None)
    assert main(["report", str(synthetic[0]), "--out", str(tmp_path / "rep")]) == 2
    assert "pip install 'mtrl[analysis]'" in capsys.readouterr().err
    assert not (tmp_path / "rep").exists()


def _protocol_runs(root, **differ):
    """Two methods x 3 seeds with one protocol; ``differ`` changes config keys of a third group."""
    base = {"taskset": "MT10", "max_episode_steps": 500, "num_goals": 50, "eval_episodes": 10}
    rng = np.random.default_rng(2)
    for name, cfg in (("ew", base), ("cagrad", base), ("odd", {**base, **differ})):
        for seed in range(3):
            method = "ew" if name == "odd" else name
            write_run(
                root / name / f"seed{seed}", method, seed, rng.uniform(0, 1, (3, 4)).round(2), {**cfg, "seed": seed}
            )


def test_report_says_which_runs_it_found_and_how_it_grouped_them(tmp_path, capsys):
    _protocol_runs(tmp_path / "runs", batch_size=640)  # "odd": the same protocol, another batch size
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep"), "--reps", "200"]) == 0
    err = capsys.readouterr().err
    assert f"mtrl: found 9 runs in {tmp_path / 'runs'}, 3 groups" in err
    assert "mtrl:   cagrad: 3 runs: cagrad/seed0, cagrad/seed1, cagrad/seed2" in err
    assert "mtrl:   ew (batch_size=640): 3 runs: odd/seed0, odd/seed1, odd/seed2" in err
    assert "mtrl:   ew (batch_size=None): 3 runs: ew/seed0" in err


@pytest.mark.parametrize(
    "key,value", [("max_episode_steps", 50), ("num_goals", 1), ("eval_episodes", 1), ("taskset", "MT10b")]
)
def test_runs_of_different_protocols_are_refused_unless_allowed(key, value, tmp_path, capsys):
    _protocol_runs(tmp_path / "runs", **{key: value})
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--reps", "200"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow-mixed" in err
    shown = value if key != "taskset" else "MT10b"
    assert f"{key}={shown} (3 runs, e.g. {tmp_path / 'runs' / 'odd'}" in err
    assert not out.exists()
    assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--reps", "200", "--allow-mixed"]) == 0
    data = json.loads((out / "report.json").read_text())
    assert f"ew ({key}={value})" in data["methods"]  # the differing setting splits the group


def _verdict_runs(root, shift):
    rng = np.random.default_rng(3)
    for method, up in (("A", shift), ("B", 0.0)):
        for seed in range(5):
            write_run(
                root / method / f"seed{seed}", method, seed, np.clip(rng.uniform(0, 0.6, (3, 4)) + up, 0, 1).round(3)
            )


def test_verdict_names_the_better_method_when_the_interval_excludes_one_half(tmp_path):
    from mtrl.report import verdict

    _verdict_runs(tmp_path, shift=0.4)
    data = build(find_runs([tmp_path]), reps=500)
    lo, hi = data["probability_of_improvement"]["A > B"]["ci"]
    assert lo > 0.5
    assert data["verdict"] == verdict(data)
    assert data["verdict"].startswith("Verdict (5 runs per group")
    assert (
        f"A beats B with P(A > B) = {data['probability_of_improvement']['A > B']['value']:.2f} [{lo:.2f}, {hi:.2f}]"
        in data["verdict"]
    )


def test_no_verdict_at_this_budget_when_every_interval_holds_one_half(tmp_path):
    _verdict_runs(tmp_path / "runs", shift=0.0)
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--reps", "500"]) == 0
    data = json.loads((out / "report.json").read_text())
    lo, hi = data["probability_of_improvement"]["A > B"]["ci"]
    assert lo <= 0.5 <= hi
    assert data["verdict"].startswith("No verdict at this budget (5 runs per group)")
    md = (out / "report.md").read_text()
    assert f"## Verdict\n\n{data['verdict']}\n" in md


def test_long_group_labels_are_shortened_with_a_key(tmp_path):
    base = {"seed": 1, "balancer": {"critic": "ew", "actor": "ew"}}
    for i, (batch, hidden) in enumerate([(640, [256, 256]), (1280, [400, 400, 400])]):
        for seed in range(2):
            cfg = {
                **base,
                "seed": seed,
                "batch_size": batch,
                "buffer_size": 1000 * batch,
                "sac": {"hidden_sizes": hidden},
            }
            write_run(tmp_path / "runs" / f"g{i}" / f"s{seed}", "ew", seed, np.full((3, 4), 0.5), cfg)
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--reps", "200"]) == 0
    data = json.loads((out / "report.json").read_text())
    assert sorted(d["short"] for d in data["methods"].values()) == ["ew (A)", "ew (B)"]
    md = (out / "report.md").read_text()
    assert "| ew (B) | 2 | batch_size=640, buffer_size=640000, hidden_sizes=[256, 256] |" in md
    for name in ("learning_curves.png", "performance_profile.png", "aggregates.png"):
        check_png(out / name)


def _separated_runs(root, runs_per_group):
    """``runs_per_group`` runs of ew and of pcgrad; every ew score is above every pcgrad score,
    so P(ew > pcgrad) = 1 and each bootstrap resample says so too."""
    rng = np.random.default_rng(6)
    for method, low in (("ew", 0.5), ("pcgrad", 0.0)):
        for seed in range(runs_per_group):
            write_run(root / method / f"seed{seed}", method, seed, (low + rng.uniform(0, 0.4, (3, 4))).round(3))


def _groups_table(md):
    """{group: its cell of "settings that differ"} from report.md's Groups table."""
    section = md.split("## Groups\n")[1].split("\n## ")[0]
    rows = [
        line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ") and "| --- |" not in line
    ]
    header, body = rows[0], rows[1:]
    assert header[-1].strip().startswith("settings that differ"), header
    return {r[0].strip(): r[-1].strip() for r in body}


@pytest.mark.parametrize("runs_per_group", [1, 2])
def test_no_verdict_from_fewer_than_3_runs_per_group(runs_per_group, tmp_path):
    _separated_runs(tmp_path / "runs", runs_per_group)
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--reps", "500"]) == 0
    data = json.loads((out / "report.json").read_text())
    # the interval excludes 0.5 (with 1 run it is a point), yet it comes from too few runs to read
    lo, hi = data["probability_of_improvement"]["ew > pcgrad"]["ci"]
    assert lo > 0.5 and (hi - lo == 0 or runs_per_group > 1)
    v = data["verdict"]
    assert v.startswith("No verdict") and "beats" not in v, v
    assert "at least 3 runs" in v and f"{runs_per_group} run{'s' * (runs_per_group > 1)} per group" in v, v
    assert "resamples" in v and "within each task" in v, v  # says why: what the bootstrap draws
    assert f"## Verdict\n\n{v}\n" in (out / "report.md").read_text()


def test_a_verdict_from_3_runs_per_group(tmp_path):
    _separated_runs(tmp_path, 3)
    data = build(find_runs([tmp_path]), reps=500)
    assert data["verdict"].startswith("Verdict (3 runs per group"), data["verdict"]
    assert "ew beats pcgrad with P(ew > pcgrad) = 1.00 [1.00, 1.00]" in data["verdict"]
    assert "runs within each task" in data["verdict"]  # the interval method names what it resamples


def test_runs_of_different_lengths_and_protocols_are_named_and_warned(tmp_path, capsys):
    """A smoke-preset CAGrad run beside a quick-preset EW run (--allow-mixed): the Groups table names
    the length, schedule and protocol keys that differ although they split no group; every warning
    printed is in report.md; and one run per group gives no verdict."""
    presets = {
        "cagrad": {"total_env_steps": 3000, "eval_every": 1500, "max_episode_steps": 50, "eval_episodes": 1},
        "ew": {"total_env_steps": 300000, "eval_every": 50000, "max_episode_steps": 500, "eval_episodes": 10},
    }
    rng = np.random.default_rng(7)
    for method, preset in presets.items():
        cfg = {"taskset": "MT10", "seed": 1, "num_goals": 50, "balancer": {"critic": method, "actor": method}, **preset}
        write_run(
            tmp_path / "runs" / method,
            method,
            1,
            rng.uniform(0, 1, (3, 4)).round(2),
            cfg,
            env_steps=preset["total_env_steps"],
        )
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--reps", "200", "--allow-mixed"]) == 0
    err = capsys.readouterr().err
    md = (out / "report.md").read_text()
    cells = _groups_table(md)
    assert set(cells) == set(presets)
    for method, preset in presets.items():
        shown = cells[method].split(", ")
        for key, value in {**preset, "env_steps": preset["total_env_steps"]}.items():
            assert f"{key}={value}" in shown, (method, key, cells[method])
        assert not any(s.startswith(("seed=", "critic=", "num_goals=")) for s in shown), shown  # equal or the method
    printed = [line.removeprefix("mtrl: warning: ") for line in err.splitlines() if line.startswith("mtrl: warning: ")]
    assert any("episode protocol" in w for w in printed) and any("env_steps" in w for w in printed), printed
    assert all(f"- {w}\n" in md for w in printed), (printed, md)
    data = json.loads((out / "report.json").read_text())
    assert data["warnings"] == printed
    assert data["verdict"].startswith("No verdict") and "beats" not in data["verdict"]


def test_critic_loss_of_runs_made_before_the_field_is_sum(tmp_path):
    """summary.json's critic_loss is a setting: runs lacking it used the sum over the two critics,
    so old and new runs of one method are separate groups, and the table names it for every group."""
    rng = np.random.default_rng(8)
    for name, method, extra in (
        ("ew_old", "ew", None),
        ("ew_new", "ew", {"critic_loss": "mean"}),
        ("cagrad", "cagrad", None),
    ):
        for seed in range(3):
            write_run(
                tmp_path / "runs" / name / f"seed{seed}", method, seed, rng.uniform(0, 1, (3, 4)).round(2), extra=extra
            )
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--reps", "200"]) == 0
    data = json.loads((out / "report.json").read_text())
    assert {m: len(d["runs"]) for m, d in data["methods"].items()} == {
        "cagrad": 3,
        "ew (critic_loss=mean)": 3,
        "ew (critic_loss=sum)": 3,
    }
    cells = _groups_table((out / "report.md").read_text())
    assert cells["cagrad"].startswith("critic_loss=sum")
    assert cells["ew (critic_loss=mean)"].startswith("critic_loss=mean")
    assert cells["ew (critic_loss=sum)"].startswith("critic_loss=sum")


def plurals_wrong(text):
    """Phrases a person would not write: "1 runs", "1 single-task runs", "run(s)", "there are 1"."""
    import re

    return re.findall(r"\b1 (?:[\w-]+ )?(?:runs|seeds|groups|tasks|cases)\b|\w\(s\)|\bthere are 1\b", text)


def test_counts_of_one_read_as_written(tmp_path, capsys):
    """One EW run and one single-task run: every count of 1 in report.md and on stderr is singular."""
    rng = np.random.default_rng(9)
    write_run(tmp_path / "runs" / "ew", "ew", 1, rng.uniform(0, 1, (3, 4)).round(2))
    write_run(tmp_path / "runs" / "stl", "none", 1, rng.uniform(0, 1, (3, 4)).round(2), method="stl_sac")
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out), "--reps", "200"]) == 0
    err, md = capsys.readouterr().err, (out / "report.md").read_text()
    assert "mtrl:   ew: 1 run: ew" in err and "1 run per group" in md  # the counts are there, in the singular
    assert plurals_wrong(err) == [] and plurals_wrong(md) == []
    assert plurals_wrong("1 runs, 1 multi-task runs, 2 run(s), there are 1") == [
        "1 runs",
        "1 multi-task runs",
        "n(s)",
        "there are 1",
    ]


@pytest.mark.parametrize("runs_per_group", [(1, 1), (1, 3), (3, 3)])
def test_plot_titles_promise_bands_only_where_drawn(runs_per_group, tmp_path):
    from mtrl.report import plot_curves, plot_profile
    from mtrl.report_shared import MIN_RUNS

    rng = np.random.default_rng(10)
    for method, n in zip(("ew", "pcgrad"), runs_per_group, strict=True):
        for seed in range(n):
            write_run(tmp_path / "runs" / method / f"seed{seed}", method, seed, rng.uniform(0, 1, (3, 4)).round(2))
    data = build(find_runs([tmp_path / "runs"]), reps=200)
    banded = sum(n >= MIN_RUNS for n in runs_per_group)
    for plot in (plot_curves, plot_profile):
        drawn = plot(data, tmp_path / f"{plot.__name__}.png")
        assert drawn["bands"] == banded, (plot.__name__, drawn)
        assert ("95%" in drawn["title"]) == (banded > 0), drawn["title"]
        if 0 < banded < len(runs_per_group):
            assert f"{MIN_RUNS}" in drawn["title"], drawn["title"]  # which groups have one
        check_png(tmp_path / f"{plot.__name__}.png")
    assert plurals_wrong(" ".join(plot_curves(data, tmp_path / "c.png")["labels"])) == []


def test_critic_loss_of_stl_sac_runs_made_before_the_field_is_mean():
    """stable-baselines3's SAC always took the mean over its two critics: an stl_sac run without
    the field reads as mean, an MT-SAC one as sum."""
    from mtrl.report import settings
    from mtrl.report_shared import Run

    old_stl = Run(path=None, summary={"agent": "stl_sac", "balancer": "ew"}, evals=[], config={"agent": "stl_sac"})
    old_mtsac = Run(path=None, summary={"balancer": "ew"}, evals=[], config={"agent": "mtsac"})
    new_mtsac = Run(path=None, summary={"balancer": "ew", "critic_loss": "mean"}, evals=[], config={})
    assert [settings(r)["critic_loss"] for r in (old_stl, old_mtsac, new_mtsac)] == ["mean", "sum", "mean"]
