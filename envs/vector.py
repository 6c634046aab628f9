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

Gymnasium task sets (``TaskSet.kind == "gymnasium"``, a user's own robots) get the same
interface from ``TaskEnv``: observations flattened by ``gymnasium.spaces.flatten`` (a Dict's
entries concatenated in the space's key order, which gymnasium sorts, nested spaces depth-first;
Discrete entries one-hot), zero-padded to the largest flat size of the set, then the one-hot task
id, as float32; actions rescaled from [-1, 1] to the shared bounds; ``info["success"]`` from the
env's ``success`` or ``is_success`` info (0 when it has neither).
"""

from __future__ import annotations

import functools
import warnings
from typing import Literal, overload

import gymnasium as gym
import metaworld  # noqa: F401  (registers the Meta-World/* ids)
import numpy as np

from envs.metaworld_fast import MetaWorldVectorEnv
from envs.strategies import VECTOR_STRATEGIES, VectorStrategy
from envs.tasksets import TaskSet, flat_observation_space, get_taskset

NUM_GOALS = 50
# What make_vector_env builds: each has gymnasium's ``call``, which the RNG checkpoints go through.
MultiTaskVectorEnv = gym.vector.SyncVectorEnv | gym.vector.AsyncVectorEnv | MetaWorldVectorEnv
_BENCHMARK_TASKS = {name: get_taskset(name).tasks for name in ("MT10", "MT25", "MT50")}


class TaskEnv(gym.Wrapper):
    """Task ``index`` of a gymnasium task set, shaped like a Meta-World multi-task sub-env.

    obs = [flattened env obs, zeros up to ``obs_size``, one-hot(index, num_tasks)] (float32);
    success = ``info.get("success", info.get("is_success", 0))``, terminating the episode when
    ``terminate_on_success`` (the evaluation protocol). The seed goes in through the first
    reset (``reset(seed=...)`` works for gymnasium envs); ``seed(s)`` re-seeds at the next reset.
    ``get_checkpoint``/``load_checkpoint`` save and restore the env's ``np_random``: that is all
    the randomness of a standard gymnasium env, but not a mid-episode simulator state.
    """

    def __init__(
        self, env: gym.Env, index: int, num_tasks: int, space: gym.spaces.Box, seed: int, terminate_on_success: bool
    ):
        with warnings.catch_warnings():
            # the float64 bounds of the [-1, 1] Box cast to a float32 action space: exact, but gymnasium warns
            warnings.filterwarnings("ignore", message=".*precision lowered.*")
            env = gym.wrappers.RescaleAction(env, np.float64(-1.0), np.float64(1.0))
        super().__init__(env)
        self._env_space = env.observation_space  # one with a flat form (envs.tasksets.check_spaces)
        n = gym.spaces.flatdim(self._env_space)
        self.observation_space = space  # the same for every task: the vector env needs one
        obs_size = space.shape[0] - num_tasks
        self._tail = np.zeros(obs_size - n + num_tasks, dtype=np.float32)
        self._tail[obs_size - n + index] = 1.0
        self._pending_seed: int | None = seed
        self._index = index
        self._terminate_on_success = terminate_on_success

    def _obs(self, obs) -> np.ndarray:
        flat = gym.spaces.flatten(self._env_space, obs)
        return np.concatenate([np.asarray(flat, dtype=np.float32), self._tail])

    def reset(self, *, seed=None, options=None):
        seed, self._pending_seed = (self._pending_seed if seed is None else seed), None
        obs, info = self.env.reset(seed=seed, options=options)
        info["success"] = 0.0
        return self._obs(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["success"] = float(info.get("success", info.get("is_success", 0.0)))
        if self._terminate_on_success and info["success"] > 0:
            terminated = True
        return self._obs(obs), reward, terminated, truncated, info

    def seed(self, seed: int) -> None:
        self._pending_seed = seed

    def get_checkpoint(self) -> tuple[int, dict]:
        return self._index, {
            "np_random": self.env.unwrapped.np_random.bit_generator.state,
            "pending_seed": self._pending_seed,
        }

    def load_checkpoint(self, states: list[tuple[int, dict]]) -> None:
        """``states``: every sub-env's checkpoint (as Meta-World's envs take them); this one's by index."""
        state = dict(states)[self._index]
        self.env.unwrapped.np_random.bit_generator.state = state["np_random"]
        self._pending_seed = state["pending_seed"]


def make_vector_env(
    taskset: TaskSet,
    seed: int,
    strategy: VectorStrategy = "auto",
    max_episode_steps: int = 500,
    terminate_on_success: bool = False,
    num_goals: int = NUM_GOALS,
    copies: int = 1,
    workers: int = 1,
) -> MultiTaskVectorEnv:
    """Sub-env t runs task ``taskset.tasks[t]``; observations are [K, obs_dim + K], the one-hot
    task id last. The trainer casts them to float32 where they enter torch. ``num_goals`` goals
    are sampled per Meta-World task (1: one fixed goal, the legacy protocol); gymnasium envs
    have no goal sets and ignore it. ``max_episode_steps`` truncates every task's episodes.

    ``strategy``: "auto" steps Meta-World task sets on the fast path
    (``envs.metaworld_fast.MetaWorldVectorEnv``, transition-exact, about a third of the CPU
    time) and gymnasium task sets in a sync vector env; "sync" and "async" are gymnasium's own
    vector envs, for comparison and as the fallback (async pays off on many cores).

    ``copies`` > 1 (evaluation only, fast path only): that many copies of every task, sub-env
    ``c * K + t`` being copy c of task t (``MetaWorldVectorEnv.plan_goals``).

    ``workers`` (fast path only): processes stepping the sub-envs, this one included, at most
    one per sub-env (``envs.forked_workers``). The transitions do not depend on it."""
    if copies > 1 and (strategy != "auto" or taskset.kind != "metaworld"):
        raise ValueError(
            f"{copies} copies of each task need the fast path (vector_strategy auto on a Meta-World task set)"
        )
    if workers > 1 and (strategy != "auto" or taskset.kind != "metaworld"):
        raise ValueError(f"{workers} env workers need the fast path (vector_strategy auto on a Meta-World task set)")
    if strategy not in VECTOR_STRATEGIES:
        raise ValueError(f"unknown vector strategy {strategy!r}; valid: {', '.join(VECTOR_STRATEGIES)}")
    if taskset.kind == "gymnasium":
        vec_cls = gym.vector.AsyncVectorEnv if strategy == "async" else gym.vector.SyncVectorEnv
        return _make_gymnasium(taskset, vec_cls, seed, max_episode_steps, terminate_on_success)
    common = dict(
        seed=seed,
        use_one_hot=True,
        reward_function_version="v2",
        max_episode_steps=max_episode_steps,
        num_goals=num_goals,
        terminate_on_success=terminate_on_success,
    )
    envs: MultiTaskVectorEnv
    with warnings.catch_warnings():
        # Meta-World's float64 observation bounds trigger a harmless precision warning per task
        warnings.filterwarnings("ignore", message=".*precision lowered.*")
        if strategy == "auto":
            references = [make_metaworld_vector(taskset, "sync", common) for _ in range(copies)]
            envs = MetaWorldVectorEnv(references, max_episode_steps, terminate_on_success, workers)
        else:
            envs = make_metaworld_vector(taskset, strategy, common)
    assert envs.num_envs == taskset.num_tasks * copies
    return envs


@overload
def make_metaworld_vector(taskset: TaskSet, strategy: Literal["sync"], common: dict) -> gym.vector.SyncVectorEnv: ...
@overload
def make_metaworld_vector(taskset: TaskSet, strategy: Literal["async"], common: dict) -> gym.vector.AsyncVectorEnv: ...
def make_metaworld_vector(
    taskset: TaskSet, strategy: Literal["sync", "async"], common: dict
) -> gym.vector.SyncVectorEnv | gym.vector.AsyncVectorEnv:
    """Meta-World's own vector env of ``taskset`` under gymnasium's ``strategy``; ``common``: the
    keyword arguments of every Meta-World env (seed, num_goals, episode length, ...)."""
    if taskset.tasks != _BENCHMARK_TASKS.get(taskset.name):
        # MT1 and custom lists: one Meta-World/MT1 env per task, not Meta-World/custom-mt-envs
        # (which treats seed 0 as unseeded and does not accept num_goals)
        num_tasks = taskset.num_tasks
        vec_cls = gym.vector.SyncVectorEnv if strategy == "sync" else gym.vector.AsyncVectorEnv
        return vec_cls(
            [
                functools.partial(
                    gym.make,
                    "Meta-World/MT1",
                    env_name=env_name,
                    env_id=t,
                    num_tasks=num_tasks,
                    disable_env_checker=True,
                    **common,
                )
                for t, env_name in enumerate(taskset.tasks)
            ],
            autoreset_mode=gym.vector.AutoresetMode.DISABLED,
        )
    envs = gym.make_vec(
        f"Meta-World/{taskset.name}",
        vector_strategy=strategy,
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
        **common,
    )
    assert isinstance(envs, (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv))  # make_vec's own two
    return envs


def _make_gymnasium(taskset: TaskSet, vec_cls, seed: int, max_episode_steps: int, terminate_on_success: bool):
    """The shared observation space bounds each padded entry by the union of the tasks' bounds
    there (of the flattened spaces; padding counts as [0, 0]) and the one-hot by [0, 1]."""
    num_tasks = taskset.num_tasks
    spaces = []
    for env_id in taskset.tasks:
        env = gym.make(env_id, disable_env_checker=True)
        spaces.append(flat_observation_space(taskset, env_id, env.observation_space))
        env.close()
    obs_size = max(s.shape[0] for s in spaces)
    low = np.zeros((num_tasks, obs_size + num_tasks))
    high = np.zeros((num_tasks, obs_size + num_tasks))
    for t, s in enumerate(spaces):
        low[t, : s.low.size], high[t, : s.high.size] = s.low.ravel(), s.high.ravel()
    high[:, obs_size:] = 1.0
    space = gym.spaces.Box(low.min(0).astype(np.float32), high.max(0).astype(np.float32), dtype=np.float32)

    def make_one(t: int) -> gym.Env:
        env = gym.make(taskset.tasks[t], max_episode_steps=max_episode_steps, disable_env_checker=True)
        # seed + t: each task its own stream, and the same streams for the same run seed
        return TaskEnv(env, t, num_tasks, space, seed + t, terminate_on_success)

    return vec_cls(
        [lambda t=t: make_one(t) for t in range(num_tasks)], autoreset_mode=gym.vector.AutoresetMode.DISABLED
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


def env_rng_state(envs: MultiTaskVectorEnv) -> list:
    """RNG states of every sub-env (goal sampling and env randomness), for checkpoints."""
    return list(envs.call("get_checkpoint"))


def load_env_rng_state(envs: MultiTaskVectorEnv, state: list) -> None:
    envs.call("load_checkpoint", state)


def reseed(envs: MultiTaskVectorEnv, seed: int) -> None:
    """Re-seed every sub-env's RNG (goal sampling); used to give each evaluation the same goals."""
    envs.call("seed", seed)
