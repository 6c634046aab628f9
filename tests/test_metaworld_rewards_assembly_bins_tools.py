"""The float rewards of ``envs.metaworld_rewards.assembly_bins_tools`` against Meta-World's own
``evaluate_state``, through the fast vector env: three 500-step episodes per task, mostly
scripted to success so that the grasp, float32-gripping and success branches run."""

from __future__ import annotations

import pytest

from envs.metaworld_rewards import assembly_bins_tools as group
from tests.test_metaworld_fast import build_pair, compare_rollout

TASKS = {
    "assembly-v3": group.assembly,
    "disassemble-v3": group.disassemble,
    "basketball-v3": group.basketball,
    "bin-picking-v3": group.bin_picking,
    "box-close-v3": group.box_close,
    "hammer-v3": group.hammer,
    "hand-insert-v3": group.hand_insert,
}


def test_every_function_is_registered():
    assert set(group.REWARDS.values()) == set(TASKS.values())


@pytest.mark.parametrize("task", TASKS)
def test_float_reward_is_exact(task):
    reference, fast = build_pair((task,), seed=3, max_episode_steps=500, terminate_on_success=False)
    try:
        assert fast._rewards[0] is TASKS[task], "the fast env fell back to Meta-World's reward"
        seen = compare_rollout(reference, fast, (task,), steps=1500, seed=5, scripted_fraction=0.7)
    finally:
        reference.close()
    assert seen["success"].any(), f"{task}: no scripted episode reached success, the success branch did not run"
    assert seen["resets"] >= 2
