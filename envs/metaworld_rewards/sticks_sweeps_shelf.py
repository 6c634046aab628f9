"""Float rewards for soccer-v3, stick-push-v3, stick-pull-v3, shelf-place-v3, sweep-into-v3
and sweep-v3 (Meta-World v3, ``reward_function_version="v2"``)."""

from __future__ import annotations

import math

from metaworld.envs.sawyer_shelf_place_v3 import SawyerShelfPlaceEnvV3
from metaworld.envs.sawyer_soccer_v3 import SawyerSoccerEnvV3
from metaworld.envs.sawyer_stick_pull_v3 import SawyerStickPullEnvV3
from metaworld.envs.sawyer_stick_push_v3 import SawyerStickPushEnvV3
from metaworld.envs.sawyer_sweep_into_goal_v3 import SawyerSweepIntoGoalEnvV3
from metaworld.envs.sawyer_sweep_v3 import SawyerSweepEnvV3

from envs.metaworld_rewards.primitives import dist, gripper_caging, hamacher_product, tcp_xyz, tolerance

_sqrt = math.sqrt


def _pads_y(env) -> tuple[float, float]:
    xpos = env.data.xpos
    return float(xpos[env._fast_body_id("leftpad")][1]), float(xpos[env._fast_body_id("rightpad")][1])


def _pad_caging(env, tcp, ox, oy, oz, obj_radius, grip_margin, xz_margin) -> float:
    """The ``_gripper_caging_reward`` override of soccer, sweep and sweep-into: pad caging and
    gripping on y (margins from ``init_left_pad`` / ``init_right_pad``), x-z caging; the
    action's gripper term is unused."""
    ly, ry = _pads_y(env)
    dl, dr = ly - oy, oy - ry
    # init_*_pad are views of the live pad positions (get_body_com at __init__): read them, don't cache
    rm = abs(abs(oy - float(env.init_right_pad[1])) - 0.05)
    lm = abs(abs(oy - float(env.init_left_pad[1])) - 0.05)
    y_caging = hamacher_product(
        tolerance(dr, obj_radius, 0.05, rm, "long_tail"), tolerance(dl, obj_radius, 0.05, lm, "long_tail")
    )
    y_gripping = hamacher_product(
        tolerance(dr, obj_radius, grip_margin, rm, "long_tail"), tolerance(dl, obj_radius, grip_margin, lm, "long_tail")
    )
    tx, _, tz = tcp
    ix, _, iz = env.obj_init_pos.tolist()
    jx, _, jz = env.init_tcp.tolist()
    dx, dz = ix - jx, iz - jz
    margin = _sqrt(dx * dx + dz * dz) - xz_margin
    dx, dz = tx - ox, tz - oz
    x_z_caging = tolerance(_sqrt(dx * dx + dz * dz), 0, xz_margin, margin, "long_tail")
    caging = hamacher_product(y_caging, x_z_caging)
    gripping = y_gripping if caging > 0.95 else 0.0
    return (caging + gripping) / 2


def soccer(env, obs, action) -> tuple[float, float]:
    """3 caging (own override) + 6.5 in-place (x scaled by 3, cut past the goal line), 10 at the goal."""
    o = obs.tolist()
    ox, oy, oz = o[4], o[5], o[6]
    tx, ty, tz = env._target_pos.tolist()
    ix, iy, iz = env.obj_init_pos.tolist()
    radius = env.TARGET_RADIUS
    dx, dy, dz = ox - tx, oy - ty, oz - tz
    x = dx * 3.0
    target_to_obj = _sqrt(x * x + dy * dy + dz * dz)
    x, y, z = (ox - ix) * 3.0, oy - iy, oz - iz
    in_place = tolerance(target_to_obj, 0, radius, _sqrt(x * x + y * y + z * z), "long_tail")
    goal_line = ty - 0.1
    if oy > goal_line and abs(ox - tx) > 0.10:
        in_place = min(max(in_place - 2 * ((oy - goal_line) / (1 - goal_line)), 0.0), 1.0)
    object_grasped = _pad_caging(env, tcp_xyz(env), ox, oy, oz, env.OBJ_RADIUS, env.OBJ_RADIUS + 0.01, 0.005)
    reward = (3 * object_grasped) + (6.5 * in_place)
    if target_to_obj < radius:
        reward = 10.0
    return float(reward), float(_sqrt(dx * dx + dy * dy + dz * dz) <= 0.07)


def stick_push(env, obs, action) -> tuple[float, float]:
    """Caging of the stick (high density, around stick_init_pos); once grasped and lifted
    2 + 5 stick-in-place + 3 container-in-place, 10 in place; success needs the grasp too."""
    o = obs.tolist()
    sx, sy, sz = o[4] + 0.015, o[5] + 0.0, o[6] + 0.0
    cx, cy, cz = o[11], o[12], o[13]
    tcp = tcp_xyz(env)
    tx, ty, tz = env._target_pos.tolist()
    init = env.stick_init_pos.tolist()
    object_grasped = gripper_caging(env, action, (sx, sy, sz), tcp, 0.04, 0.05, 0.01, init=init, high_density=True)
    reward = object_grasped
    container_to_target = dist(cx, cy, cz, tx, ty, tz)
    # Meta-World builds both tolerances every step, and a negative margin raises there
    stick_margin = dist(init[0], init[1], init[2], tx, ty, tz) - 0.12
    px, py, pz = env.obj_init_pos.tolist()
    container_margin = dist(px, py, pz, tx, ty, tz) - 0.12
    if stick_margin < 0 or container_margin < 0:
        raise ValueError(f"`margin` must be non-negative. Current value: {min(stick_margin, container_margin)}")
    if dist(sx, sy, sz, *tcp) < 0.02 and o[3] > 0 and sz - 0.01 > init[2]:
        stick_in_place = tolerance(dist(sx, sy, sz, tx, ty, tz), 0, 0.12, stick_margin, "long_tail")
        container_in_place = tolerance(container_to_target, 0, 0.12, container_margin, "long_tail")
        reward = 2.0 + 5.0 * stick_in_place + 3.0 * container_in_place
        if container_to_target <= 0.12:
            reward = 10.0
    success = 0.0
    if container_to_target <= 0.12:
        success = float(env.touching_object(_main_geom_id(env)) and o[3] > 0 and o[6] - 0.01 > init[2])
    return float(reward), success


def _main_geom_id(env) -> int:
    ids = env._fast_ids
    key = ("geom", "main object")
    if key not in ids:
        ids[key] = env._get_id_main_object()
    return ids[key]


def stick_pull(env, obs, action) -> tuple[float, float]:
    """Hamacher(caging (high density) or 1 once grasped, stick-to-handle in place); grasped:
    1 + that + 5 in place, inserted: + 5 + 2 stick-to-target + container-to-target, 10 at the target."""
    o = obs.tolist()
    sx, sy, sz = o[4], o[5], o[6]
    hx, hy, hz = o[11], o[12], o[13]
    cx, cy, cz = hx + 0.05, hy + 0.0, hz + 0.0
    tcp = tcp_xyz(env)
    tx, ty, tz = env._target_pos.tolist()
    six, siy, siz = env.stick_init_pos.tolist()
    obj_init = env.obj_init_pos.tolist()
    ix, iy, iz = obj_init
    handle_to_target = dist(hx, hy, hz, tx, ty, tz)
    x, y, z = sx - cx, sy - cy, (sz - cz) * 2.0
    stick_to_container = _sqrt(x * x + y * y + z * z)
    x, y, z = six - (ix + 0.05), siy - (iy + 0.0), (siz - (iz + 0.0)) * 2.0
    stick_in_place = tolerance(stick_to_container, 0, 0.05, _sqrt(x * x + y * y + z * z), "long_tail")
    object_grasped = gripper_caging(env, action, (sx, sy, sz), tcp, 0.014, 0.05, 0.01, init=obj_init, high_density=True)
    grasp_success = dist(sx, sy, sz, *tcp) < 0.02 and o[3] > 0 and sz - 0.01 > siz
    if grasp_success:
        object_grasped = 1
    in_place_and_object_grasped = hamacher_product(object_grasped, stick_in_place)
    reward = in_place_and_object_grasped
    p = env.data.site_xpos[env._fast_site_id("stick_end")]
    ex, ey, ez = float(p[0]), float(p[1]), float(p[2])
    inserted = ex >= hx and abs(ey - hy) <= 0.040 and abs(ez - hz) <= 0.060
    if grasp_success:
        reward = 1.0 + in_place_and_object_grasped + 5.0 * stick_in_place
        if inserted:
            stick_in_place_2 = tolerance(
                dist(sx, sy, sz, tx, ty, tz), 0, 0.05, dist(six, siy, siz, tx, ty, tz), "long_tail"
            )
            container_in_place = tolerance(
                dist(cx, cy, cz, tx, ty, tz), 0, 0.05, dist(ix, iy, iz, tx, ty, tz), "long_tail"
            )
            reward = 1.0 + in_place_and_object_grasped + 5.0 + 2.0 * stick_in_place_2 + 1.0 * container_in_place
            if handle_to_target <= 0.12:
                reward = 10.0
    return float(reward), float(handle_to_target <= 0.12 and inserted)


def shelf_place(env, obs, action) -> tuple[float, float]:
    """Hamacher(caging, in place); in-place cut under and zeroed behind the shelf; lifted and
    held: + 1 + 5 in place; 10 on the target."""
    o = obs.tolist()
    ox, oy, oz = o[4], o[5], o[6]
    tcp = tcp_xyz(env)
    tx, ty, tz = env._target_pos.tolist()
    obj_init = env.obj_init_pos.tolist()
    obj_to_target = dist(ox, oy, oz, tx, ty, tz)
    in_place = tolerance(obj_to_target, 0, 0.05, dist(obj_init[0], obj_init[1], obj_init[2], tx, ty, tz), "long_tail")
    object_grasped = gripper_caging(env, action, (ox, oy, oz), tcp, 0.02, 0.05, 0.01, init=obj_init, high_density=False)
    reward = hamacher_product(object_grasped, in_place)
    # after np.clip Meta-World's in_place is a numpy float64, which turns a float32 reward into
    # float64 in the sum below; a Python float in_place keeps it float32
    clipped = False
    in_front = 0.0 < oz < 0.24 and (tx - 0.15 < ox < tx + 0.15)
    if in_front and ((ty - 3 * 0.05) < oy < ty):
        z_scaling = (0.24 - oz) / 0.24
        y_scaling = (oy - (ty - 3 * 0.05)) / (3 * 0.05)
        in_place = min(max(in_place - hamacher_product(y_scaling, z_scaling), 0.0), 1.0)
        clipped = True
    if in_front and oy > ty:
        in_place = 0.0
        clipped = False
    if dist(ox, oy, oz, *tcp) < 0.025 and o[3] > 0 and oz - 0.01 > obj_init[2]:
        bonus = 1.0 + 5.0 * in_place
        reward = (float(reward) + bonus) if clipped else (reward + bonus)
    if obj_to_target < 0.05:
        reward = 10.0
    return float(reward), float(obj_to_target <= 0.07)


def _sweep(env, obs, target_z_from_obj: bool, grip_margin: float, xz_margin: float) -> tuple[float, float]:
    o = obs.tolist()
    ox, oy, oz = o[4], o[5], o[6]
    tx, ty, tz = env._target_pos.tolist()
    if target_z_from_obj:
        tz = oz
    obj_to_target = dist(ox, oy, oz, tx, ty, tz)
    ix, iy, iz = env.obj_init_pos.tolist()
    in_place = tolerance(obj_to_target, 0, 0.05, dist(ix, iy, iz, tx, ty, tz), "long_tail")
    object_grasped = _pad_caging(env, tcp_xyz(env), ox, oy, oz, env.OBJ_RADIUS, grip_margin, xz_margin)
    reward = (2 * object_grasped) + (6 * hamacher_product(object_grasped, in_place))
    if obj_to_target < 0.05:
        reward = 10.0
    return float(reward), float(obj_to_target <= 0.05)


def sweep_into(env, obs, action) -> tuple[float, float]:
    """2 caging (own override) + 6 Hamacher(caging, in place on x-y), 10 at the hole."""
    return _sweep(env, obs, True, env.OBJ_RADIUS + 0.005, 0.01)


def sweep(env, obs, action) -> tuple[float, float]:
    """2 caging (own override) + 6 Hamacher(caging, in place), 10 at the goal."""
    return _sweep(env, obs, False, env.OBJ_RADIUS + 0.01, 0.005)


REWARDS = {
    SawyerSoccerEnvV3: soccer,
    SawyerStickPushEnvV3: stick_push,
    SawyerStickPullEnvV3: stick_pull,
    SawyerShelfPlaceEnvV3: shelf_place,
    SawyerSweepIntoGoalEnvV3: sweep_into,
    SawyerSweepEnvV3: sweep,
}
