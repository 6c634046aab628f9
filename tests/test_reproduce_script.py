"""scripts/reproduce_mt10.sh: the grid it prints, the time it projects from `mtrl bench`
figures, resumability (finished runs leave the projection), and bad arguments."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import CHEAP_TASKS, REPO

SCRIPT = REPO / "scripts" / "reproduce_mt10.sh"
BALANCERS = ["ew", "imgrad", "cagrad", "nash_mtl", "db_mtl"]
PRESETS = ["mt10", "mt10_mh"]
# hours per run as `mtrl bench` would project them (the script's cache, DIR/bench_<preset>.json)
HOURS = {"mt10": dict(zip(BALANCERS, [10.0, 12.0, 13.0, 11.0, 10.5])),
         "mt10_mh": dict(zip(BALANCERS, [10.5, 12.5, 13.5, 11.5, 11.0]))}  # fmt: skip


def run(*args, env=None):
    env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, check=False)


def test_dry_run_prints_the_grid_and_the_projection_and_trains_nothing(tmp_path):
    out = tmp_path / "repro"
    out.mkdir()
    for preset, hours in HOURS.items():
        figures = {"device": "cpu (test)", "taskset": "MT10", "hidden_sizes": [400, 400, 400], "batch_size": 1280,
                   "projected_full_run_hours": hours}  # fmt: skip
        (out / f"bench_{preset}.json").write_text(json.dumps(figures))
    finished = out / "mt10" / "cagrad" / "seed2"
    finished.mkdir(parents=True)
    (finished / "summary.json").write_text("{}")

    proc = run("--dry-run", "--seeds", "2", "--jobs", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("grid: 2 presets x 5 balancers x 2 seeds = 20 runs")
    grid = [line.split()[:2] for line in lines if line.startswith("  configs/")]
    assert grid == [[f"configs/{p}.yaml", b] for p in ("mt10", "mt10_mh") for b in BALANCERS]
    total = sum(h * 2 for hours in HOURS.values() for h in hours.values())
    left = total - HOURS["mt10"]["cagrad"]  # one of its two seeds is finished
    assert f"projected: {total:.1f} h for the whole grid one run at a time, {left:.1f} h for the runs not finished" in proc.stdout
    assert "--jobs 3 divides that by at most 3" in proc.stdout
    assert lines[-1] == "dry run: nothing trained"
    assert "benchmarking" not in proc.stdout  # the cached figures were used
    assert sorted(p.name for p in out.iterdir()) == ["bench_mt10.json", "bench_mt10_mh.json", "mt10"]
    assert [p.name for p in (out / "mt10").iterdir()] == ["cagrad"]


@pytest.mark.parametrize("args", [["--jobs", "0"], ["--seeds", "x"], ["--frobnicate"]])
def test_bad_arguments_exit_2(args, tmp_path):
    proc = run(*args, "--dry-run", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "reproduce_mt10.sh:" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_help_prints_the_header_and_nothing_else():
    proc = run("--help")
    assert proc.returncode == 0 and proc.stdout.startswith("The MT10 table")
    assert "MTRL_BENCH_OVERRIDES" in proc.stdout and "set -euo" not in proc.stdout and "#" not in proc.stdout


def test_dry_run_benches_when_no_figures_are_cached(tmp_path):
    """A real `mtrl bench --quick` per preset, this checkout's (the script runs ${PYTHON} -m
    mtrl.cli from the repository), on a tiny network and two cheap gymnasium tasks: seconds."""
    cheap = (f"taskset={CHEAP_TASKS} batch_size=8 buffer_size=2000 sac.hidden_sizes=[16,16,16] compile=false "
             "torch_threads=1")  # fmt: skip
    out = tmp_path / "repro"
    out.mkdir()
    proc = run("--dry-run", "--out", str(out), env={"MTRL_BENCH_OVERRIDES": cheap})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    for preset in PRESETS:
        assert f"benchmarking configs/{preset}.yaml" in proc.stdout
        figures = json.loads((out / f"bench_{preset}.json").read_text())
        assert figures["quick"] and (figures["taskset"], figures["hidden_sizes"]) == (CHEAP_TASKS, [16] * 3)
        assert list(figures["updates_per_s"]) == list(figures["projected_full_run_hours"]) == BALANCERS
    assert "projected: " in proc.stdout and proc.stdout.splitlines()[-1] == "dry run: nothing trained"
    # the figures and the bench's output, nothing trained
    assert sorted(p.name for p in out.iterdir()) == [f"bench_{p}.{e}" for p in PRESETS for e in ("json", "txt")]
