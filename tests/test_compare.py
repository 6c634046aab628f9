"""`mtrl compare` on the smoke preset: every grid point trained in its own process, re-runs skip
finished runs and resume interrupted ones, a failing run is reported without stopping the
others, bad input writes nothing; the Ray backend on a local Ray; a report of the real runs."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from mtrl.checkpoint import list_checkpoints
from mtrl.cli import main
from mtrl.sweep import build_grid, split_values
from tests.conftest import REPO, SMOKE

SMALL = ["total_env_steps=1500", "warmup_env_steps=500", "eval_every=750", "checkpoint_every=500"]
GRID = ["cagrad/seed1", "cagrad/seed2", "ew/seed1", "ew/seed2"]


def compare(out, *args, balancers="ew,cagrad", seeds=2, overrides=SMALL):
    """`mtrl compare` as a user runs it: a process, its exit status and stderr."""
    argv = ["compare", "--config", str(SMOKE), "--balancers", balancers, "--seeds", str(seeds), "--jobs", "2",
            "--out", str(out), *args, *overrides]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mtrl.cli", *argv], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    return proc.returncode, proc.stderr


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "cmp"
    code, err = compare(out)
    assert code == 0, err
    return out, err


def mtimes(out):
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def copy(compared, tmp_path):
    out = tmp_path / "cmp"
    shutil.copytree(compared[0], out)
    return out


def test_every_grid_point_finishes(compared):
    out, err = compared
    for name in GRID:
        summary = json.loads((out / name / "summary.json").read_text())
        balancer, seed = name.split("/")
        assert (summary["balancer"], f"seed{summary['seed']}", summary["env_steps"]) == (balancer, seed, 1500)
        assert "mtrl: training MT10 with" in (out / name / "train.log").read_text()
    assert sorted(line.split()[2] for line in err.splitlines() if line.startswith("mtrl: start")) == GRID
    assert sum(" done " in line for line in err.splitlines()) == 4
    assert "4 trained, 0 skipped" in err


def test_rerun_skips_finished_runs(compared):
    out, _ = compared
    before = mtimes(out)
    code, err = compare(out)
    assert code == 0, err
    assert sum(line.startswith("mtrl: skip") for line in err.splitlines()) == 4
    assert "mtrl: start" not in err
    after = mtimes(out)
    assert after == before  # no file written, touched or added: nothing trained


def test_interrupted_run_resumes_from_its_checkpoint(compared, tmp_path):
    """The run lost its end (summary and the last checkpoint): it continues from env step 1000."""
    out = copy(compared, tmp_path)
    run = out / "ew" / "seed2"
    (run / "summary.json").unlink()
    list_checkpoints(run)[-1].unlink()
    assert list_checkpoints(run)[-1].name == "ckpt_000000001000.pt"
    code, err = compare(out)
    assert code == 0, err
    assert "start   ew/seed2 (resuming)" in err and err.count("mtrl: skip") == 3
    assert f"mtrl: resuming {run} at env step 1000" in (run / "train.log").read_text()
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 1500
    steps = [json.loads(line)["step"] for line in (run / "eval.jsonl").read_text().splitlines()]
    assert steps == [750, 1500]  # the evaluation at 1500 was redone once, not appended twice


def test_failing_run_is_reported_and_the_others_finish(compared, tmp_path):
    """A run whose checkpoint is damaged fails at train time (exit 2); the run beside it
    still resumes and finishes, and compare exits 1 naming the failed run and its log."""
    out = copy(compared, tmp_path)
    bad, good = out / "cagrad" / "seed1", out / "ew" / "seed1"
    for run in (bad, good):
        (run / "summary.json").unlink()
        list_checkpoints(run)[-1].unlink()
    list_checkpoints(bad)[-1].write_bytes(b"not a checkpoint")
    code, err = compare(out)
    assert code == 1
    assert f"FAILED  cagrad/seed1 (exit 2), log {bad / 'train.log'}" in err
    assert "cannot be read" in (bad / "train.log").read_text()
    assert json.loads((good / "summary.json").read_text())["env_steps"] == 1500
    assert "1 trained, 2 skipped (finished), 1 failed" in err


def test_a_different_config_in_the_way_is_an_error(compared):
    out, _ = compared
    before = mtimes(out)
    code, err = compare(out, overrides=[*SMALL[1:], "total_env_steps=3000"])
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1
    assert "holds a different run: total_env_steps=1500 (grid: 3000)" in err
    assert mtimes(out) == before


@pytest.mark.parametrize(
    "args,message",
    [
        (["--balancers", "ew,nope"], "unknown balancer 'nope'; valid:"),
        (["--balancers", "ew", "--seeds", "0"], "--seeds must be > 0"),
        (["--balancers", "ew,cagrad", "--set", "balancer.kwargs.c=0.5,high"], "expects float, got 'high'"),
        (["--balancers", "ew", "--set", "balancer.kwargs.c=0.5,0.9"], "none of ew has a hyperparameter 'c'"),
        (["--balancers", "ew", "--set", "sac.nope=1,2"], "unknown config key 'sac.nope'"),
        (["--balancers", "ew", "--set", "seed=1,2"], "use --balancers or --seeds"),
        (["--balancers", "ew", "balancer=cagrad"], "conflicts with --balancers"),
        (["--balancers", "ew", "--jobs", "0"], "--jobs must be > 0"),
        (["--balancers", "ew", "--address", "auto"], "needs --backend ray"),
    ],
)
def test_bad_input_exits_2_and_creates_nothing(args, message, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--config", str(SMOKE), "--out", str(out), *args]
    if "--seeds" not in args:
        argv += ["--seeds", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtrl: error: ") and len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_grid_names_seeds_and_swept_values(tmp_path):
    points = build_grid(SMOKE, ["ew", "cagrad"], 2, {"balancer.kwargs.c": ["0.5", "0.9"]}, {"seed": "10"}, tmp_path)
    assert [p.name for p in points] == [
        "ew/seed10", "ew/seed11", "cagrad_c0.5/seed10", "cagrad_c0.5/seed11", "cagrad_c0.9/seed10", "cagrad_c0.9/seed11",
    ]  # fmt: skip
    assert [p.cfg.seed for p in points] == [10, 11] * 3
    assert [p.cfg.balancer.kwargs.get("c") for p in points] == [None, None, 0.5, 0.5, 0.9, 0.9]
    assert split_values("[32,32],[64, 64]") == ["[32,32]", "[64, 64]"]
    swept = build_grid(SMOKE, ["ew"], 1, {"sac.hidden_sizes": ["[32,32]", "[64]"]}, {}, tmp_path)
    assert [p.name for p in swept] == ["ew_hidden_sizes32-32/seed1", "ew_hidden_sizes64/seed1"]
    assert [p.cfg.sac.hidden_sizes for p in swept] == [[32, 32], [64]]


def test_report_of_the_compare(compared, tmp_path):
    from tests.test_report import check_png

    pytest.importorskip("rliable")
    out = tmp_path / "report"
    assert main(["report", str(compared[0]), "--out", str(out), "--reps", "500"]) == 0
    data = json.loads((out / "report.json").read_text())
    assert {m: len(d["runs"]) for m, d in data["methods"].items()} == {"cagrad": 2, "ew": 2}
    for d in data["methods"].values():
        assert d["curve"]["steps"] == [750, 1500]
        assert d["grad"]["grad/critic/conflict_frac"] is not None  # logged every grad_stats_every updates
    for name in ("learning_curves.png", "performance_profile.png", "aggregates.png"):
        check_png(out / name)


def test_ray_backend_on_a_local_ray(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    # Ray starts its workers at niceness +15 by default: on a busy machine (CI shares ours) the
    # one run then crawls (24 min measured for this test at load 18, against seconds when idle)
    monkeypatch.setenv("RAY_worker_niceness", "0")
    out = tmp_path / "cmp"
    code, err = compare(out, "--backend", "ray", balancers="ew", seeds=1,
                        overrides=["total_env_steps=1000", "warmup_env_steps=500", "checkpoint_every=500"])  # fmt: skip
    assert code == 0, err
    summary = json.loads((out / "ew" / "seed1" / "summary.json").read_text())
    assert summary["env_steps"] == 1000 and summary["balancer"] == "ew"
    assert "[1/1] done    ew/seed1" in err


def test_ray_missing_exits_2_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    out = tmp_path / "cmp"
    argv = ["compare", "--config", str(SMOKE), "--balancers", "ew", "--seeds", "1", "--backend", "ray", "--out", str(out)]
    assert main(argv) == 2
    assert "pip install 'mtrl[ray]'" in capsys.readouterr().err
    assert not out.exists()
