"""Slow learning checks: does SAC learn at all, and does a balancer keep up? Run on demand with
``python -m pytest -m slow`` (excluded from the default run by pyproject's addopts).

Each bound sits well below what was measured (README, "Learning checks": figures, commands,
machine), so that the measured seed passes with margin while a broken SAC (a sign error, a
detached target, a stuck temperature, a balancer that drops the gradient) stays near 0."""

import json

import pytest

from mtrl.cli import main
from tests.conftest import REPO

pytestmark = pytest.mark.slow
QUICK = REPO / "configs" / "mt10_quick.yaml"  # 500-step episodes, 50 goals, 2 x 256 networks

# The single-task setting: seed 1, 2 x 256 networks, batch 256, 5k random warm-up.
REACH = ["taskset=MT1:reach-v3", "seed=1", "device=cpu", "batch_size=256", "warmup_env_steps=5000",
         "buffer_size=100000", "eval_every=10000", "eval_episodes=10", "log_every=1000"]  # fmt: skip


def _train(run_dir, overrides) -> dict[int, float]:
    """Train from the quick preset; {env step: mean evaluation success}."""
    assert main(["train", "--config", str(QUICK), "--run-dir", str(run_dir), *overrides]) == 0
    lines = (run_dir / "eval.jsonl").read_text().splitlines()
    return {e["step"]: e["success_mean"] for e in map(json.loads, lines)}


def test_sac_learns_mt1_reach(tmp_path):
    evals = _train(tmp_path / "reach", [*REACH, "total_env_steps=40000", "checkpoint_every=40000"])
    assert max(evals[30000], evals[40000]) >= 0.4, evals


def test_quick_preset_succeeds_on_mt10_early(tmp_path):
    """Within 100k transitions the quick preset solves its first task (drawer-close in every
    measured run), so some evaluation's mean success over the 10 tasks reaches 0.05."""
    evals = _train(tmp_path / "quick", ["device=cpu", "total_env_steps=100000", "eval_every=25000", "eval_episodes=5",
                                        "checkpoint_every=50000"])  # fmt: skip
    assert max(evals.values()) >= 0.05, evals


def test_cagrad_learns_mt1_reach(tmp_path):
    """A required balancer in the loop (per-task gradients, the solver, the direction written
    back): with one task CAGrad's direction is the task's gradient times (1 + c) / (1 + c^2),
    which Adam all but ignores, so it must learn reach as EW does, to the same floor."""
    evals = _train(tmp_path / "cagrad", [*REACH, "total_env_steps=40000", "checkpoint_every=40000", "balancer=cagrad"])
    assert max(evals[30000], evals[40000]) >= 0.4, evals


# gymnasium-robotics' FetchReach with dense reward (docs/tasksets.md, "Goal-conditioned robots"):
# its own 50-step episodes, a 1k-step random warm-up, evaluations every 2k steps
FETCH_REACH = ["taskset=gym:gymnasium_robotics:FetchReachDense-v4", "seed=1", "device=cpu", "max_episode_steps=50",
               "batch_size=256", "warmup_env_steps=1000", "buffer_size=100000", "total_env_steps=20000",
               "eval_every=2000", "eval_episodes=10", "checkpoint_every=20000", "log_every=1000"]  # fmt: skip


def test_sac_learns_fetch_reach(tmp_path):
    """SAC reaches the goal of FetchReach from its goal-conditioned dict observations (flattened),
    success read from the env's is_success: measured 0.9 at 10k steps and 1.0 from 14k on
    (seed 1, docs/tasksets.md), so 0.6 over the last three evaluations leaves margin."""
    pytest.importorskip("gymnasium_robotics")
    evals = _train(tmp_path / "fetch_reach", FETCH_REACH)
    assert max(evals[s] for s in (16000, 18000, 20000)) >= 0.6, evals

