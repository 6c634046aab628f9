"""A smoke-preset run through the CLI writes the run directory and TensorBoard tags that README.md
("A run directory") lists, and resuming from a checkpoint continues the run exactly."""

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from envs.tasksets import get_taskset
from mtrl.checkpoint import list_checkpoints
from mtrl.cli import main
from mtrl.config import load_config, to_dict
from tests.conftest import SMOKE

TASKS = get_taskset("MT10").tasks
SUMMARY_KEYS = {
    "taskset",
    "balancer",
    "method",
    "agent",
    "seed",
    "env_steps",
    "updates",
    "wall_time_s",
    "final_success_mean",
    "best_success_mean",
    "final_success",
    "env_steps_per_s",
    "updates_per_s",
    "critic_loss",
}


def _events(run_dir) -> EventAccumulator:
    ea = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    ea.Reload()
    return ea


def scalar_steps(run_dir) -> dict[str, list[int]]:
    ea = _events(run_dir)
    return {tag: [e.step for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def test_run_directory_layout(smoke_run):
    assert (smoke_run / "tb").is_dir()
    assert list_checkpoints(smoke_run), "no checkpoint written"
    assert not list((smoke_run / "checkpoints").glob("*.tmp")), "a temporary checkpoint was left behind"
    summary = json.loads((smoke_run / "summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert summary["method"] == "ew" and summary["agent"] == "mtsac"
    assert summary["critic_loss"] == "mean"  # `mtrl report` reads a run without it as made with the sum
    assert summary["env_steps"] == 3000 and summary["updates"] == (3000 - 1000) // 10
    assert set(summary["final_success"]) == set(TASKS)
    evals = [json.loads(line) for line in (smoke_run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [1500, 3000]
    assert set(evals[-1]["success"]) == set(TASKS) and set(evals[-1]["return"]) == set(TASKS)
    assert summary["final_success"] == evals[-1]["success"]


def test_config_yaml_is_the_resolved_config(smoke_run):
    saved = yaml.safe_load((smoke_run / "config.yaml").read_text())
    assert saved == to_dict(load_config(SMOKE))
    assert to_dict(load_config(smoke_run / "config.yaml")) == saved


def test_tensorboard_tags(smoke_run):
    tags = scalar_steps(smoke_run)
    per_task = [
        "eval/success_rate",
        "eval/return",
        "train/success_rate",
        "train/return",
        "loss/critic",
        "loss/actor",
        "alpha",
    ]
    for prefix in per_task:
        for task in TASKS:
            assert f"{prefix}/{task}" in tags, f"{prefix}/{task} missing"
    for tag in ["eval/success_rate_mean", "perf/env_steps_per_s", "perf/updates_per_s"]:
        assert tag in tags
    # one training episode per task every 50 vector steps (500 env steps)
    assert tags["train/success_rate/reach-v3"] == list(range(500, 3001, 500))


def test_update_statistics_in_tensorboard(smoke_run):
    """The per-task statistics of the applied update, at the grad_stats_every cadence, for both
    losses; consistent with the logged norms (shares sum to 1) and, for EW's d = mean gradient,
    the projections sum to K |d| > 0."""
    ea = _events(smoke_run)
    values = {tag: [e.value for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}
    steps = scalar_steps(smoke_run)
    for loss in ("critic", "actor"):
        for key in ("norm", "norm_share", "proj", "cos_update"):
            for task in TASKS:
                assert steps[f"grad/{loss}/{key}/{task}"] == steps[f"grad/{loss}/norm/{TASKS[0]}"], (loss, key, task)
        expected = steps[f"grad/{loss}/norm/{TASKS[0]}"]
        assert len(expected) == 4  # updates 0, 50, 100, 150 of 200
        keys = ("norm", "norm_share", "proj", "cos_update")
        per = {key: np.array([values[f"grad/{loss}/{key}/{t}"] for t in TASKS]) for key in keys}
        np.testing.assert_allclose(per["norm_share"], per["norm"] / per["norm"].sum(axis=0), rtol=1e-5)
        assert np.all(np.abs(per["cos_update"]) <= 1 + 1e-6)
        # proj_t = |g_t| cos(g_t, d)
        np.testing.assert_allclose(per["proj"], per["norm"] * per["cos_update"], rtol=1e-4, atol=1e-7)
        assert np.all(per["proj"].sum(axis=0) > 0)


def test_resume_after_a_crash_continues_exactly(smoke_run, tmp_path):
    """Simulate a crash after the checkpoint at 2000 env steps: the run went on to 3000 (its
    TensorBoard events and eval line at 3000 exist) but the last checkpoint is lost. Resuming
    must drop what came after the checkpoint and end with exactly the uninterrupted run's
    parameters (same data, same noise, same goals), with no duplicate points. The resumed run
    steps its envs in 3 worker processes (the run itself used one): the workers change no
    transition."""
    run = tmp_path / "crashed"
    shutil.copytree(smoke_run, run)
    (run / "summary.json").unlink()
    ckpts = list_checkpoints(run)
    assert [p.name for p in ckpts] == ["ckpt_000000002000.pt", "ckpt_000000003000.pt"]
    ckpts[-1].unlink()

    assert main(["train", "--resume", str(run), "env_workers=3"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text()) == yaml.safe_load((smoke_run / "config.yaml").read_text())

    final = torch.load(list_checkpoints(run)[-1], weights_only=False)
    reference = torch.load(list_checkpoints(smoke_run)[-1], weights_only=False)
    assert final["counters"]["env_steps"] == reference["counters"]["env_steps"] == 3000
    assert final["counters"]["updates"] == reference["counters"]["updates"]
    for name, value in reference["agent"].items():
        assert torch.equal(final["agent"][name], value), name
    assert torch.equal(final["replay"]["data"], reference["replay"]["data"])

    evals = [json.loads(line)["step"] for line in (run / "eval.jsonl").read_text().splitlines()]
    assert evals == [1500, 3000]
    for tag, steps in scalar_steps(run).items():
        assert steps == sorted(set(steps)), f"{tag} has duplicate or out-of-order steps: {steps}"
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 3000


def test_mtrl_eval_reports_every_task_and_matches_the_runs_own_evaluation(smoke_run, capsys):
    """`mtrl eval` rebuilds the agent from the last checkpoint; with the run's own episode count
    and seed it must reproduce the final evaluation written during training."""
    assert main(["eval", str(smoke_run), "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    final = json.loads((smoke_run / "eval.jsonl").read_text().splitlines()[-1])
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    for task in TASKS:
        assert float(rows[task][1]) == final["success"][task]
        assert float(rows[task][2]) == pytest.approx(final["return"][task], abs=0.05)


def test_async_envs_overlap_updates_with_stepping_and_lag_one_vector_step(smoke_run, tmp_path):
    """With ``vector_strategy=async`` the updates run while the workers step, so they sample the
    buffer without the current step's transitions: updates start one vector step later (one
    update fewer over the run). The envs themselves are the same: the warm-up transitions
    (random actions, same seeds) are identical to the sync run's."""
    run = tmp_path / "async"
    assert main(["train", "--config", str(SMOKE), "--run-dir", str(run), "vector_strategy=async"]) == 0
    sync = torch.load(list_checkpoints(smoke_run)[-1], weights_only=False)
    overlapped = torch.load(list_checkpoints(run)[-1], weights_only=False)
    cfg = load_config(SMOKE)
    vector_steps = cfg.total_env_steps // 10
    assert sync["counters"]["updates"] == vector_steps - cfg.warmup_env_steps // 10
    assert overlapped["counters"]["updates"] == sync["counters"]["updates"] - 1
    warmup = cfg.warmup_env_steps // 10
    assert torch.equal(overlapped["replay"]["data"][:, :warmup], sync["replay"]["data"][:, :warmup])
    assert not torch.equal(overlapped["replay"]["data"], sync["replay"]["data"])  # the policies differ after


def test_fast_path_and_sync_path_end_with_identical_parameters(smoke_run, tmp_path):
    """The smoke preset runs on the fast path (``vector_strategy: auto`` on Meta-World; on the
    CPU device in one process); the transitions are Meta-World's, so the same run through
    gymnasium's sync vector env ends with the same replay data, parameters and optimizer states,
    bit for bit, and the same evaluations; so do runs with 2 and 3 env worker processes."""
    assert yaml.safe_load((smoke_run / "config.yaml").read_text())["vector_strategy"] == "auto"
    sync = tmp_path / "sync"
    assert main(["train", "--config", str(SMOKE), "--run-dir", str(sync), "vector_strategy=sync"]) == 0
    _assert_same_run(smoke_run, sync)
    for workers in (2, 3):
        run = tmp_path / f"workers{workers}"
        assert main(["train", "--config", str(SMOKE), "--run-dir", str(run), f"env_workers={workers}"]) == 0
        _assert_same_run(run, sync)


def _assert_same_run(run, reference) -> None:
    final = torch.load(list_checkpoints(run)[-1], weights_only=False)
    ref = torch.load(list_checkpoints(reference)[-1], weights_only=False)
    assert torch.equal(final["replay"]["data"], ref["replay"]["data"]), run.name
    for name, value in ref["agent"].items():
        assert torch.equal(final["agent"][name], value), (run.name, name)
    for loss, state in ref["optimizers"].items():
        for key, param_state in state["state"].items():
            for field, value in param_state.items():
                assert torch.equal(final["optimizers"][loss]["state"][key][field], value), (run.name, loss, key, field)
    # evaluation returns are sums of float64 rewards, equal to 1e-9 per step (the replay holds
    # them as float32, bit-identical); successes are identical
    evals, ref_evals = (
        [json.loads(line) for line in (r / "eval.jsonl").read_text().splitlines()] for r in (run, reference)
    )
    assert [e["step"] for e in evals] == [e["step"] for e in ref_evals] == [1500, 3000]
    for f, s in zip(evals, ref_evals, strict=True):
        assert f["success"] == s["success"], run.name
        assert f["return"] == pytest.approx(s["return"], abs=1e-6), run.name
