"""Sweeps over structured values: `--set` values are YAML as typed (lists, mappings, the stages
list), split only outside brackets and quotes, and name their directories in a short readable
form; a grid of static weight vectors against grad_norm_scaling and EW, trained for real, skips
its finished runs when re-run, and its report carries the static-grid section."""

import json
import os
import re
import subprocess
import sys

import pytest

from mtrl.cli import main
from mtrl.sweep import NAME_LIMIT, build_grid, parse_sweeps, split_values, value_name
from tests.conftest import CHEAP_TASKS, REPO, SMOKE


def test_split_values_keeps_brackets_braces_and_quotes_whole():
    assert split_values("[1,1,4],[4, 1, 1]") == ["[1,1,4]", "[4, 1, 1]"]
    assert split_values("{reach-v3: 4, push-v3: 2},{reach-v3: 1}") == ["{reach-v3: 4, push-v3: 2}", "{reach-v3: 1}"]
    assert split_values("'a,b',\"c,d\",e") == ["'a,b'", '"c,d"', "e"]
    stages = "[{until: 1000, balancer: ew}, {balancer: cagrad}],[{balancer: ew}]"
    assert split_values(stages) == ["[{until: 1000, balancer: ew}, {balancer: cagrad}]", "[{balancer: ew}]"]
    assert parse_sweeps(["balancer.kwargs.weights=[1,3],[3,1]"]) == {"balancer.kwargs.weights": ["[1,3]", "[3,1]"]}


@pytest.mark.parametrize(
    "text,name",
    [("0.5", "0.5"), ("1e-3", "1e-3"), ("[1, 1, 4]", "1-1-4"), ("[0.25, 2.0]", "0.25-2"),
     ("{reach-v3: 4, push-v3: 0.5}", "reach-v3=4+push-v3=0.5"), ("[32,32]", "32-32"), ("a b/c", "a-b-c")],
)  # fmt: skip
def test_value_names_are_short_readable_and_path_safe(text, name):
    assert value_name(text) == name


def test_long_values_end_in_a_digest_that_keeps_them_apart():
    a = value_name("[" + ", ".join(["1"] * 49 + ["2"]) + "]")
    b = value_name("[" + ", ".join(["1"] * 49 + ["3"]) + "]")
    assert a != b and a.startswith("1-1-1-1")
    for name in (a, b):
        assert len(name) <= NAME_LIMIT and re.fullmatch(r"[A-Za-z0-9.+=-]+-[0-9a-f]{6}", name)


def test_grid_of_static_weights_varies_only_static():
    sweeps = {"balancer.kwargs.weights": ["[1,1,1,1,1,1,1,1,1,4]", "{reach-v3: 4, push-v3: 2}"]}
    points = build_grid(SMOKE, ["static", "grad_norm_scaling", "ew"], 2, sweeps, {}, REPO / "runs" / "unused")
    assert [p.name for p in points] == [
        "static_weights1-1-1-1-1-1-1-1-1-4/seed1", "static_weights1-1-1-1-1-1-1-1-1-4/seed2",
        "static_weightsreach-v3=4+push-v3=2/seed1", "static_weightsreach-v3=4+push-v3=2/seed2",
        "grad_norm_scaling/seed1", "grad_norm_scaling/seed2", "ew/seed1", "ew/seed2",
    ]  # fmt: skip
    assert points[0].cfg.balancer.kwargs["weights"] == [1] * 9 + [4]
    assert points[2].cfg.balancer.kwargs["weights"] == {"reach-v3": 4, "push-v3": 2}
    assert "weights" not in points[4].cfg.balancer.kwargs


def test_one_value_typed_two_ways_is_refused():
    from mtrl.config import ConfigError

    with pytest.raises(ConfigError, match="same run directory"):
        build_grid(SMOKE, ["static"], 1, {"balancer.kwargs.weights": ["{reach-v3: 2}", "{reach-v3: 2.0}"]}, {}, REPO / "x")


def test_stages_are_swept_without_balancers_and_named_by_their_labels():
    stages = ["[{until: 1000, balancer: loss_norm}, {balancer: ew}]", "[{until: 2000, balancer: ew}, {balancer: cagrad}]"]
    points = build_grid(SMOKE, [], 1, {"balancer.stages": stages}, {}, REPO / "x")
    assert [p.name for p in points] == ["loss_norm-ew@1k/seed1", "ew-cagrad@2k/seed1"]
    assert [s.until for s in points[1].cfg.balancer.stages] == [2000, None]
    assert points[1].cfg.balancer.stages[1].critic == "cagrad"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--balancers", "static", "--set", "balancer.kwargs.weights=[1,2],[2,1]"], "weights has 2 entries but the task set has 10"),
        (["--balancers", "static", "--set", "balancer.kwargs.weights={reach-v3: 2},{nope: 1}"], "weights name task 'nope'"),
        (["--balancers", "ew", "--set", "balancer.stages=[{balancer: ew}]"], "names every stage's balancers; drop --balancers"),
        (["--set", "balancer.stages=[{balancer: ew}]", "--set", "balancer.kwargs.c=0.5"], "give the hyperparameters inside each stage"),
        (["--set", "sac.gamma=0.9,0.99"], "--balancers needs a comma-separated list"),
    ],
)  # fmt: skip
def test_bad_structured_sweeps_exit_2_and_create_nothing(args, message, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--config", str(SMOKE), "--seeds", "1", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtrl: error: ") and len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


GRID = ["--balancers", "static,grad_norm_scaling", "--seeds", "2", "--set",
        "balancer.kwargs.weights=[1,3],{InvertedDoublePendulum-v5: 3}"]  # fmt: skip
MAPPED = "static_weightsInvertedDoublePendulum-v5=3"
SMALL = [f"taskset={CHEAP_TASKS}", "batch_size=8", "buffer_size=2000", "sac.hidden_sizes=[16,16]",
         "total_env_steps=400", "warmup_env_steps=200", "eval_every=200", "checkpoint_every=200",
         "max_episode_steps=50", "log_every=200"]  # fmt: skip


def compare(out):
    argv = ["compare", "--config", str(SMOKE), "--jobs", "2", "--out", str(out), *GRID, *SMALL]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mtrl.cli", *argv], cwd=REPO, env=env, capture_output=True, text=True)
    return proc.returncode, proc.stderr


def test_static_grid_trains_resumes_skips_and_reports(tmp_path):
    pytest.importorskip("rliable")
    from mtrl.checkpoint import list_checkpoints

    out = tmp_path / "grid"
    code, err = compare(out)
    assert code == 0, err
    names = sorted(str(p.parent.relative_to(out)) for p in out.rglob("summary.json"))
    assert names == sorted(f"{g}/seed{s}" for g in ("grad_norm_scaling", MAPPED, "static_weights1-3") for s in (1, 2))
    summary = json.loads((out / MAPPED / "seed1" / "summary.json").read_text())
    assert summary["method"] == "static"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(out / MAPPED / "seed1" / "tb"), size_guidance={"scalars": 0})
    tb.Reload()
    for loss in ("critic", "actor"):  # the weights the updates used: 1 for the unnamed task, 3 for the named one
        logged = [{e.value for e in tb.Scalars(f"balancer/{loss}/weight/{t}")} for t in CHEAP_TASKS[4:].split(",")]
        assert logged == [{0.25}, {0.75}]
    # an interrupted run of a mapping-valued grid point resumes from its own config.yaml
    run = out / MAPPED / "seed2"
    (run / "summary.json").unlink()
    list_checkpoints(run)[-1].unlink()
    code, err = compare(out)
    assert code == 0 and "1 trained, 5 skipped" in err and f"start   {MAPPED}/seed2 (resuming)" in err, err
    assert f"mtrl: resuming {run} at env step 200" in (run / "train.log").read_text()
    code, err = compare(out)
    assert code == 0 and "0 trained, 6 skipped" in err, err

    report = tmp_path / "report"
    assert main(["report", str(out), "--out", str(report), "--reps", "200"]) == 0
    grid = json.loads((report / "static_grid.json").read_text())
    assert grid["select_seeds"] == [1] and grid["held_seeds"] == [2]
    assert len(grid["grid"]) == 2 and grid["best"] in grid["grid"]
    assert grid["held_runs"] == {grid["best"]: 1, "grad_norm_scaling": 1}
    assert grid["sentence"].startswith("No verdict:")  # one held-out run per group
    md = (report / "report.md").read_text()
    assert "## Static loss weights: the grid's best against grad_norm_scaling" in md and grid["sentence"] in md
    assert (report / "static_grid.png").stat().st_size > 10_000
