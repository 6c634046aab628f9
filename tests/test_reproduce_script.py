"""scripts/reproduce_mt10.sh: the grid it prints, the time it projects from `mtrl bench`
figures, resumability (finished runs leave the projection), and bad arguments."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "reproduce_mt10.sh"
BALANCERS = ["ew", "imgrad", "cagrad", "nash_mtl", "db_mtl"]
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


@pytest.mark.slow
def test_dry_run_benches_when_no_figures_are_cached(tmp_path):
    # a real `mtrl bench --quick` per preset, on a tiny network and two cheap gym tasks (minutes on 2 cores)
    cheap = "taskset=gym:MountainCarContinuous-v0,InvertedDoublePendulum-v5 batch_size=20 sac.hidden_sizes=[16,16]"
    proc = run("--dry-run", "--out", str(tmp_path), env={"MTRL_BENCH_OVERRIDES": cheap})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    for preset in ("mt10", "mt10_mh"):
        figures = json.loads((tmp_path / f"bench_{preset}.json").read_text())
        assert set(figures["projected_full_run_hours"]) == set(BALANCERS)
    assert "projected: " in proc.stdout and proc.stdout.splitlines()[-1] == "dry run: nothing trained"
