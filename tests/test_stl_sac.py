"""The single-task SAC baseline (stable-baselines3) trains in the run loop MT-SAC trains in and
writes the same run directory (README.md, "A run directory"), so reports read it beside the
balancers; its bad input exits 2."""

import importlib.util
import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtrl.checkpoint import list_checkpoints
from mtrl.cli import main
from tests.conftest import REPO, SMOKE
from tests.test_train_smoke import SUMMARY_KEYS

MT3 = REPO / "docs" / "examples" / "mt3.yaml"
TASKS = ["reach-v3", "push-v3", "drawer-close-v3"]
ARGS = [
    "--config",
    str(SMOKE),
    "--agent",
    "stl_sac",
    f"taskset={MT3}",
    "batch_size=12",
    "total_env_steps=150",
    "warmup_env_steps=30",
    "eval_every=90",
    "eval_episodes=1",
    "checkpoint_every=60",
    "log_every=30",
    "max_episode_steps=20",
]


@pytest.fixture(scope="module")
def stl_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("stl") / "run"
    assert main(["train", "--run-dir", str(run_dir), *ARGS]) == 0
    return run_dir


def test_summary_and_eval_log(stl_run):
    summary = json.loads((stl_run / "summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS and summary["method"] == summary["agent"] == "stl_sac"
    assert summary["env_steps"] == 150 and list(summary["final_success"]) == TASKS
    # per task: 50 transitions, the first 10 random, then one SB3 update per step
    assert summary["updates"] == 3 * (50 - 10)
    evals = [json.loads(line) for line in (stl_run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [90, 150]
    assert list(evals[-1]["success"]) == TASKS and list(evals[-1]["return"]) == TASKS
    assert summary["final_success"] == evals[-1]["success"]
    assert summary["best_success_mean"] == max(e["success_mean"] for e in evals)


def test_tensorboard_tags(stl_run):
    ea = EventAccumulator(str(stl_run / "tb"), size_guidance={"scalars": 0})
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    for prefix in [
        "eval/success_rate",
        "eval/return",
        "train/success_rate",
        "train/return",
        "loss/critic",
        "loss/actor",
        "alpha",
    ]:
        assert {f"{prefix}/{t}" for t in TASKS} <= tags, prefix
    assert {"eval/success_rate_mean", "perf/env_steps_per_s", "perf/updates_per_s"} <= tags
    # 20-step episodes: one finished training episode per task every 20 per-task steps = 60 env steps
    assert [e.step for e in ea.Scalars("train/return/push-v3")] == [60, 120]


def test_checkpoints_and_resume(stl_run, tmp_path):
    assert [p.name for p in list_checkpoints(stl_run)] == ["ckpt_000000000120.pt", "ckpt_000000000150.pt"]
    state = torch.load(list_checkpoints(stl_run)[-1], weights_only=False)
    assert state["counters"]["env_steps"] == 150 and state["counters"]["updates"] == 3 * (50 - 10)
    # every model as SB3 saves it (a zip archive) and its replay buffer, one per task
    assert len(state["sb3_models"]) == len(state["sb3_replay_buffers"]) == 3
    assert all(saved[:2] == b"PK" for saved in state["sb3_models"])
    import shutil

    run = tmp_path / "run"
    shutil.copytree(stl_run, run)
    assert main(["train", "--resume", str(run), "total_env_steps=210"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 210 and summary["updates"] == 3 * (70 - 10)
    assert [json.loads(line)["step"] for line in (run / "eval.jsonl").read_text().splitlines()] == [90, 150, 180, 210]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--balancer", "cagrad"], "agent 'stl_sac' trains one SAC per task and has no balancer"),
        (["sac.multi_head=true"], "sac.multi_head applies to agent 'mtsac' only"),
        (["sac.critic_lr=0.001"], "has one learning rate"),
        (["--agent", "ppo"], "valid: mtsac, stl_sac"),
    ],
)
def test_bad_stl_options_exit_2(extra, message, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--run-dir", str(run_dir), *ARGS, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not run_dir.exists()


def test_missing_sb3_names_the_extra(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "stable_baselines3" else real(name, *a)
    )
    assert main(["train", "--run-dir", str(tmp_path / "run"), *ARGS]) == 2
    assert "pip install 'mtrl[sb3]'" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_report_puts_the_baseline_beside_a_balancer(stl_run, tmp_path):
    """`mtrl report` reads the stl_sac run directory as it reads MT-SAC's: one group per method,
    its per-task final success taken from the run's own evaluation."""
    pytest.importorskip("rliable")
    mt_run = tmp_path / "ew"
    mt_args = [a for a in ARGS if a not in ("--agent", "stl_sac")]
    assert main(["train", "--run-dir", str(mt_run), *mt_args]) == 0
    out = tmp_path / "report"
    assert main(["report", str(stl_run), str(mt_run), "--out", str(out), "--reps", "200"]) == 0
    data = json.loads((out / "report.json").read_text())
    assert set(data["methods"]) == {"stl_sac", "ew"}
    stl_final = json.loads((stl_run / "summary.json").read_text())["final_success"]
    assert data["methods"]["stl_sac"]["per_task_final"] == pytest.approx(stl_final)
    assert data["methods"]["stl_sac"]["curve"]["steps"] == [90, 150]
    assert "stl_sac" in (out / "per_task_success.csv").read_text().splitlines()[0]
