"""The float rewards of door-open/close/lock/unlock, drawer-open/close and window-open/close
(``envs.metaworld_rewards.doors_drawers_windows``) against Meta-World's own, step by step on
scripted (to success) and random rollouts."""

from __future__ import annotations

import numpy as np
import pytest

from envs.metaworld_rewards import doors_drawers_windows as ddw
from tests.test_metaworld_fast import build_pair, compare_rollout

pytestmark = pytest.mark.filterwarnings("ignore:Constant")  # the scripted policies' gains

TASKS = {
    "door-open-v3": ddw.door_open,
    "door-close-v3": ddw.door_close,
    "door-lock-v3": ddw.door_lock,
    "door-unlock-v3": ddw.door_unlock,
    "drawer-open-v3": ddw.drawer_open,
    "drawer-close-v3": ddw.drawer_close,
    "window-open-v3": ddw.window_open,
    "window-close-v3": ddw.window_close,
}


@pytest.mark.parametrize("task", TASKS)
def test_reward_is_exact_and_reaches_success(task):
    reference, fast = build_pair((task,), seed=3, max_episode_steps=500, terminate_on_success=False)
    try:
        fn = TASKS[task]
        assert fast._rewards[0] is fn, "the fast env fell back to Meta-World's reward"
        seen = compare_rollout(reference, fast, (task,), steps=1500, seed=5, scripted_fraction=0.7)
        assert seen["success"].any(), f"{task}: no rollout reached success, the success branch did not run"
        assert seen["resets"] >= 2

        # the rollout's actions are float32 in (-1, 1); the gripper terms also branch on the
        # action's dtype and on a gripper value at or past the clip bounds
        env = fast.envs[0]
        obs = env._last_stable_obs
        for grip in (-1.5, -1.0, 0.0, 0.3, 1.0, 1.5):
            for dtype in (np.float32, np.float64):
                action = np.array([0.1, -0.2, 0.3, grip], dtype=dtype)
                reward, info = env.evaluate_state(obs, action)
                got = fn(env, obs, action)
                assert abs(got[0] - reward) <= 1e-9 and got[1] == info["success"], (grip, dtype, got, reward)
    finally:
        fast.close()
