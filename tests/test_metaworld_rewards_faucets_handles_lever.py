"""The float rewards of faucet-open/close, handle-press(-side), handle-pull(-side) and lever-pull
give Meta-World's rewards and success flags on scripted (to success) and random rollouts, and,
like Meta-World's v2 code for these tasks, set nothing on the env."""

from __future__ import annotations

import numpy as np
import pytest

from envs.metaworld_rewards import faucets_handles_lever as fhl
from tests.test_metaworld_fast import TOL, build_pair, compare_rollout

TASKS = {
    "faucet-open-v3": fhl.faucet_open,
    "faucet-close-v3": fhl.faucet_close,
    "handle-press-v3": fhl.handle_press,
    "handle-press-side-v3": fhl.handle_press_side,
    "handle-pull-v3": fhl.handle_pull,
    "handle-pull-side-v3": fhl.handle_pull_side,
    "lever-pull-v3": fhl.lever_pull,
}


def _snapshot(env) -> dict:
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(env).items()}


def _assert_unchanged(before: dict, env, what: str) -> None:
    after = vars(env)
    assert after.keys() == before.keys(), what
    for k, v in before.items():
        same = np.array_equal(v, after[k]) if isinstance(v, np.ndarray) else v is after[k]
        assert same, f"{what}: {k} changed"


@pytest.mark.parametrize("task", list(TASKS))
def test_rollout_is_exact_and_reaches_success(task):
    reference, fast = build_pair((task,), seed=3, max_episode_steps=500, terminate_on_success=False)
    try:
        assert fast._rewards[0] is TASKS[task]
        seen = compare_rollout(reference, fast, (task,), steps=1500, seed=0, scripted_fraction=0.7)
        assert seen["success"].any(), f"{task}: no scripted episode reached success"

        # the last state, with grip efforts on both sides of the float32 gripper branch
        env = fast.envs[0]
        obs = env._last_stable_obs
        for grip in (1.0, 0.6, 0.0, -0.4):
            for dtype in (np.float32, np.float64):
                action = np.array([0.1, -0.2, 0.3, grip], dtype=dtype)
                before = _snapshot(env)
                want, info = type(env).evaluate_state(env, obs, action)
                _assert_unchanged(before, env, f"{task}: Meta-World's evaluate_state")
                got, success = TASKS[task](env, obs, action)
                _assert_unchanged(before, env, f"{task}: the float reward")
                assert abs(got - float(want)) <= TOL and success == info["success"], (task, grip, dtype)
                assert type(got) is float and type(success) is float
    finally:
        reference.close()
        fast.close()
