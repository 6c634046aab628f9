"""The float rewards of ``envs.metaworld_rewards`` against Meta-World's own ``evaluate_state``.

The default suite's sweep over every MT50 task is ``tests/test_metaworld_fast.py``; here are
the long per-task rollouts (marked slow: three 500-step episodes per task, mostly scripted to
success, so that the grasp, float32-gripping and success branches run) and the corners that
rollouts seldom reach (partial gripper efforts on a caged object, the peg's collision prisms),
checked state by state."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from metaworld.env_dict import MT50_V3
from metaworld.policies import ENV_POLICY_MAP

from envs.metaworld_rewards import (
    REWARDS,
    assembly_bins_tools,
    buttons_coffee_dial,
    doors_drawers_windows,
    faucets_handles_lever,
    plates_pegs,
    reach_push_pick,
    sticks_sweeps_shelf,
)
from tests.test_metaworld_fast import TOL, build_pair, compare_rollout

pytestmark = pytest.mark.filterwarnings("ignore:Constant")  # the scripted policies' gains

# (rollout seed, steps) per group: seeds whose scripted episodes reach success on every task
ROLLOUTS = {
    assembly_bins_tools: (5, 1500),
    buttons_coffee_dial: (3, 1500),
    doors_drawers_windows: (5, 1500),
    faucets_handles_lever: (0, 1500),
    plates_pegs: (0, 1500),
    reach_push_pick: (1, 1000),
    sticks_sweeps_shelf: (0, 1500),
}


def test_every_mt50_task_has_exactly_one_float_reward():
    groups = [set(group.REWARDS) for group in ROLLOUTS]
    assert sum(len(g) for g in groups) == len(set().union(*groups)) == len(REWARDS)  # no class in two groups
    assert set(REWARDS) == set(MT50_V3.values())


@pytest.mark.slow
@pytest.mark.parametrize("task", list(MT50_V3))
def test_rollout_is_exact_and_reaches_success(task):
    cls = MT50_V3[task]
    group = next(g for g in ROLLOUTS if cls in g.REWARDS)
    seed, steps = ROLLOUTS[group]
    reference, fast = build_pair((task,), seed=3, max_episode_steps=500, terminate_on_success=False)
    try:
        assert fast._rewards[0] is REWARDS[cls], "the fast env fell back to Meta-World's reward"
        seen = compare_rollout(reference, fast, (task,), steps=steps, seed=seed, scripted_fraction=0.7)
    finally:
        reference.close()
    assert seen["success"].any(), f"{task}: no scripted episode reached success, the success branch did not run"
    assert seen["resets"] >= 1


@pytest.mark.parametrize("task", ["coffee-push-v3", "coffee-pull-v3", "dial-turn-v3"])
def test_gripper_effort_sweep_is_exact(task):
    """Along a scripted episode, every gripper effort in [-1, 1] at each state: once the mug is
    caged, efforts strictly inside (0, 0.7) (dial: (0, 1)) keep the reward in float32, which the
    rollouts' noisy full-effort grasps seldom reach."""
    _, fast = build_pair((task,), seed=3, max_episode_steps=500, terminate_on_success=False)
    env, fn, policy = fast.envs[0], fast._rewards[0], ENV_POLICY_MAP[task]()
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


@pytest.mark.parametrize("task", ["peg-insert-side-v3", "peg-unplug-side-v3"])
def test_peg_float32_grip_and_collision_prisms(task):
    """Corners the scripted rollouts rarely reach, checked state by state against evaluate_state.
    With the peg caged (caging > 0.97) and an effort in (0, effort), Meta-World's caging reward is
    float32 arithmetic (~1e-7 off float64); with the peg head inside a collision prism, peg-insert's
    prism value is a numpy float64 that turns the last product back to float64. Peg-insert cages
    rarely (0.2% of scripted steps) and its head never enters a prism, so the reward is also
    evaluated with the object put between the pads, a closed-gripper reading (the lifted override
    off), a drawn effort, and the prism corners moved around the head."""
    _, fast = build_pair((task,), seed=5, max_episode_steps=500, terminate_on_success=False)
    env, fn, policy = fast.envs[0], fast._rewards[0], ENV_POLICY_MAP[task]()
    rng = np.random.default_rng(1)
    data = env.data
    pads = env.model.body("leftpad").id, env.model.body("rightpad").id
    head = env.model.site("pegHead").id
    corners = [
        (env.model.site(f"bottom_right_corner_collision_box_{b}").id, env.model.site(f"top_left_corner_collision_box_{b}").id)
        for b in (1, 2)
    ] if task == "peg-insert-side-v3" else []  # fmt: skip
    obs, _ = fast.reset()
    kinds = {}
    for _ in range(600):
        action = np.clip(policy.get_action(obs[0, :39]) + rng.normal(0, 0.1, 4), -1, 1).astype(np.float32)
        obs, _, _, truncated, _ = fast.step(action[None])
        o = env._last_stable_obs.copy()
        if rng.random() < 0.5:
            tcp = env.tcp_center
            o[4:7] = tcp[0], (data.xpos[pads[0], 1] + data.xpos[pads[1], 1]) / 2, tcp[2]
            o[4:7] += rng.normal(0, 0.002, 3)
            o[3] = 0.0 if rng.random() < 0.5 else o[3]
        if rng.random() < 0.5:
            action[-1] = np.float32(rng.uniform(0.0, 1.0))
        moved = bool(corners) and rng.random() < 0.5
        for zero, one in corners if moved else ():  # the next step's mj_forward recomputes these sites
            if rng.random() < 0.7:
                lo, hi = data.site_xpos[head] - rng.uniform(0.001, 0.05, 3), data.site_xpos[head] + rng.uniform(0.001, 0.05, 3)
                data.site_xpos[zero], data.site_xpos[one] = (lo, hi) if rng.random() < 0.5 else (hi, lo)
        expected, info = env.evaluate_state(o, action)
        got = fn(env, o, action)
        assert abs(got[0] - expected) <= 1e-9 and got[1] == info["success"], (got, expected, info["success"])
        kind = (type(info["grasp_reward"]).__name__, moved)
        kinds[kind] = kinds.get(kind, 0) + 1
        if truncated[0]:
            obs, _ = fast.reset()
    assert kinds.get(("float32", False), 0) > 0, kinds
    if corners:
        assert kinds.get(("float32", True), 0) > 0, kinds
