"""The float rewards of the button, coffee and dial tasks (``envs.metaworld_rewards.
buttons_coffee_dial``) are what Meta-World's ``evaluate_state`` gives, on the fast path, through
scripted episodes that reach success and random ones."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from metaworld.policies import ENV_POLICY_MAP

from envs.metaworld_rewards import buttons_coffee_dial as group
from tests.test_metaworld_fast import TOL, build_pair, compare_rollout

TASKS = {
    "button-press-v3": group.button_press,
    "button-press-wall-v3": group.button_press_wall,
    "button-press-topdown-v3": group.button_press_topdown,
    "button-press-topdown-wall-v3": group.button_press_topdown_wall,
    "coffee-button-v3": group.coffee_button,
    "coffee-pull-v3": group.coffee_pull,
    "coffee-push-v3": group.coffee_push,
    "dial-turn-v3": group.dial_turn,
}


@pytest.fixture(scope="module")
def pair():
    """One (reference, fast) pair per task, shared by this module's tests (a build takes 1-2 s)."""
    built = {}

    def get(task):
        if task not in built:
            built[task] = build_pair((task,), seed=3, max_episode_steps=500, terminate_on_success=False)
        return built[task]

    yield get
    for reference, _ in built.values():
        reference.close()


@pytest.mark.parametrize("task", TASKS)
def test_rollout_is_exact_and_reaches_success(task, pair):
    reference, fast = pair(task)
    assert fast._rewards[0] is TASKS[task]  # not Meta-World's own evaluate_state
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Constant.*too high.*")
        seen = compare_rollout(reference, fast, (task,), steps=1500, seed=3, scripted_fraction=0.7)
    assert seen["success"].any(), f"{task}: no scripted episode reached success, the success branch did not run"
    assert seen["resets"] >= 2


@pytest.mark.parametrize("task", ["coffee-push-v3", "coffee-pull-v3", "dial-turn-v3"])
def test_gripper_effort_sweep_is_exact(task, pair):
    """Along a scripted episode, every gripper effort in [-1, 1] at each state: once the mug is
    caged, efforts strictly inside (0, 0.7) (dial: (0, 1)) keep the reward in float32, which the
    rollouts' noisy full-effort grasps seldom reach."""
    _, fast = pair(task)
    env, fn, policy = fast.envs[0], TASKS[task], ENV_POLICY_MAP[task]()
    efforts = np.linspace(-1, 1, 17, dtype=np.float32)
    obs, _ = fast.reset()
    effort_dependent = 0
    for _ in range(120):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Constant.*too high.*")
            action = np.clip(policy.get_action(obs[0, :39].astype(np.float64)), -1, 1).astype(np.float32)
        obs, *_ = fast.step(action[None])
        o = env._last_stable_obs
        rewards = set()
        for effort in efforts:
            a = action.copy()
            a[-1] = effort
            expected, info = env.evaluate_state(o, a)
            reward, success = fn(env, o, a)
            assert abs(reward - float(expected)) <= TOL and success == info["success"], (task, effort)
            rewards.add(float(expected))
        effort_dependent += len(rewards) > 2
    assert effort_dependent >= 10, f"{task}: the caged, partial-effort branch ran at {effort_dependent} states"
