"""The float rewards of ``envs.metaworld_rewards.plates_pegs`` against Meta-World's own, on
scripted-to-success and random rollouts, plus the float32/float64 corners of the peg rewards."""

from __future__ import annotations

import numpy as np
import pytest

from envs.metaworld_rewards import plates_pegs
from tests.test_metaworld_fast import build_pair, compare_rollout

TASKS = {
    "plate-slide-v3": plates_pegs.plate_slide,
    "plate-slide-side-v3": plates_pegs.plate_slide_side,
    "plate-slide-back-v3": plates_pegs.plate_slide_back,
    "plate-slide-back-side-v3": plates_pegs.plate_slide_back_side,
    "peg-insert-side-v3": plates_pegs.peg_insert_side,
    "peg-unplug-side-v3": plates_pegs.peg_unplug_side,
}


@pytest.mark.parametrize("task", TASKS)
def test_rollout_is_exact_and_succeeds(task):
    reference, fast = build_pair((task,), seed=3, max_episode_steps=500, terminate_on_success=False)
    assert fast._rewards[0] is TASKS[task]
    seen = compare_rollout(reference, fast, (task,), steps=1500, seed=0, scripted_fraction=0.7)
    assert seen["success"].any(), f"{task}: no scripted episode reached success, the success branch never ran"


@pytest.mark.parametrize("task", ["peg-insert-side-v3", "peg-unplug-side-v3"])
def test_peg_float32_grip_and_collision_prisms(task):
    """Corners the scripted rollouts rarely reach, on states of one: with the peg caged
    (caging > 0.97) and an effort in (0, effort), Meta-World's caging reward is float32 arithmetic
    (~1e-7 off float64); with the peg head inside a collision prism, peg-insert's prism value is a
    numpy float64 that turns the last product back to float64. Peg-insert cages rarely (0.2% of
    scripted steps) and its head never enters a prism, so the reward is also evaluated with the
    object put between the pads, a closed-gripper reading (the lifted override off), a drawn
    effort, and the prism corners moved around the head."""
    from metaworld.policies import ENV_POLICY_MAP

    _, fast = build_pair((task,), seed=5, max_episode_steps=500, terminate_on_success=False)
    env, fn, policy = fast.envs[0], TASKS[task], ENV_POLICY_MAP[task]()
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
