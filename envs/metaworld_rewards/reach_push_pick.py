"""Float rewards for reach, reach-wall, push, push-wall, push-back, pick-place, pick-place-wall
and pick-out-of-hole (v3 envs, reward v2). None of them sets attributes on the env in v2."""

from __future__ import annotations

import math

from metaworld.envs.sawyer_pick_out_of_hole_v3 import SawyerPickOutOfHoleEnvV3
from metaworld.envs.sawyer_pick_place_v3 import SawyerPickPlaceEnvV3
from metaworld.envs.sawyer_pick_place_wall_v3 import SawyerPickPlaceWallEnvV3
from metaworld.envs.sawyer_push_back_v3 import SawyerPushBackEnvV3
from metaworld.envs.sawyer_push_v3 import SawyerPushEnvV3
from metaworld.envs.sawyer_push_wall_v3 import SawyerPushWallEnvV3
from metaworld.envs.sawyer_reach_v3 import SawyerReachEnvV3
from metaworld.envs.sawyer_reach_wall_v3 import SawyerReachWallEnvV3

from envs.metaworld_rewards.primitives import dist, gripper_caging, hamacher_product, tcp_xyz, tolerance

_IDS = ("reach_push_pick", "sites_and_pads")


def _read(env) -> tuple[float, float, float, float, float]:
    """``env.tcp_center`` (the same (right + left) / 2.0 per element) and the y of the left and
    right pads, as floats; the model ids are cached in ``env._fast_ids``."""
    ids = env._fast_ids.get(_IDS)
    if ids is None:
        right, left = env._fast_finger_sites
        ids = env._fast_ids[_IDS] = (right, left, env._fast_body_id("leftpad"), env._fast_body_id("rightpad"))
    right, left, left_pad, right_pad = ids
    data = env.data
    sx = data.site_xpos
    r0, r1, r2 = sx[right].tolist()
    l0, l1, l2 = sx[left].tolist()
    xpos = data.xpos
    return (r0 + l0) / 2.0, (r1 + l1) / 2.0, (r2 + l2) / 2.0, float(xpos[left_pad, 1]), float(xpos[right_pad, 1])


def _reach_to_target(env) -> tuple[float, float]:
    tx, ty, tz = tcp_xyz(env)
    g0, g1, g2 = env._target_pos.tolist()
    h = env.hand_init_pos
    tcp_to_target = dist(tx, ty, tz, g0, g1, g2)
    margin = dist(float(h[0]), float(h[1]), float(h[2]), g0, g1, g2)
    in_place = tolerance(tcp_to_target, 0, 0.05, margin, "long_tail")
    return 10 * in_place, float(tcp_to_target <= 0.05)


def reach(env, obs, action) -> tuple[float, float]:
    """10 x long-tail tolerance of tcp-to-target; success within 0.05."""
    return _reach_to_target(env)


def reach_wall(env, obs, action) -> tuple[float, float]:
    """Same terms as reach."""
    return _reach_to_target(env)


def push(env, obs, action) -> tuple[float, float]:
    """2 x caging (high density), + 1 + caging term + 5 x in-place once the open tcp is at the
    object, 10 at the target; success within TARGET_RADIUS."""
    tcp_opened, ox, oy, oz = obs[3:7].tolist()
    tx, ty, tz, ly, ry = _read(env)
    g0, g1, g2 = env._target_pos.tolist()
    init = env.obj_init_pos
    tcp_to_obj = dist(ox, oy, oz, tx, ty, tz)
    target_to_obj = dist(ox, oy, oz, g0, g1, g2)
    target_to_obj_init = dist(float(init[0]), float(init[1]), float(init[2]), g0, g1, g2)
    radius = env.TARGET_RADIUS
    in_place = tolerance(target_to_obj, 0, radius, target_to_obj_init, "long_tail")
    object_grasped = gripper_caging(env, action, (ox, oy, oz), (tx, ty, tz), 0.015, 0.05, 0.005, high_density=True)
    reward = 2 * object_grasped
    if tcp_to_obj < 0.02 and tcp_opened > 0:
        reward += 1.0 + reward + 5.0 * in_place
    if target_to_obj < radius:
        reward = 10.0
    return float(reward), float(target_to_obj <= radius)


def push_wall(env, obs, action) -> tuple[float, float]:
    """2 x caging, + 1 + 4 x in-place to the wall's midpoint (x scaled by 3) at the object, + 3 x
    in-place to the target past the wall (y > 0.75), 10 at the target; success within 0.07."""
    tcp_opened, ox, oy, oz = obs[3:7].tolist()
    tx, ty, tz, ly, ry = _read(env)
    g0, g1, g2 = env._target_pos.tolist()
    init = env.obj_init_pos
    ix, iy, iz = float(init[0]), float(init[1]), float(init[2])
    tcp_to_obj = dist(ox, oy, oz, tx, ty, tz)
    # midpoint (-0.05, 0.77, obj z), x scaled by 3
    mx, my = (ox - -0.05) * 3.0, oy - 0.77
    obj_to_midpoint = math.sqrt(mx * mx + my * my)
    mx, my, mz = (ix - -0.05) * 3.0, iy - 0.77, iz - oz
    obj_to_midpoint_init = math.sqrt(mx * mx + my * my + mz * mz)
    obj_to_target = dist(ox, oy, oz, g0, g1, g2)
    obj_to_target_init = dist(ix, iy, iz, g0, g1, g2)
    in_place_part1 = tolerance(obj_to_midpoint, 0, 0.05, obj_to_midpoint_init, "long_tail")
    in_place_part2 = tolerance(obj_to_target, 0, 0.05, obj_to_target_init, "long_tail")
    object_grasped = gripper_caging(env, action, (ox, oy, oz), (tx, ty, tz), 0.015, 0.05, 0.005, high_density=True)
    reward = 2 * object_grasped
    if tcp_to_obj < 0.02 and tcp_opened > 0:
        reward = 2.0 * object_grasped + 1.0 + 4.0 * in_place_part1
        if oy > 0.75:
            reward = 2 * object_grasped + 1.0 + 4.0 + 3.0 * in_place_part2
    if obj_to_target < 0.05:
        reward = 10.0
    return float(reward), float(obj_to_target <= 0.07)


def _push_back_caging(env, ox, oy, oz, tx, tz, ly, ry, obj_radius) -> float:
    """``SawyerPushBackEnvV3._gripper_caging_reward``: the mean of y-x-z caging and, once caged
    past 0.95, tight y gripping; the action does not enter it."""
    dy_left, dy_right = ly - oy, oy - ry
    right_margin = abs(abs(oy - float(env.init_right_pad[1])) - 0.05)
    left_margin = abs(abs(oy - float(env.init_left_pad[1])) - 0.05)
    grip_margin = obj_radius + 0.003
    y_caging = hamacher_product(
        tolerance(dy_right, obj_radius, 0.05, right_margin, "long_tail"),
        tolerance(dy_left, obj_radius, 0.05, left_margin, "long_tail"),
    )
    y_gripping = hamacher_product(
        tolerance(dy_right, obj_radius, grip_margin, right_margin, "long_tail"),
        tolerance(dy_left, obj_radius, grip_margin, left_margin, "long_tail"),
    )
    dx, dz = tx - ox, tz - oz
    tcp_obj_xz = math.sqrt(dx * dx + dz * dz)
    init, init_tcp = env.obj_init_pos, env.init_tcp
    dx, dz = float(init[0]) - float(init_tcp[0]), float(init[2]) - float(init_tcp[2])
    x_z_caging = tolerance(tcp_obj_xz, 0, 0.01, math.sqrt(dx * dx + dz * dz) - 0.01, "long_tail")
    caging = hamacher_product(y_caging, x_z_caging)
    gripping = y_gripping if caging > 0.95 else 0.0
    return (caging + gripping) / 2


def push_back(env, obs, action) -> tuple[float, float]:
    """Hamacher of its own caging and in-place, + 1 + 5 x in-place with the tcp at the object
    half-open and progress made, 10 at the target; success within 0.07."""
    tcp_opened, ox, oy, oz = obs[3:7].tolist()
    tx, ty, tz, ly, ry = _read(env)
    g0, g1, g2 = env._target_pos.tolist()
    init = env.obj_init_pos
    tcp_to_obj = dist(ox, oy, oz, tx, ty, tz)
    target_to_obj = dist(ox, oy, oz, g0, g1, g2)
    target_to_obj_init = dist(float(init[0]), float(init[1]), float(init[2]), g0, g1, g2)
    radius = env.TARGET_RADIUS
    in_place = tolerance(target_to_obj, 0, radius, target_to_obj_init, "long_tail")
    object_grasped = _push_back_caging(env, ox, oy, oz, tx, tz, ly, ry, env.OBJ_RADIUS)
    reward = hamacher_product(object_grasped, in_place)
    if tcp_to_obj < 0.01 and 0 < tcp_opened < 0.55 and target_to_obj_init - target_to_obj > 0.01:
        reward += 1.0 + 5.0 * in_place
    if target_to_obj < radius:
        reward = 10.0
    return float(reward), float(target_to_obj <= 0.07)


def _pick_place_caging(env, action, ox, oy, oz, tx, tz, ly, ry) -> float:
    """``SawyerPickPlaceEnvV3._gripper_caging_reward``: pads caging measured from the initial
    pads, xz caging, and the (unscaled) gripper effort once caged, high density. The effort
    stays the action's numpy scalar (float32 products, as in Meta-World)."""
    right_margin = abs(abs(oy - float(env.init_right_pad[1])) - 0.05)
    left_margin = abs(abs(oy - float(env.init_left_pad[1])) - 0.05)
    y_caging = hamacher_product(
        tolerance(ly - oy, 0.015, 0.05, left_margin, "long_tail"),
        tolerance(oy - ry, 0.015, 0.05, right_margin, "long_tail"),
    )
    dx, dz = tx - ox, tz - oz
    tcp_obj_xz = math.sqrt(dx * dx + dz * dz)
    init, init_tcp = env.obj_init_pos, env.init_tcp
    dx, dz = float(init[0]) - float(init_tcp[0]), float(init[2]) - float(init_tcp[2])
    x_z_caging = tolerance(tcp_obj_xz, 0, 0.005, math.sqrt(dx * dx + dz * dz) - 0.005, "long_tail")
    caging = hamacher_product(y_caging, x_z_caging)
    gripping = min(max(0, action[-1]), 1) if caging > 0.97 else 0.0
    caging_and_gripping = hamacher_product(caging, gripping)
    return (caging_and_gripping + caging) / 2


def pick_place(env, obs, action) -> tuple[float, float]:
    """Hamacher of its own caging and in-place, + 1 + 5 x in-place once lifted 0.01 with the open
    tcp at the object, 10 at the target; success within 0.07."""
    tcp_opened, ox, oy, oz = obs[3:7].tolist()
    tx, ty, tz, ly, ry = _read(env)
    g0, g1, g2 = env._target_pos.tolist()
    init = env.obj_init_pos
    iz = float(init[2])
    obj_to_target = dist(ox, oy, oz, g0, g1, g2)
    tcp_to_obj = dist(ox, oy, oz, tx, ty, tz)
    in_place_margin = dist(float(init[0]), float(init[1]), iz, g0, g1, g2)
    in_place = tolerance(obj_to_target, 0, 0.05, in_place_margin, "long_tail")
    object_grasped = _pick_place_caging(env, action, ox, oy, oz, tx, tz, ly, ry)
    reward = hamacher_product(object_grasped, in_place)
    if tcp_to_obj < 0.02 and tcp_opened > 0 and oz - 0.01 > iz:
        reward += 1.0 + 5.0 * in_place
    if obj_to_target < 0.05:
        reward = 10.0
    return float(reward), float(obj_to_target <= 0.07)


def pick_place_wall(env, obs, action) -> tuple[float, float]:
    """Hamacher of caging and in-place to the midpoint above the wall (z scaled by 3), + 1 + 4 x
    that once lifted 0.015 and held, + 3 x in-place to the target past the wall (y > 0.75), 10
    at the target; success within 0.07."""
    tcp_opened, ox, oy, oz = obs[3:7].tolist()
    tx, ty, tz, ly, ry = _read(env)
    g0, g1, g2 = env._target_pos.tolist()
    init = env.obj_init_pos
    ix, iy, iz = float(init[0]), float(init[1]), float(init[2])
    tcp_to_obj = dist(ox, oy, oz, tx, ty, tz)
    # midpoint (target x, 0.77, 0.25), z scaled by 3
    mx, my, mz = ox - g0, oy - 0.77, (oz - 0.25) * 3.0
    obj_to_midpoint = math.sqrt(mx * mx + my * my + mz * mz)
    mx, my, mz = ix - g0, iy - 0.77, (iz - 0.25) * 3.0
    obj_to_midpoint_init = math.sqrt(mx * mx + my * my + mz * mz)
    obj_to_target = dist(ox, oy, oz, g0, g1, g2)
    obj_to_target_init = dist(ix, iy, iz, g0, g1, g2)
    in_place_part1 = tolerance(obj_to_midpoint, 0, 0.05, obj_to_midpoint_init, "long_tail")
    in_place_part2 = tolerance(obj_to_target, 0, 0.05, obj_to_target_init, "long_tail")
    object_grasped = gripper_caging(env, action, (ox, oy, oz), (tx, ty, tz), 0.015, 0.05, 0.005)
    in_place_and_object_grasped = hamacher_product(object_grasped, in_place_part1)
    reward = in_place_and_object_grasped
    if tcp_to_obj < 0.02 and tcp_opened > 0 and oz - 0.015 > iz:
        reward = in_place_and_object_grasped + 1.0 + 4.0 * in_place_part1
        if oy > 0.75:
            reward = in_place_and_object_grasped + 1.0 + 4.0 + 3.0 * in_place_part2
    if obj_to_target < 0.05:
        reward = 10.0
    return float(reward), float(obj_to_target <= 0.07)


def pick_out_of_hole(env, obs, action) -> tuple[float, float]:
    """Hamacher of caging (effort 0.1, high density) and in-place, + 1 + 5 x hamacher(in-place,
    above the funnel floor) once lifted near the tcp and not pinched empty, 10 within
    TARGET_RADIUS (the base 0.05: the class's own _TARGET_RADIUS is unused); success within 0.07."""
    tcp_opened, ox, oy, oz = obs[3:7].tolist()
    tx, ty, tz, ly, ry = _read(env)
    g0, g1, g2 = env._target_pos.tolist()
    init = env.obj_init_pos
    ix, iy, iz = float(init[0]), float(init[1]), float(init[2])
    obj_to_target = dist(ox, oy, oz, g0, g1, g2)
    tcp_to_obj = dist(ox, oy, oz, tx, ty, tz)
    in_place_margin = dist(ix, iy, iz, g0, g1, g2)
    dx, dy = tx - ix, ty - iy
    radius = math.sqrt(dx * dx + dy * dy)
    floor = 0.0 if radius <= 0.03 else 0.015 * math.log(radius - 0.03) + 0.15
    above_floor = 1.0 if tz >= floor else tolerance(max(floor - tz, 0.0), 0.0, 0.01, 0.02, "long_tail")
    object_grasped = gripper_caging(
        env, action, (ox, oy, oz), (tx, ty, tz), 0.015, 0.02, 0.03, effort=0.1, high_density=True
    )
    in_place = tolerance(obj_to_target, 0, 0.02, in_place_margin, "long_tail")
    reward = hamacher_product(object_grasped, in_place)
    if tcp_to_obj < 0.04 and oz - 0.02 > iz and not tcp_opened < 0.33:
        reward += 1.0 + 5.0 * hamacher_product(in_place, above_floor)
    if obj_to_target < env.TARGET_RADIUS:
        reward = 10.0
    return float(reward), float(obj_to_target <= 0.07)


REWARDS = {
    SawyerReachEnvV3: reach,
    SawyerReachWallEnvV3: reach_wall,
    SawyerPushEnvV3: push,
    SawyerPushWallEnvV3: push_wall,
    SawyerPushBackEnvV3: push_back,
    SawyerPickPlaceEnvV3: pick_place,
    SawyerPickPlaceWallEnvV3: pick_place_wall,
    SawyerPickOutOfHoleEnvV3: pick_out_of_hole,
}
