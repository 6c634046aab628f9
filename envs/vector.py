"""Vector-env construction: one sub-env per task, float32 observations with the one-hot task id.

Meta-World's seeding traps, and how this module avoids them:
- ``reset(seed=...)`` is ignored by Meta-World envs, so the seed goes in once, through
  ``gym.make_vec`` / ``gym.make`` (goal sets and env RNGs are derived from it).
- ``Meta-World/custom-mt-envs`` treats seed 0 as "unseeded"; MT1 is built through
  ``Meta-World/MT1`` instead, which seeds 0 like any other seed.
- ``num_goals`` is stored by Meta-World in a module global that leaks into the next env built,
  so every construction passes it explicitly.

Auto-reset is disabled: the trainer sees the true final observation of a truncated episode
as ``obs`` and resets finished sub-envs itself (``reset_done``). That also gives checkpoints a
clean place to stand: between the end of one episode and the reset that samples the next goal.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import metaworld  # noqa: F401  (registers the Meta-World/* ids)
import numpy as np

from envs.tasksets import TaskSet

NUM_GOALS = 50


def make_vector_env(
    taskset: TaskSet,
    seed: int,
    strategy: str = "sync",
    max_episode_steps: int = 500,
    terminate_on_success: bool = False,
) -> gym.vector.VectorEnv:
    """Sub-env t runs task ``taskset.tasks[t]``; observations are [K, obs_dim + K], the one-hot
    task id last. The trainer casts them to float32 where they enter torch."""
    if strategy not in ("sync", "async"):
        raise ValueError(f"unknown vector strategy {strategy!r}; valid: sync, async")
    common = dict(
        seed=seed,
        use_one_hot=True,
        reward_function_version="v2",
        max_episode_steps=max_episode_steps,
        num_goals=NUM_GOALS,
        terminate_on_success=terminate_on_success,
    )
    with warnings.catch_warnings():
        # Meta-World's float64 observation bounds trigger a harmless precision warning per task
        warnings.filterwarnings("ignore", message=".*precision lowered.*")
        envs = _make(taskset, strategy, common)
    assert envs.num_envs == taskset.num_tasks
    return envs


def _make(taskset: TaskSet, strategy: str, common: dict) -> gym.vector.VectorEnv:
    if taskset.name.startswith("MT1:"):
        env_name = taskset.tasks[0]
        make_one = lambda: gym.make(  # noqa: E731
            "Meta-World/MT1", env_name=env_name, env_id=0, num_tasks=1, disable_env_checker=True, **common
        )
        vec_cls = gym.vector.SyncVectorEnv if strategy == "sync" else gym.vector.AsyncVectorEnv
        return vec_cls([make_one], autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    return gym.make_vec(
        f"Meta-World/{taskset.name}",
        vector_strategy=strategy,
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
        **common,
    )


def reset_done(envs: gym.vector.VectorEnv, obs: np.ndarray, done: np.ndarray) -> np.ndarray:
    """Reset the finished sub-envs (a new goal is sampled) and return the merged observations."""
    if not done.any():
        return obs
    if done.all():
        new_obs, _ = envs.reset()
        return new_obs
    new_obs, _ = envs.reset(options={"reset_mask": done})
    return np.where(done[:, None], new_obs, obs)


def env_rng_state(envs: gym.vector.VectorEnv) -> list:
    """RNG states of every sub-env (goal sampling and env randomness), for checkpoints."""
    return list(envs.call("get_checkpoint"))


def load_env_rng_state(envs: gym.vector.VectorEnv, state: list) -> None:
    envs.call("load_checkpoint", state)


def reseed(envs: gym.vector.VectorEnv, seed: int) -> None:
    """Re-seed every sub-env's RNG (goal sampling); used to give each evaluation the same goals."""
    envs.call("seed", seed)
