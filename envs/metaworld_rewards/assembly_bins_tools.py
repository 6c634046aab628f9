"""Float rewards for assembly-v3, disassemble-v3, basketball-v3, bin-picking-v3, box-close-v3,
hammer-v3 and hand-insert-v3 (Meta-World's v2 reward branch)."""

from __future__ import annotations

import math

import numpy as np
from metaworld.envs.sawyer_assembly_peg_v3 import SawyerNutAssemblyEnvV3
from metaworld.envs.sawyer_basketball_v3 import SawyerBasketballEnvV3
from metaworld.envs.sawyer_bin_picking_v3 import SawyerBinPickingEnvV3
from metaworld.envs.sawyer_box_close_v3 import SawyerBoxCloseEnvV3
from metaworld.envs.sawyer_disassemble_peg_v3 import SawyerNutDisassembleEnvV3
from metaworld.envs.sawyer_hammer_v3 import SawyerHammerEnvV3
from metaworld.envs.sawyer_hand_insert_v3 import SawyerHandInsertEnvV3

from envs.metaworld_rewards.primitives import gripper_caging, hamacher_product, tcp_xyz, tolerance

_SQRT = math.sqrt


def _site(env, name: str) -> list[float]:
    return env.data.site_xpos[env._fast_site_id(name)].tolist()


def _joint_qpos(env, name: str) -> float:
    ids = env._fast_ids
    key = ("joint_qpos", name)
    if key not in ids:
        ids[key] = int(env.model.jnt_qposadr[env.model.joint(name).id])
    return float(env.data.qpos[ids[key]])


def _quat_error(qw: float, qx: float, qy: float, qz: float, iw: float, iz: float) -> float:
    a, d = qw - iw, qz - iz
    return _SQRT(a * a + qx * qx + qy * qy + d * d)


def assembly(env, obs, action) -> tuple[float, float]:
    """Nut on the peg: (2 grab (medium density) + 6 in-place funnel) x upright quat; 10 on success."""
    hx, hy, hz, _, wx, wy, wz, q0, q1, q2, q3 = obs[:11].tolist()
    cx, cy, cz = _site(env, "RoundNut")
    tx, ty, tz = env._target_pos.tolist()
    ex, ey, ez = tx - cx, ty - cy, tz - cz
    radius = _SQRT(ex * ex + ey * ey)
    success = radius < 0.02 and ez > 0.0
    if success:
        return 10.0, 1.0

    reward_quat = max(1.0 - _quat_error(q0, q1, q2, q3, 0.707, 0.707) / 0.4, 0.0)
    threshold = 0.01
    target_height = 0.0
    if radius > threshold:
        target_height = 0.02 * math.log(radius - threshold) + 0.2
    ez = (target_height - cz) * 3.0
    lifted = cz > 0.02 or radius < threshold
    in_place = 0.1 * float(lifted) + 0.9 * tolerance(_SQRT(ex * ex + ey * ey + ez * ez), 0, 0.02, 0.4, "long_tail")

    wtx = hx if abs(wx - hx) < SawyerNutAssemblyEnvV3.WRENCH_HANDLE_LENGTH / 2.0 else wx
    grab = gripper_caging(
        env, action, (wtx, wy, wz), tcp_xyz(env), 0.015, 0.02, 0.01, reach_radius=0.01, medium_density=True
    )
    return float((2.0 * grab + 6.0 * in_place) * reward_quat), 0.0


def disassemble(env, obs, action) -> tuple[float, float]:
    """Nut off the peg: (2 grab (high density) + 6 lift-to-target) x upright quat; 10 on success."""
    hx, hy, hz, _, wx, wy, wz, q0, q1, q2, q3 = obs[:11].tolist()
    tx, ty, tz = env._target_pos.tolist()
    if wz > tz:
        return 10.0, 1.0

    cx, cy, cz = _site(env, "RoundNut")
    ex, ey, ez = tx - cx, ty - cy, (tz + 0.1) - cz
    lifted = cz > 0.02
    in_place = 0.1 * float(lifted) + 0.9 * tolerance(_SQRT(ex * ex + ey * ey + ez * ez), 0, 0.02, 0.2, "long_tail")
    reward_quat = max(1.0 - _quat_error(q0, q1, q2, q3, 0.707, 0.707) / 0.4, 0.0)

    wtx = hx if abs(wx - hx) < SawyerNutDisassembleEnvV3.WRENCH_HANDLE_LENGTH / 2.0 else wx
    grab = gripper_caging(env, action, (wtx, wy, wz), tcp_xyz(env), 0.015, 0.02, 0.01, high_density=True)
    return float((2.0 * grab + 6.0 * in_place) * reward_quat), 0.0


def basketball(env, obs, action) -> tuple[float, float]:
    """Ball above the hoop: Hamacher(grasp, in-place, z error x2), +1 + 5 in-place when held; 10 at target."""
    _, _, _, tcp_opened, ox, oy, oz = obs[:7].tolist()
    tx, ty, _ = env._target_pos.tolist()
    dx, dy, dz = ox - tx, oy - ty, (oz - 0.3) * 2.0
    target_to_obj = _SQRT(dx * dx + dy * dy + dz * dz)
    radius = SawyerBasketballEnvV3.TARGET_RADIUS
    if target_to_obj < radius:
        return 10.0, 1.0

    ix, iy, iz = env.obj_init_pos.tolist()
    dx, dy, dz = ix - tx, iy - ty, (iz - 0.3) * 2.0
    in_place = tolerance(target_to_obj, 0, radius, _SQRT(dx * dx + dy * dy + dz * dz), "long_tail")
    tcp = tcp_xyz(env)
    dx, dy, dz = ox - tcp[0], oy - tcp[1], oz - tcp[2]
    held = _SQRT(dx * dx + dy * dy + dz * dz) < 0.035 and tcp_opened > 0 and oz - 0.01 > iz
    if held:
        return hamacher_product(1.0, in_place) + (1.0 + 5.0 * in_place), float(target_to_obj <= radius)
    grasped = gripper_caging(env, action, (ox, oy, oz), tcp, 0.025, 0.06, 0.005, high_density=True)
    return float(hamacher_product(grasped, in_place)), float(target_to_obj <= radius)


def bin_picking(env, obs, action) -> tuple[float, float]:
    """Object into the other bin: Hamacher(grasp, in-place), +1 + 5 Hamacher(above-floor, in-place)
    when lifted in hand; 10 at target. Sets ``env._target_to_obj_init`` on the episode's first call."""
    hx, hy, hz, grip, ox, oy, oz = obs[:7].tolist()
    target = env._target_pos
    tx, ty, tz = target.tolist()
    dx, dy, dz = ox - tx, oy - ty, oz - tz
    target_to_obj = _SQRT(dx * dx + dy * dy + dz * dz)
    if env._target_to_obj_init is None:
        # stored for the episode: Meta-World's own value, bit for bit
        env._target_to_obj_init = float(np.linalg.norm(obs[4:7] - target))
    radius = SawyerBinPickingEnvV3.TARGET_RADIUS
    if target_to_obj < radius:
        return 10.0, 1.0

    in_place = tolerance(target_to_obj, 0, radius, env._target_to_obj_init, "long_tail")
    ix, iy, iz = env.obj_init_pos.tolist()
    grasped = gripper_caging(env, action, (ox, oy, oz), tcp_xyz(env), 0.015, 0.05, 0.01, effort=0.7, high_density=True)
    reward = hamacher_product(grasped, in_place)

    dx, dy, dz = ox - hx, oy - hy, oz - hz
    near_object = _SQRT(dx * dx + dy * dy + dz * dz) < 0.04
    if near_object and oz - 0.02 > iz and not grip < 0.43:
        floor = None
        for px, py in ((ix, iy), (tx, ty)):
            dx, dy = hx - px, hy - py
            r = _SQRT(dx * dx + dy * dy)
            f = 0.02 * math.log(r - 0.03) + 0.2 if r > 0.03 else 0.0
            if floor is None or f < floor:
                floor = f
        above_floor = 1.0 if hz >= floor else tolerance(max(floor - hz, 0.0), 0.0, 0.01, 0.05, "long_tail")
        reward += 1.0 + 5.0 * hamacher_product(above_floor, in_place)
    return float(reward), float(target_to_obj <= 0.05)


def box_close(env, obs, action) -> tuple[float, float]:
    """Lid on the box: (2 Hamacher(grip effort, ready-to-lift) + 8 lid placement) x upright quat;
    10 x quat on success."""
    hx, hy, hz, _, ox, oy, oz, q0, q1, q2, q3 = obs[:11].tolist()
    reward_quat = max(1.0 - _quat_error(q0, q1, q2, q3, 0.707, 0.707) / 0.2, 0.0)
    tx, ty, tz = env._target_pos.tolist()
    dx, dy, dz = ox - tx, oy - ty, oz - tz
    if _SQRT(dx * dx + dy * dy + dz * dz) < 0.08:
        return 10.0 * reward_quat, 1.0

    # float32 like Meta-World's np.clip on the action's own dtype
    a = action[3]
    grab = float((min(max(a, -1), 1) + 1.0) / 2.0)
    grab = 0.0 if grab < 0.0 else (1.0 if grab > 1.0 else grab)

    lz = oz + 0.02
    dx, dy = hx - ox, hy - oy
    radius = _SQRT(dx * dx + dy * dy)
    floor = 0.0 if radius <= 0.02 else 0.04 * math.log(radius - 0.02) + 0.4
    above_floor = 1.0 if hz >= floor else tolerance(floor - hz, 0.0, 0.01, floor / 2.0, "long_tail")
    dz = hz - lz
    in_place = tolerance(_SQRT(dx * dx + dy * dy + dz * dz), 0, 0.02, 0.5, "long_tail")
    ready = hamacher_product(above_floor, in_place)

    ex, ey, ez = tx - ox, ty - oy, (tz - lz) * 3.0
    lifted = 0.2 * float(lz > 0.04) + 0.8 * tolerance(_SQRT(ex * ex + ey * ey + ez * ez), 0, 0.05, 0.25, "long_tail")
    return float((2.0 * hamacher_product(grab, ready) + 8.0 * lifted) * reward_quat), 0.0


def hammer(env, obs, action) -> tuple[float, float]:
    """Nail in: (2 grab (high density) + 6 head-to-nail) x upright quat; 10 once the nail is in and
    the reward is above 5."""
    hx, hy, hz, _, mx, my, mz, q0, q1, q2, q3 = obs[:11].tolist()
    reward_quat = max(1.0 - _quat_error(q0, q1, q2, q3, 1.0, 0.0) / 0.4, 0.0)
    tx, ty, tz = env._target_pos.tolist()
    headz = mz + 0.0
    ex, ey, ez = tx - (mx + 0.16), ty - (my + 0.06), tz - headz
    head_to_nail = _SQRT(ex * ex + ey * ey + ez * ez)
    in_place = 0.1 * float(headz > 0.02) + 0.9 * tolerance(head_to_nail, 0, 0.02, 0.2, "long_tail")

    threshed_x = hx if abs(mx - hx) < SawyerHammerEnvV3.HAMMER_HANDLE_LENGTH / 2.0 else mx
    grab = gripper_caging(env, action, (threshed_x, my, mz), tcp_xyz(env), 0.015, 0.02, 0.01, high_density=True)
    reward = (2.0 * grab + 6.0 * in_place) * reward_quat
    success = _joint_qpos(env, "NailSlideJoint") > 0.09
    if success and reward > 5.0:
        reward = 10.0
    return float(reward), float(success)


def hand_insert(env, obs, action) -> tuple[float, float]:
    """Object into the hole: Hamacher(grasp, in-place), +1 + 7 in-place with the object at the
    open gripper; 10 at target."""
    _, _, _, tcp_opened, ox, oy, oz = obs[:7].tolist()
    tx, ty, tz = env._target_pos.tolist()
    dx, dy, dz = ox - tx, oy - ty, oz - tz
    target_to_obj = _SQRT(dx * dx + dy * dy + dz * dz)
    radius = SawyerHandInsertEnvV3.TARGET_RADIUS
    if target_to_obj < radius:
        return 10.0, 1.0

    ix, iy, iz = env.obj_init_pos.tolist()
    dx, dy, dz = ix - tx, iy - ty, iz - tz
    in_place = tolerance(target_to_obj, 0, radius, _SQRT(dx * dx + dy * dy + dz * dz), "long_tail")
    tcp = tcp_xyz(env)
    grasped = gripper_caging(env, action, (ox, oy, oz), tcp, 0.015, 0.05, 0.005, high_density=True)
    reward = hamacher_product(grasped, in_place)
    dx, dy, dz = ox - tcp[0], oy - tcp[1], oz - tcp[2]
    if _SQRT(dx * dx + dy * dy + dz * dz) < 0.02 and tcp_opened > 0:
        reward += 1.0 + 7.0 * in_place
    return float(reward), float(target_to_obj <= 0.05)


REWARDS = {
    SawyerNutAssemblyEnvV3: assembly,
    SawyerNutDisassembleEnvV3: disassemble,
    SawyerBasketballEnvV3: basketball,
    SawyerBinPickingEnvV3: bin_picking,
    SawyerBoxCloseEnvV3: box_close,
    SawyerHammerEnvV3: hammer,
    SawyerHandInsertEnvV3: hand_insert,
}
