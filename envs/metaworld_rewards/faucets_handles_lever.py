"""Float rewards for faucet-open/close, handle-press(-side), handle-pull(-side) and lever-pull
(Meta-World v3, ``reward_function_version="v2"``). None of them sets attributes in v2."""

from __future__ import annotations

import math

from metaworld.envs.sawyer_faucet_close_v3 import SawyerFaucetCloseEnvV3
from metaworld.envs.sawyer_faucet_open_v3 import SawyerFaucetOpenEnvV3
from metaworld.envs.sawyer_handle_press_side_v3 import SawyerHandlePressSideEnvV3
from metaworld.envs.sawyer_handle_press_v3 import SawyerHandlePressEnvV3
from metaworld.envs.sawyer_handle_pull_side_v3 import SawyerHandlePullSideEnvV3
from metaworld.envs.sawyer_handle_pull_v3 import SawyerHandlePullEnvV3
from metaworld.envs.sawyer_lever_pull_v3 import SawyerLeverPullEnvV3

from envs.metaworld_rewards.primitives import dist, gripper_caging, hamacher_product, tcp_xyz, tolerance

_HALF_PI = math.pi / 2.0
_LEVER_SUCCESS = math.pi / 24


def _hamacher_any(a, b):
    """``reward_utils.hamacher_product`` without float conversion: with a numpy float32 ``b``
    (the gripper effort) Meta-World's product is float32 arithmetic (NEP 50), and so is this."""
    denominator = a + b - (a * b)
    return ((a * b) / denominator) if denominator > 0 else 0.0


def _faucet(env, obs, dx: float, dz: float) -> tuple[float, float]:
    o0, o1, o2 = obs[4:7].tolist()
    o0, o1, o2 = o0 + dx, o1 + 0.0, o2 + dz
    g0, g1, g2 = env._target_pos.tolist()
    i0, i1, i2 = env.obj_init_pos.tolist()
    t0, t1, t2 = env.init_tcp.tolist()
    tcp = tcp_xyz(env)
    radius = env._target_radius
    target_to_obj = dist(o0, o1, o2, g0, g1, g2)
    in_place = tolerance(target_to_obj, 0, radius, abs(dist(i0, i1, i2, g0, g1, g2) - radius), "long_tail")
    tcp_to_obj = dist(o0, o1, o2, *tcp)
    reach = tolerance(tcp_to_obj, 0, 0.01, abs(dist(i0, i1, i2, t0, t1, t2) - 0.01), "gaussian")
    reward = 10.0 if target_to_obj <= radius else (2 * reach + 3 * in_place) * 2
    return reward, float(target_to_obj <= 0.07)


def faucet_open(env, obs, action) -> tuple[float, float]:
    """faucet-open: 2 * (2 reach (gaussian) + 3 in_place) on the handle offset (-0.04, 0, 0.03); 10 at the goal."""
    return _faucet(env, obs, -0.04, 0.03)


def faucet_close(env, obs, action) -> tuple[float, float]:
    """faucet-close: 2 * (2 reach (gaussian) + 3 in_place) on obs[4:7]; 10 at the goal."""
    return _faucet(env, obs, 0.0, 0.0)


def _handle_press(env) -> tuple[float, float]:
    o0, o1, o2 = env.data.site_xpos[env._fast_site_id("handleStart")].tolist()
    h0, h1, h2 = env._handle_init_pos.tolist()
    t0, t1, t2 = env.init_tcp.tolist()
    g2 = float(env._target_pos[2])
    radius = env.TARGET_RADIUS
    target_to_obj = abs(o2 - g2)
    in_place = tolerance(target_to_obj, 0, radius, abs(abs(h2 - g2) - radius), "long_tail")
    reach = tolerance(dist(o0, o1, o2, *tcp_xyz(env)), 0, 0.02, abs(dist(h0, h1, h2, t0, t1, t2) - 0.02), "long_tail")
    success = target_to_obj <= radius
    reward = 1.0 if success else hamacher_product(reach, in_place)
    return reward * 10, float(success)


def handle_press(env, obs, action) -> tuple[float, float]:
    """handle-press: 10 * hamacher(reach, in_place (z only)) on the handleStart site; 10 at the goal."""
    return _handle_press(env)


def handle_press_side(env, obs, action) -> tuple[float, float]:
    """handle-press-side: the same terms as handle-press (Meta-World's code is the same)."""
    return _handle_press(env)


def _handle_pull(
    env,
    obs,
    action,
    target_to_obj: float,
    target_to_obj_init: float,
    lifted_axis: int,
    pad_success_thresh: float,
    obj_radius: float,
) -> float:
    obj = obs[4:7].tolist()
    tcp = tcp_xyz(env)
    in_place = tolerance(target_to_obj, 0, env.TARGET_RADIUS, target_to_obj_init, "long_tail")
    grasped = gripper_caging(env, action, obj, tcp, obj_radius, pad_success_thresh, 0.01, high_density=True)
    reward = _hamacher_any(grasped, in_place)
    if (
        dist(obj[0], obj[1], obj[2], *tcp) < 0.035
        and obs[3] > 0
        and obj[lifted_axis] - 0.01 > float(env.obj_init_pos[2])
    ):
        reward += 1.0 + 5.0 * in_place
    if target_to_obj < env.TARGET_RADIUS:
        reward = 10.0
    return float(reward)


def handle_pull(env, obs, action) -> tuple[float, float]:
    """handle-pull: hamacher(caging (high density), in_place (z only)) + 1 + 5 in_place when
    near and open and obj y - 0.01 above the initial z (Meta-World's check, as written); 10 at the goal."""
    g2 = float(env._target_pos[2])
    target_to_obj = abs(g2 - float(obs[6]))
    target_to_obj_init = abs(g2 - float(env.obj_init_pos[2]))
    reward = _handle_pull(env, obs, action, target_to_obj, target_to_obj_init, 1, 0.05, 0.022)
    return reward, float(target_to_obj <= env.TARGET_RADIUS)


def handle_pull_side(env, obs, action) -> tuple[float, float]:
    """handle-pull-side: hamacher(caging (high density), in_place (3-d)) + 1 + 5 in_place when
    near, open and lifted; 10 at the goal; success within 0.08."""
    o0, o1, o2 = obs[4:7].tolist()
    g0, g1, g2 = env._target_pos.tolist()
    i0, i1, i2 = env.obj_init_pos.tolist()
    target_to_obj = dist(o0, o1, o2, g0, g1, g2)
    target_to_obj_init = dist(i0, i1, i2, g0, g1, g2)
    reward = _handle_pull(env, obs, action, target_to_obj, target_to_obj_init, 2, 0.06, 0.032)
    return reward, float(target_to_obj <= 0.08)


def lever_pull(env, obs, action) -> tuple[float, float]:
    """lever-pull: 10 * hamacher(ready_to_lift (scaled shoulder offset), in_place); success on the joint angle."""
    ids = env._fast_ids
    adr = ids.get(("qposadr", "LeverAxis"))
    if adr is None:
        adr = ids[("qposadr", "LeverAxis")] = int(env.model.jnt_qposadr[env.model.joint("LeverAxis").id])
    p0, p1, p2, _, l0, l1, l2 = obs[:7].tolist()
    t0, t1, t2 = env.init_tcp.tolist()
    s0, s1, s2 = env._lever_pos_init.tolist()
    g0, g1, g2 = env._target_pos.tolist()
    shoulder = dist((p0 + 0.0 - l0) * 4.0, (p1 + 0.055 - l1) * 1.0, (p2 + 0.07 - l2) * 4.0, 0.0, 0.0, 0.0)
    shoulder_init = dist((t0 + 0.0 - s0) * 4.0, (t1 + 0.055 - s1) * 1.0, (t2 + 0.07 - s2) * 4.0, 0.0, 0.0, 0.0)
    ready_to_lift = tolerance(shoulder, 0, 0.02, shoulder_init, "long_tail")
    in_place = tolerance(dist(l0, l1, l2, g0, g1, g2), 0, 0.04, dist(s0, s1, s2, g0, g1, g2), "long_tail")
    lever_error = abs(-float(env.data.qpos[adr]) - _HALF_PI)
    return 10.0 * hamacher_product(ready_to_lift, in_place), float(lever_error <= _LEVER_SUCCESS)


REWARDS = {
    SawyerFaucetOpenEnvV3: faucet_open,
    SawyerFaucetCloseEnvV3: faucet_close,
    SawyerHandlePressEnvV3: handle_press,
    SawyerHandlePressSideEnvV3: handle_press_side,
    SawyerHandlePullEnvV3: handle_pull,
    SawyerHandlePullSideEnvV3: handle_pull_side,
    SawyerLeverPullEnvV3: lever_pull,
}
