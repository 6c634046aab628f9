"""Float rewards for button-press(-wall, -topdown, -topdown-wall), coffee-button, coffee-pull,
coffee-push and dial-turn (Meta-World v3, reward_function_version="v2")."""

from __future__ import annotations

import math

from metaworld.envs.sawyer_button_press_topdown_v3 import SawyerButtonPressTopdownEnvV3
from metaworld.envs.sawyer_button_press_topdown_wall_v3 import SawyerButtonPressTopdownWallEnvV3
from metaworld.envs.sawyer_button_press_v3 import SawyerButtonPressEnvV3
from metaworld.envs.sawyer_button_press_wall_v3 import SawyerButtonPressWallEnvV3
from metaworld.envs.sawyer_coffee_button_v3 import SawyerCoffeeButtonEnvV3
from metaworld.envs.sawyer_coffee_pull_v3 import SawyerCoffeePullEnvV3
from metaworld.envs.sawyer_coffee_push_v3 import SawyerCoffeePushEnvV3
from metaworld.envs.sawyer_dial_turn_v3 import SawyerDialTurnEnvV3

from envs.metaworld_rewards.primitives import hamacher_product, tcp_xyz, tolerance

# np.linalg.norm sums the squares with fused multiply-adds, so math.sqrt(x*x + y*y + z*z) can
# differ from it in the last bit. Where a norm decides a branch or the success flag and lies
# this close to the threshold, Meta-World's own code decides instead.
_EDGE = 1e-12


def _reference(env, obs, action) -> tuple[float, float]:
    reward, info = env.evaluate_state(obs, action)
    return float(reward), info["success"]


def _button_terms(env, obs, axis: int, near_upper: float, target_margin: float):
    """tcp_to_obj, near_button, obj_to_target, button_pressed and obs[3], shared by the
    button tasks; ``axis`` is the pressing axis."""
    o3, ox, oy, oz = obs[3:7].tolist()
    tx, ty, tz = tcp_xyz(env)
    ix, iy, iz = env.init_tcp.tolist()
    dx, dy, dz = ox - tx, oy - ty, oz - tz
    tcp_to_obj = math.sqrt(dx * dx + dy * dy + dz * dz)
    dx, dy, dz = ox - ix, oy - iy, oz - iz
    tcp_to_obj_init = math.sqrt(dx * dx + dy * dy + dz * dz)
    obj_to_target = abs(float(env._target_pos[axis]) - (ox, oy, oz)[axis])
    near_button = tolerance(tcp_to_obj, 0, near_upper, tcp_to_obj_init, "long_tail")
    button_pressed = tolerance(obj_to_target, 0, 0.005, target_margin, "long_tail")
    return o3, tcp_to_obj, near_button, obj_to_target, button_pressed


def _press(env, obs, action, press_margin: float) -> tuple[float, float]:
    """2 * hamacher(gripper closed, near button) + 8 * button pressed once within 5 cm."""
    o3, tcp_to_obj, near, obj_to_target, pressed = _button_terms(env, obs, 1, 0.05, press_margin)
    if abs(tcp_to_obj - 0.05) < _EDGE:
        return _reference(env, obs, action)
    reward = 2 * hamacher_product(max(o3, 0.0), near)
    if tcp_to_obj <= 0.05:
        reward += 8 * pressed
    return reward, 1.0 if obj_to_target <= 0.02 else 0.0


def button_press(env, obs, action) -> tuple[float, float]:
    """``_press`` with the press margin of the button's initial distance to its target."""
    return _press(env, obs, action, float(env._obj_to_target_init))


def button_press_wall(env, obs, action) -> tuple[float, float]:
    """Far (> 7 cm): 2 * hamacher(gripper open, near button); near: 2 + 2 (1 + obs[3]) + 4 pressed^2."""
    o3, tcp_to_obj, near, obj_to_target, pressed = _button_terms(env, obs, 1, 0.01, float(env._obj_to_target_init))
    if abs(tcp_to_obj - 0.07) < _EDGE:
        return _reference(env, obs, action)
    if tcp_to_obj > 0.07:
        reward = 2 * hamacher_product((1 - o3) / 2.0, near)
    else:
        reward = 2
        reward += 2 * (1 + o3)
        reward += 4 * pressed**2
    return reward, 1.0 if obj_to_target <= 0.03 else 0.0


def button_press_topdown(env, obs, action) -> tuple[float, float]:
    """5 * hamacher(1 - obs[3], near button) + 5 * button pressed (z) once within 3 cm."""
    o3, tcp_to_obj, near, obj_to_target, pressed = _button_terms(env, obs, 2, 0.01, float(env._obj_to_target_init))
    if abs(tcp_to_obj - 0.03) < _EDGE:
        return _reference(env, obs, action)
    reward = 5 * hamacher_product(1 - o3, near)
    if tcp_to_obj <= 0.03:
        reward += 5 * pressed
    return reward, 1.0 if obj_to_target <= 0.024 else 0.0


def button_press_topdown_wall(env, obs, action) -> tuple[float, float]:
    """5 * hamacher(gripper closed, near button) + 5 * button pressed (z) once within 3 cm."""
    o3, tcp_to_obj, near, obj_to_target, pressed = _button_terms(env, obs, 2, 0.01, float(env._obj_to_target_init))
    if abs(tcp_to_obj - 0.03) < _EDGE:
        return _reference(env, obs, action)
    reward = 5 * hamacher_product(max(o3, 0.0), near)
    if tcp_to_obj <= 0.03:
        reward += 5 * pressed
    return reward, 1.0 if obj_to_target <= 0.024 else 0.0


def coffee_button(env, obs, action) -> tuple[float, float]:
    """button_press's reward with the press margin ``max_dist``."""
    return _press(env, obs, action, float(env.max_dist))


def _mug_caging(env, action, obj, tcp):
    """``_gripper_caging_reward`` with the coffee mug's arguments (obj_radius 0.02, pad 0.05,
    reach radius 0.04, xz 0.05, effort 0.7, medium density), or None where the 0.97 caging
    threshold is too close to call. ``gripping`` stays the action's float32 when it is one, as in
    Meta-World (primitives.gripper_caging_reward casts it to a Python float)."""
    ox, oy, oz = obj
    tx, ty, tz = tcp
    xpos = env.data.xpos
    left_y = float(xpos[env._fast_body_id("leftpad")][1])
    right_y = float(xpos[env._fast_body_id("rightpad")][1])
    jx, jy, jz = env.obj_init_pos.tolist()
    ix, iy, iz = env.init_tcp.tolist()
    caging_left = tolerance(abs(left_y - oy), 0.02, 0.05, abs(abs(left_y - jy) - 0.05), "long_tail")
    caging_right = tolerance(abs(right_y - oy), 0.02, 0.05, abs(abs(right_y - jy) - 0.05), "long_tail")
    caging_y = hamacher_product(caging_left, caging_right)
    dx, dz = jx - ix, jz - iz
    xz_margin = math.sqrt(dx * dx + dz * dz) - 0.05
    dx, dz = tx - ox, tz - oz
    caging_xz = tolerance(math.sqrt(dx * dx + dz * dz), 0, 0.05, xz_margin, "long_tail")
    caging = hamacher_product(caging_y, caging_xz)
    if abs(caging - 0.97) < _EDGE:
        return None
    if caging > 0.97:
        gripping = min(max(0, action[-1]), 0.7) / 0.7
        caging_and_gripping = hamacher_product(caging, gripping)
    else:
        caging_and_gripping = hamacher_product(caging, 0.0)
    dx, dy, dz = ox - tx, oy - ty, oz - tz
    tcp_to_obj = math.sqrt(dx * dx + dy * dy + dz * dz)
    dx, dy, dz = jx - ix, jy - iy, jz - iz
    reach_margin = abs(math.sqrt(dx * dx + dy * dy + dz * dz) - 0.04)
    reach = tolerance(tcp_to_obj, 0, 0.04, reach_margin, "long_tail")
    return (caging_and_gripping + reach) / 2, tcp_to_obj


def _coffee_mug(env, obs, action) -> tuple[float, float]:
    """hamacher(mug caged, mug in place) + (1 + 5 in place) while touching with the gripper
    open, 10 within 5 cm (x, y weighted twice) of the goal; shared by coffee-pull and -push."""
    o3, ox, oy, oz = obs[3:7].tolist()
    gx, gy, gz = env._target_pos.tolist()
    jx, jy, jz = env.obj_init_pos.tolist()
    dx, dy, dz = (ox - gx) * 2.0, (oy - gy) * 2.0, (oz - gz) * 1.0
    target_to_obj = math.sqrt(dx * dx + dy * dy + dz * dz)
    dx, dy, dz = (jx - gx) * 2.0, (jy - gy) * 2.0, (jz - gz) * 1.0
    target_to_obj_init = math.sqrt(dx * dx + dy * dy + dz * dz)
    dx, dy, dz = ox - gx, oy - gy, oz - gz
    obj_to_target = math.sqrt(dx * dx + dy * dy + dz * dz)
    caged = _mug_caging(env, action, (ox, oy, oz), tcp_xyz(env))
    if (
        caged is None
        or abs(target_to_obj - 0.05) < _EDGE
        or abs(obj_to_target - 0.07) < _EDGE
        or abs(caged[1] - 0.04) < _EDGE
    ):
        return _reference(env, obs, action)
    object_grasped, tcp_to_obj = caged
    in_place = tolerance(target_to_obj, 0, 0.05, target_to_obj_init, "long_tail")
    reward = hamacher_product(object_grasped, in_place)
    if tcp_to_obj < 0.04 and o3 > 0:
        reward += 1.0 + 5.0 * in_place
    if target_to_obj < 0.05:
        reward = 10.0
    return float(reward), 1.0 if obj_to_target <= 0.07 else 0.0


def coffee_pull(env, obs, action) -> tuple[float, float]:
    """Mug caging and in-place terms (see ``_coffee_mug``)."""
    return _coffee_mug(env, obs, action)


def coffee_push(env, obs, action) -> tuple[float, float]:
    """Mug caging and in-place terms (see ``_coffee_mug``)."""
    return _coffee_mug(env, obs, action)


def dial_turn(env, obs, action) -> tuple[float, float]:
    """10 * hamacher(hamacher(reach push point, gripper closed), dial point in place)."""
    ids = env._fast_ids
    key = ("qposadr", "knob_Joint_1")
    adr = ids.get(key)
    if adr is None:
        adr = ids[key] = int(env.model.jnt_qposadr[env.model.joint("knob_Joint_1").id])
    angle = float(env.data.qpos[adr])
    cx, cy, cz = env.data.xpos[env._fast_body_id("dial")].tolist()
    ox, oy, oz = cx + math.sin(angle) * 0.05, cy + (-math.cos(angle)) * 0.05, cz + 0.0
    px, py, pz = ox + 0.05, oy + 0.02, oz + 0.09
    gx, gy, gz = env._target_pos.tolist()
    qx, qy, qz = env.dial_push_position.tolist()
    tx, ty, tz = tcp_xyz(env)
    ix, iy, iz = env.init_tcp.tolist()
    dx, dy, dz = ox - gx, oy - gy, oz - gz
    target_to_obj = math.sqrt(dx * dx + dy * dy + dz * dz)
    if abs(target_to_obj - 0.07) < _EDGE:
        return _reference(env, obs, action)
    dx, dy, dz = qx - gx, qy - gy, qz - gz
    target_to_obj_init = math.sqrt(dx * dx + dy * dy + dz * dz)
    in_place = tolerance(target_to_obj, 0, 0.07, abs(target_to_obj_init - 0.07), "long_tail")
    dx, dy, dz = px - tx, py - ty, pz - tz
    tcp_to_obj = math.sqrt(dx * dx + dy * dy + dz * dz)
    dx, dy, dz = qx - ix, qy - iy, qz - iz
    tcp_to_obj_init = math.sqrt(dx * dx + dy * dy + dz * dz)
    reach = tolerance(tcp_to_obj, 0, 0.005, abs(tcp_to_obj_init - 0.005), "gaussian")
    # float32 (the action's) from here on where the gripper term is a fraction, as in Meta-World
    reach = hamacher_product(reach, min(max(0, action[-1]), 1))
    reward = 10 * hamacher_product(reach, in_place)
    return float(reward), 1.0 if target_to_obj <= 0.07 else 0.0


REWARDS = {
    SawyerButtonPressEnvV3: button_press,
    SawyerButtonPressWallEnvV3: button_press_wall,
    SawyerButtonPressTopdownEnvV3: button_press_topdown,
    SawyerButtonPressTopdownWallEnvV3: button_press_topdown_wall,
    SawyerCoffeeButtonEnvV3: coffee_button,
    SawyerCoffeePullEnvV3: coffee_pull,
    SawyerCoffeePushEnvV3: coffee_push,
    SawyerDialTurnEnvV3: dial_turn,
}
