"""`mtrl bench`: the JSON keys the issue fixes, and figures that must hold whatever the speed
(ratios defined against EW, the batched per-task gradients equal to K backward passes). No
assertion here is about wall-clock time."""

from __future__ import annotations

import json
import math

import pytest
import torch

import mtrl.bench
from mtrl.balancers import available_balancers
from mtrl.cli import main
from mtrl.config import load_config
from tests.conftest import CHEAP_TASKS, REPO, SMOKE

TINY = mtrl.bench.BenchPlan(vector_steps=10, train_steps=2, warmup_updates=1, rounds=2, updates=1, grad_repeats=1,
                            eval_episodes=1)  # fmt: skip


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "out.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mtrl.bench, "QUICK", TINY)
        assert main(["bench", "--config", str(SMOKE), "--quick", "--balancers", "cagrad,famo", "--json", str(path),
                     "compile=false"]) == 0  # compile on and off: tests/test_compile.py (-m compile)
    return json.loads(path.read_text())


def test_json_has_the_issue_keys_for_every_strategy_and_balancer(figures):
    for key in ("device", "env_steps_per_s_raw", "env_steps_per_s_collect", "updates_per_s", "update_ratio_vs_ew",
                "pertask_grad_speedup", "balance_ops", "update_ops", "balance_host_syncs", "balance_host_s"):  # fmt: skip
        assert key in figures
    assert figures["device"].startswith("cpu")
    strategies = {"auto", "sync", "async"}
    assert set(figures["env_steps_per_s_raw"]) == set(figures["env_steps_per_s_collect"]) == strategies
    assert set(figures["cpu_us_per_transition_raw"]) == set(figures["cpu_vs_sync"]) == strategies
    assert figures["eval_s"]["episodes_per_task"] == 1
    cores = mtrl.bench.default_workers()
    assert set(figures["eval_s"]["seconds"]) == {"sync x1", "auto x1", "auto x5"} | ({f"auto x5 w{cores}"} if cores > 1 else set())
    counts = [str(w) for w in mtrl.bench.worker_counts(10)]  # JSON keys are strings
    assert counts[0] == "1" and (len(counts) > 1) == (cores > 1)
    for kind in ("raw_ms", "policy_ms", "cpu_us_per_transition"):
        assert list(figures["env_workers"][kind]) == counts and all(v > 0 for v in figures["env_workers"][kind].values())
    assert list(figures["updates_per_s"]) == ["ew", "cagrad", "famo"]  # EW always, and first
    assert all(rate > 0 for rate in figures["updates_per_s"].values())
    assert figures["compile"] is None  # compile=false: not measured


def test_ratios_are_update_times_relative_to_ew(figures):
    rates, ratios = figures["updates_per_s"], figures["update_ratio_vs_ew"]
    assert ratios["ew"] == 1.0
    for name, rate in rates.items():
        assert ratios[name] == pytest.approx(rates["ew"] / rate, rel=1e-12)
    for s, raw in figures["env_steps_per_s_raw"].items():
        assert figures["collect_vs_raw"][s] == pytest.approx(figures["env_steps_per_s_collect"][s] / raw, rel=1e-12)


def test_cpu_ratios_and_phase_projection_follow_the_measured_figures(figures):
    cpu = figures["cpu_us_per_transition_raw"]
    assert all(us > 0 for us in cpu.values())
    for s, ratio in figures["cpu_vs_sync"].items():
        assert ratio == pytest.approx(cpu["sync"] / cpu[s], rel=1e-12)
    cfg = load_config(SMOKE)
    p = figures["projected_phase_hours"]
    assert p["evaluations"] == cfg.total_env_steps // cfg.eval_every
    assert p["eval_transitions"] == p["evaluations"] * cfg.eval_episodes * 10 * cfg.max_episode_steps
    raw = figures["env_steps_per_s_raw"][cfg.vector_strategy]
    assert p["evaluation"] == pytest.approx(p["eval_transitions"] / raw / 3600, rel=1e-12)
    assert p["collection"] == pytest.approx(cfg.total_env_steps / figures["env_steps_per_s_collect"][cfg.vector_strategy] / 3600)


def test_batched_per_task_gradients_equal_k_backward_passes(figures):
    assert figures["pertask_grad_max_abs_diff"] < 1e-5
    g = figures["pertask_grad_s"]
    assert figures["pertask_grad_speedup"] == pytest.approx(g["loop"] / g["batched"], rel=1e-12)


def test_operation_and_sync_counts(figures):
    """CAGrad solves on the host: a few device ops and exactly one synchronisation per call (its
    Gram matrix copy), with its solve timed on the host; EW and FAMO never cross. EW's update
    has the trainer's own non-finite checks only (issue 12 removes them)."""
    ops, syncs, host = figures["balance_ops"], figures["balance_host_syncs"], figures["balance_host_s"]
    assert ops["ew"] <= 5 and syncs["ew"] == 0 and host["ew"] == 0.0
    assert 0 < ops["cagrad"] <= 100 and syncs["cagrad"] == 1 and host["cagrad"] > 0
    assert syncs["famo"] == 0 and host["famo"] == 0.0
    # a whole update: the critic's and the actor's balancer, each crossing once
    assert figures["update_host_syncs"]["cagrad"] == figures["update_host_syncs"]["ew"] + 2
    assert figures["update_ops"]["cagrad"] > figures["update_ops"]["ew"]


def test_count_ops_sees_host_reads_and_skips_host_solves():
    import torch

    from mtrl.bench_counters import host_solve

    x = torch.ones(4)
    with mtrl.bench.CountOps() as counted:
        y = x * 2
        float(y.sum())  # a host read: one op for the sum, one _local_scalar_dense
        with host_solve():
            (x + 1).sum()  # host work: not device ops
    assert counted.count == 3 and counted.syncs == 1


def test_projected_full_run_follows_the_measured_rates(figures):
    from mtrl.config import load_config

    cfg = load_config(SMOKE)
    collect = figures["env_steps_per_s_collect"][cfg.vector_strategy]
    updates = (cfg.total_env_steps - cfg.warmup_env_steps) / 10 * cfg.updates_per_vector_step
    for name, rate in figures["updates_per_s"].items():
        hours = (cfg.total_env_steps / collect + updates / rate) / 3600
        assert figures["projected_full_run_hours"][name] == pytest.approx(hours, rel=1e-9)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--balancers", "ew,bogus"], "unknown balancer bogus"),
        (["--json", "/nonexistent-dir/out.json"], "does not exist"),
        (["batch_size=-1"], "batch_size"),
    ],
)
def test_bad_bench_input_exits_2_with_one_line(argv, fragment, capsys):
    assert main(["bench", "--config", str(SMOKE), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1


@pytest.fixture
def one_thread():
    """A 16-wide network gains nothing from a second thread; on a busy 2-core machine spinning
    threads make these benches several times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("preset", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.stem)
@pytest.mark.filterwarnings("error:.*requires_grad")  # a gradient the bench took is still in a graph
def test_quick_bench_runs_on_every_preset(preset, tmp_path, one_thread):
    """`mtrl bench --quick --config <preset>` as a user runs it (the QUICK plan, every balancer)
    with the preset's own settings (multi-head, depth, balancer, episode length) and its sizes cut
    to seconds: width 16 at the preset's depth, 4 transitions per task in a batch, no compile, and
    two cheap gymnasium tasks for its task set (MT10 built twice, sync and async, takes 20-30 s a
    preset here, MT50 minutes)."""
    hidden = [16] * len(load_config(preset).sac.hidden_sizes)
    path = tmp_path / "bench.json"
    shrink = [f"taskset={CHEAP_TASKS}", "batch_size=8", "buffer_size=2000", f"sac.hidden_sizes={hidden}",
              "compile=false"]  # fmt: skip
    assert main(["bench", "--config", str(preset), "--quick", "--json", str(path), *shrink]) == 0
    f = json.loads(path.read_text())
    assert (f["taskset"], f["hidden_sizes"]) == (CHEAP_TASKS, hidden)
    assert list(f["updates_per_s"]) == ["ew", *(b for b in available_balancers() if b != "ew")]
    for key in ("updates_per_s", "balance_s"):
        assert all(math.isfinite(v) and v > 0 for v in f[key].values()), key
    # the host solvers got gradients they can read: one crossing and a solve on the host
    for name in ("cagrad", "fairgrad", "imgrad", "mgda", "nash_mtl"):
        assert f["balance_host_syncs"][name] == 1 and f["balance_host_s"][name] > 0, name
    assert f["pertask_grad_max_abs_diff"] < 1e-5


def run_host_solver_bench(*args: str):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "scripts/bench_host_solvers.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_host_solver_bench_script_compares_against_a_revision():
    """scripts/bench_host_solvers.py as a user runs it, at a tiny size: this tree against HEAD,
    one line per method and K with a positive new / old ratio."""
    out = run_host_solver_bench("--base", "HEAD", "--calls", "2", "--repeat", "1", "--k", "3", "4")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for k in (3, 4):
        for method in ("mgda", "imgrad", "cagrad"):
            (line,) = [ln for ln in lines if ln.startswith(f"K={k:3d} {method}")]
            ratios = [float(part.split("(")[1].rstrip(")")) for part in line.split() if part.startswith("(")]
            assert ratios and all(r > 0 for r in ratios), line


def test_host_solver_bench_script_refuses_an_unknown_revision():
    out = run_host_solver_bench("--base", "no-such-revision", "--calls", "1", "--k", "3")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "no-such-revision" in out.stderr
