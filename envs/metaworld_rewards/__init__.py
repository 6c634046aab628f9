"""Meta-World v3 rewards (``reward_function_version="v2"``) in plain Python floats, for the
fast path (``envs.metaworld_fast``).

Each task's function has the signature ``reward(env, obs, action) -> (reward, success)`` and
gives what ``env.evaluate_state(obs, action)`` gives as ``(reward, info["success"])``, reward
within 1e-9 and success identical, with the same side effects on ``env``. Meta-World computes
them with numpy calls on 3-vectors (tens of microseconds a step); on floats they cost a few.
``tests/test_metaworld_rewards.py`` checks every function against Meta-World's own on random
and scripted-policy rollouts. ``REWARDS`` maps a Meta-World env class to its function; a task
without one runs Meta-World's own ``evaluate_state``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from metaworld.sawyer_xyz_env import SawyerXYZEnv

from envs.metaworld_rewards import (
    assembly_bins_tools,
    buttons_coffee_dial,
    doors_drawers_windows,
    faucets_handles_lever,
    plates_pegs,
    reach_push_pick,
    sticks_sweeps_shelf,
)

RewardFn = Callable[[SawyerXYZEnv, np.ndarray, np.ndarray], tuple[float, float]]
REWARDS: dict[type[SawyerXYZEnv], RewardFn] = {
    **reach_push_pick.REWARDS,
    **doors_drawers_windows.REWARDS,
    **buttons_coffee_dial.REWARDS,
    **assembly_bins_tools.REWARDS,
    **faucets_handles_lever.REWARDS,
    **plates_pegs.REWARDS,
    **sticks_sweeps_shelf.REWARDS,
}
