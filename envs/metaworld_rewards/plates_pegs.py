"""Float rewards for plate-slide(-side, -back, -back-side)-v3, peg-insert-side-v3 and
peg-unplug-side-v3 (Meta-World v3, reward_function_version="v2")."""

from __future__ import annotations

import math

import numpy as np
from metaworld.envs.sawyer_peg_insertion_side_v3 import SawyerPegInsertionSideEnvV3
from metaworld.envs.sawyer_peg_unplug_side_v3 import SawyerPegUnplugSideEnvV3
from metaworld.envs.sawyer_plate_slide_back_side_v3 import SawyerPlateSlideBackSideEnvV3
from metaworld.envs.sawyer_plate_slide_back_v3 import SawyerPlateSlideBackEnvV3
from metaworld.envs.sawyer_plate_slide_side_v3 import SawyerPlateSlideSideEnvV3
from metaworld.envs.sawyer_plate_slide_v3 import SawyerPlateSlideEnvV3

from envs.metaworld_rewards.primitives import (
    dist,
    gripper_caging,
    hamacher_product,
    rect_prism_tolerance,
    tcp_xyz,
    tolerance,
)

_F32 = np.float32


def _len(x, y, z) -> float:
    return math.sqrt(x * x + y * y + z * z)


def _ids(env, key, kind, names) -> tuple[int, ...]:
    # one dict read per step for all of a task's ids (MjData's arrays are re-wrapped on every
    # attribute read, so those are read once per call, not cached)
    ids = env._fast_ids.get(key)
    if ids is None:
        lookup = env.model.site if kind == "site" else env.model.body
        ids = env._fast_ids[key] = tuple(lookup(n).id for n in names)
    return ids


def _plate_terms(env, obs, margin_offset):
    tcp = tcp_xyz(env)
    o0, o1, o2 = obs[4:7].tolist()
    g0, g1, g2 = env._target_pos.tolist()
    i0, i1, i2 = env.obj_init_pos.tolist()
    t0, t1, t2 = env.init_tcp.tolist()
    obj_to_target = dist(o0, o1, o2, g0, g1, g2)
    in_place = tolerance(obj_to_target, 0, 0.05, dist(i0, i1, i2, g0, g1, g2) - margin_offset, "long_tail")
    tcp_to_obj = dist(tcp[0], tcp[1], tcp[2], o0, o1, o2)
    grasped = tolerance(tcp_to_obj, 0, 0.05, dist(t0, t1, t2, i0, i1, i2) - margin_offset, "long_tail")
    return tcp, obj_to_target, in_place, tcp_to_obj, grasped


def plate_slide(env, obs, action):
    """8 * hamacher(tcp near puck, puck near goal); 10 once within 0.05 of the goal."""
    _, obj_to_target, in_place, _, grasped = _plate_terms(env, obs, 0.0)
    reward = 8 * hamacher_product(grasped, in_place)
    if obj_to_target < 0.05:
        reward = 10.0
    return reward, float(obj_to_target <= 0.07)


def plate_slide_side(env, obs, action):
    """1.5 * tcp near puck; 2 + 7 * puck near goal with the tcp low at the puck; 10 at the goal.
    plate-slide-back and -back-side have the same v2 reward."""
    tcp, obj_to_target, in_place, tcp_to_obj, grasped = _plate_terms(env, obs, 0.05)
    reward = 1.5 * grasped
    if tcp[2] <= 0.03 and tcp_to_obj < 0.07:
        reward = 2.0 + (7.0 * in_place)
    if obj_to_target < 0.05:
        reward = 10.0
    return reward, float(obj_to_target <= 0.07)


plate_slide_back = plate_slide_back_side = plate_slide_side


_PEG_INSERT_SITES = (
    "pegHead",
    "bottom_right_corner_collision_box_1",
    "top_left_corner_collision_box_1",
    "bottom_right_corner_collision_box_2",
    "top_left_corner_collision_box_2",
)


def _inside(curr, zero, one) -> bool:
    for a, b, c in zip(curr, zero, one, strict=True):
        if not (b <= a <= c if c >= b else c <= a <= b):
            return False
    return True


def peg_insert_side(env, obs, action):
    """hamacher(caging, head-in-hole gated by the collision prisms); +1 + 5 * in_place once lifted
    and open; 10 within 0.07 (y, z weighted 2) of the hole."""
    site_xpos = env.data.site_xpos
    tcp = tcp_xyz(env)
    tcp_opened, o0, o1, o2 = obs[3:7].tolist()
    obj = (o0, o1, o2)
    head_id, brc1_id, tlc1_id, brc2_id, tlc2_id = _ids(env, ("plates_pegs", "peg_insert"), "site", _PEG_INSERT_SITES)
    h0, h1, h2 = head = site_xpos[head_id].tolist()
    g0, g1, g2 = env._target_pos.tolist()
    p0, p1, p2 = env.peg_head_pos_init.tolist()
    tcp_to_obj = dist(o0, o1, o2, tcp[0], tcp[1], tcp[2])
    obj_to_target = _len((h0 - g0) * 1.0, (h1 - g1) * 2.0, (h2 - g2) * 2.0)
    margin = _len((p0 - g0) * 1.0, (p1 - g1) * 2.0, (p2 - g2) * 2.0)
    in_place = tolerance(obj_to_target, 0, env.TARGET_RADIUS, margin, "long_tail")
    brc1, tlc1 = site_xpos[brc1_id].tolist(), site_xpos[tlc1_id].tolist()
    brc2, tlc2 = site_xpos[brc2_id].tolist(), site_xpos[tlc2_id].tolist()
    inside1, inside2 = _inside(head, brc1, tlc1), _inside(head, brc2, tlc2)
    box1 = rect_prism_tolerance(head, brc1, tlc1) if inside1 else 1.0
    box2 = rect_prism_tolerance(head, brc2, tlc2) if inside2 else 1.0
    collision_boxes = hamacher_product(box2, box1)
    # Meta-World's prism value inside a prism is a numpy float64, which then outranks a float32
    # grasp reward in the last hamacher product; outside both it is a Python 1.0, which does not
    strong64 = (inside1 or inside2) and box1 + box2 - box1 * box2 > 0
    in_place = hamacher_product(in_place, collision_boxes)
    grasped = gripper_caging(env, action, obj, tcp, 0.0075, 0.03, 0.005, high_density=True)
    lifted = tcp_to_obj < 0.08 and tcp_opened > 0 and o2 - 0.01 > env.obj_init_pos[2]
    if lifted:
        grasped = 1.0
    elif strong64 and type(grasped) is _F32:
        grasped = float(grasped)
    reward = hamacher_product(grasped, in_place)
    if lifted:
        reward += 1.0 + 5 * in_place
    if obj_to_target <= 0.07:
        reward = 10.0
    return float(reward), float(obj_to_target <= 0.07)


def peg_unplug_side(env, obs, action):
    """2 * caging; 1 + 2 * caging + 5 * peg near goal once pulled with the gripper open near it;
    10 within 0.05 of the goal."""
    tcp = tcp_xyz(env)
    tcp_opened, o0, o1, o2 = obs[3:7].tolist()
    obj = (o0, o1, o2)
    g0, g1, g2 = env._target_pos.tolist()
    i0, i1, i2 = env.obj_init_pos.tolist()
    tcp_to_obj = dist(o0, o1, o2, tcp[0], tcp[1], tcp[2])
    obj_to_target = dist(o0, o1, o2, g0, g1, g2)
    grasped = gripper_caging(env, action, obj, tcp, 0.025, 0.05, 0.005, effort=0.8, high_density=True)
    in_place = tolerance(obj_to_target, 0, 0.05, dist(i0, i1, i2, g0, g1, g2), "long_tail")
    grasp_success = tcp_opened > 0.5 and (o0 - i0 > 0.015)
    reward = 2 * grasped  # float32 arithmetic below when grasped is float32, as in Meta-World
    if grasp_success and tcp_to_obj < 0.035:
        reward = 1 + 2 * grasped + 5 * in_place
    if obj_to_target <= 0.05:
        reward = 10.0
    return float(reward), float(obj_to_target <= 0.07)


REWARDS = {
    SawyerPlateSlideEnvV3: plate_slide,
    SawyerPlateSlideSideEnvV3: plate_slide_side,
    SawyerPlateSlideBackEnvV3: plate_slide_back,
    SawyerPlateSlideBackSideEnvV3: plate_slide_back_side,
    SawyerPegInsertionSideEnvV3: peg_insert_side,
    SawyerPegUnplugSideEnvV3: peg_unplug_side,
}
