"""The evaluation protocol (Meta-World's ``metaworld.evaluation``, made reproducible).

``eval_episodes`` episodes per task, a deterministic policy, success = success at any step of
the episode (episodes end at the first success, as in Meta-World's evaluation). Before every
evaluation the eval envs are re-seeded with the same seed, so each evaluation of a run sees
the same goal sequence: evaluations differ only because the policy does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from envs.metaworld_fast import MetaWorldVectorEnv
from envs.vector import MultiTaskVectorEnv, reseed, reset_done


@dataclass
class EvalResult:
    success: dict[str, float]  # task -> success rate over its episodes
    returns: dict[str, float]  # task -> mean undiscounted episode return

    @property
    def success_mean(self) -> float:
        return float(np.mean(list(self.success.values())))


def evaluate(
    policy: Callable[[np.ndarray], np.ndarray],
    envs: MultiTaskVectorEnv,
    task_names: tuple[str, ...],
    num_episodes: int,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> EvalResult | None:
    """Run ``num_episodes`` episodes of each task. ``envs`` must terminate on success (built
    with ``terminate_on_success=True``); it holds one sub-env per task, or on the fast path
    several copies of each (``make_vector_env(copies=...)``), which share a task's episodes and
    are stepped with one batched policy call: the same (task, goal) pairs are evaluated whatever
    the number of copies. ``progress(done, total)``, if given, hears the
    count of finished episodes at the start and whenever it grows. ``stop()``, if given, is asked
    before every vector step; once it says True the evaluation is abandoned and None returned
    (the episodes done so far would be an estimate over fewer, and other, episodes)."""
    num_envs, num_tasks = envs.num_envs, len(task_names)
    copies = num_envs // num_tasks
    reseed(envs, seed)
    fast = envs if isinstance(envs, MetaWorldVectorEnv) else None
    if fast is not None:
        fast.plan_goals(num_episodes)
    # copy c of a task runs its episodes c, c + copies, ...: quota[i] of them on sub-env i
    quota = np.array([len(range(i // num_tasks, num_episodes, copies)) for i in range(num_envs)])
    obs, _ = envs.reset()
    successes = np.zeros(num_envs)
    returns = np.zeros(num_envs)
    finished = np.zeros(num_envs, dtype=int)
    ep_return = np.zeros(num_envs)
    ep_success = np.zeros(num_envs, dtype=bool)
    total = num_tasks * num_episodes
    if progress is not None:
        progress(0, total)
    try:
        while (finished < quota).any():
            if stop is not None and stop():
                return None
            if fast is not None:
                fast.idle = finished >= quota
            obs, reward, terminated, truncated, info = envs.step(policy(obs))
            ep_return += reward
            ep_success |= np.asarray(info["success"], dtype=float) > 0
            done = terminated | truncated
            counted = done & (finished < quota)
            successes += counted * ep_success
            returns += counted * ep_return
            finished += counted
            if progress is not None and counted.any():
                progress(int(finished.sum()), total)
            ep_return[done] = 0.0
            ep_success[done] = False
            obs = reset_done(envs, obs, done)
    finally:
        if fast is not None:
            fast.idle = None  # later evaluations and resets step every sub-env
    success, mean_return = (x.reshape(copies, num_tasks).sum(0) / num_episodes for x in (successes, returns))
    return EvalResult(
        success={t: float(success[i]) for i, t in enumerate(task_names)},
        returns={t: float(mean_return[i]) for i, t in enumerate(task_names)},
    )
