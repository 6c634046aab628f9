"""A real second suite: gymnasium-robotics' Fetch tasks (docs/examples/fetch.yaml), goal-conditioned
with dict observations. Their own envs, no mocks: the flattened layout against a bare env, the
success signal against a controller that reaches the goal, and a few training steps that
checkpoint, evaluate and resume."""

import json

import gymnasium as gym
import numpy as np
import pytest

from envs.tasksets import get_taskset
from envs.vector import make_vector_env
from mtrl.checkpoint import list_checkpoints
from mtrl.cli import main
from tests.conftest import REPO, SMOKE

pytest.importorskip("gymnasium_robotics", reason="the robotics extra: pip install -e '.[robotics]'")

FETCH = REPO / "docs" / "examples" / "fetch.yaml"
REACH = "gym:gymnasium_robotics:FetchReachDense-v4"


def bare_obs(env_id: str, seed: int) -> np.ndarray:
    """The first observation of a bare env seeded like task t's (seed + t), concatenated by hand
    in sorted key order: achieved_goal (3), desired_goal (3), observation."""
    obs, _ = gym.make(env_id).reset(seed=seed)
    return np.concatenate([obs["achieved_goal"], obs["desired_goal"], obs["observation"]])


def test_fetch_set_resolves_with_one_action_space_and_goal_conditioned_obs():
    taskset = get_taskset(str(FETCH))
    assert taskset.kind == "gymnasium" and taskset.num_tasks == 4
    envs = make_vector_env(taskset, seed=5, max_episode_steps=50)
    obs, _ = envs.reset()
    # Reach observes 10 + 3 + 3, the others 25 + 3 + 3: padded to 31, then one-hot of 4
    assert obs.shape == (4, 31 + 4) and obs.dtype == np.float32 and envs.single_action_space.shape == (4,)
    for t, env_id in enumerate(taskset.tasks):
        expected = bare_obs(env_id, seed=5 + t).astype(np.float32)
        np.testing.assert_array_equal(obs[t, : expected.size], expected)
        np.testing.assert_array_equal(obs[t, expected.size : 31], np.zeros(31 - expected.size, np.float32))
        np.testing.assert_array_equal(obs[t, 31:], np.eye(4, dtype=np.float32)[t])
    envs.close()


def test_success_is_fetch_is_success():
    """A proportional controller on (desired - achieved) goal, read from the flattened vector,
    reaches FetchReach's goal within an episode: the vector env's success turns 1 then, as the
    env's own is_success says, and evaluation-style termination ends the episode."""
    envs = make_vector_env(get_taskset(REACH), seed=2, max_episode_steps=50, terminate_on_success=True)
    obs, _ = envs.reset()
    for step in range(50):
        achieved, desired = obs[0, 0:3], obs[0, 3:6]
        action = np.zeros((1, 4), dtype=np.float32)
        action[0, :3] = np.clip(10.0 * (desired - achieved), -1.0, 1.0)
        obs, _, terminated, _, infos = envs.step(action)
        distance = float(np.linalg.norm(obs[0, 3:6] - obs[0, 0:3]))
        if abs(distance - 0.05) > 1e-4:  # Fetch's threshold, on the float32 goal entries
            assert infos["success"][0] == float(distance < 0.05), (step, distance)
        if terminated[0]:
            break
    assert infos["success"][0] == 1.0 and terminated[0] and step < 49
    envs.close()


def test_fetch_trains_evaluates_checkpoints_and_resumes(tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--config", str(SMOKE), "--run-dir", str(run), f"taskset={FETCH}", "batch_size=16",
            "total_env_steps=160", "warmup_env_steps=40", "eval_every=160", "eval_episodes=1", "checkpoint_every=80",
            "log_every=80", "max_episode_steps=20", "sac.hidden_sizes=[32,32]", "device=cpu"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert list(summary["final_success"]) == list(get_taskset(str(FETCH)).tasks)
    assert [p.name for p in list_checkpoints(run)] == ["ckpt_000000000080.pt", "ckpt_000000000160.pt"]
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [160]
    assert main(["train", "--resume", str(run), "total_env_steps=240"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 240 and summary["updates"] > 0
