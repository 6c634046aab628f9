"""A short smoke-preset training run per required balancer, through the CLI: it trains,
logs the gradient statistics and the balancer weights, and leaves finite parameters."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from envs.tasksets import get_taskset
from mtrl.checkpoint import list_checkpoints
from mtrl.cli import main
from tests.conftest import SMOKE

TASKS = get_taskset("MT10").tasks


@pytest.mark.parametrize("balancer", ["imgrad", "cagrad", "nash_mtl", "db_mtl"])
def test_smoke_training_with_balancer(balancer, tmp_path):
    run = tmp_path / balancer
    argv = ["train", "--config", str(SMOKE), "--balancer", balancer, "--run-dir", str(run),
            "total_env_steps=1500", "grad_stats_every=10"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((run / "summary.json").read_text())["balancer"] == balancer

    state = torch.load(list_checkpoints(run)[-1], weights_only=False)
    assert state["counters"]["updates"] == 50
    assert all(torch.isfinite(v).all() for v in state["agent"].values())
    assert set(state["balancers"]) == {"critic", "actor"}

    ea = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    for loss in ("critic", "actor"):
        for key in ("cos_mean", "conflict_frac", "norm_ratio"):
            assert f"grad/{loss}/{key}" in tags
        assert f"balancer/{loss}/solver_failures" in tags
        weights = torch.tensor([[e.value for e in ea.Scalars(f"balancer/{loss}/weight/{t}")] for t in TASKS])
        norms = torch.tensor([[e.value for e in ea.Scalars(f"grad/{loss}/norm/{t}")] for t in TASKS])
        assert weights.shape[1] == 5 and torch.isfinite(weights).all() and torch.isfinite(norms).all()
        # a balancer, not equal weighting in disguise: the weights differ across tasks
        assert (weights.std(dim=0) > 1e-6).any(), f"{balancer} on the {loss} gave equal weights"


def test_resume_restores_balancer_state(tmp_path):
    """DB-MTL counts its calls (k in beta_k) and keeps an EMA buffer: after a resume the count
    goes on from the checkpoint instead of starting over."""
    run = tmp_path / "db_mtl"
    assert main(["train", "--config", str(SMOKE), "--balancer", "db_mtl", "--run-dir", str(run),
                 "total_env_steps=1500"]) == 0  # fmt: skip
    first = torch.load(list_checkpoints(run)[-1], weights_only=False)["balancers"]
    assert first["critic"]["step"] == first["actor"]["step"] == 50
    assert main(["train", "--resume", str(run), "total_env_steps=2000"]) == 0
    second = torch.load(list_checkpoints(run)[-1], weights_only=False)["balancers"]
    assert second["critic"]["step"] == second["actor"]["step"] == 100
    assert not torch.equal(second["actor"]["buffer"], first["actor"]["buffer"])
