"""Float rewards (v2) for door-open, door-close, door-lock, door-unlock, drawer-open,
drawer-close, window-open and window-close (Meta-World v3)."""

from __future__ import annotations

import math
import struct

import numpy as np
from metaworld.envs.sawyer_door_close_v3 import SawyerDoorCloseEnvV3
from metaworld.envs.sawyer_door_lock_v3 import SawyerDoorLockEnvV3
from metaworld.envs.sawyer_door_unlock_v3 import SawyerDoorUnlockEnvV3
from metaworld.envs.sawyer_door_v3 import SawyerDoorEnvV3
from metaworld.envs.sawyer_drawer_close_v3 import SawyerDrawerCloseEnvV3
from metaworld.envs.sawyer_drawer_open_v3 import SawyerDrawerOpenEnvV3
from metaworld.envs.sawyer_window_close_v3 import SawyerWindowCloseEnvV3
from metaworld.envs.sawyer_window_open_v3 import SawyerWindowOpenEnvV3

from envs.metaworld_rewards.primitives import hamacher_product, tcp_xyz, tolerance

_PI = math.pi
_DOOR_TRIED = -_PI / 90.0
_DOOR_OPEN_AT = _PI / 2.0 + _PI / 6
_DOOR_OPEN_MARGIN = _PI / 3.0
_FLOAT32 = np.dtype(np.float32)
_F32 = struct.Struct("f")


def _f32(x: float) -> float:
    """x rounded to float32. One +, -, *, / of float32 values done in float64 and rounded so is
    the float32 result (53 >= 2 * 24 + 2 bits), which is what numpy computes on float32 scalars."""
    return _F32.unpack(_F32.pack(x))[0]


def _hamacher_f32(a: float, b: float) -> float:
    """``hamacher_product`` in float32 arithmetic on float32-valued floats, as numpy does it when
    one operand is a float32 scalar and the other a Python float (NEP 50)."""
    if not ((0.0 <= a <= 1.0) and (0.0 <= b <= 1.0)):
        raise ValueError(f"a ({a}) and b ({b}) must range between 0 and 1")
    ab = _f32(a * b)
    denominator = _f32(_f32(a + b) - ab)
    return _f32(ab / denominator) if denominator > 0 else 0.0


def door_open(env, obs, action) -> tuple[float, float]:
    """2 hamacher(ready_to_open, grab effort) + 8 opened; 10 once the handle is within 0.08 in x."""
    hx, hy, hz, _, ox, oy, oz = obs[:7].tolist()
    theta = float(env.data.qpos[env.door_qpos_adr])
    a = action[3]
    if action.dtype is _FLOAT32:  # Meta-World's clip(a) + 1.0 is float32 arithmetic
        grab = _f32(min(max(float(a), -1.0), 1.0) + 1.0) / 2.0
    else:
        grab = float((min(max(a, -1), 1) + 1.0) / 2.0)

    dx, dy, dz = ox + -0.05, oy + 0, oz + 0
    threshold = 0.12
    rx, ry = hx - dx, hy - dy
    radius = math.sqrt(rx * rx + ry * ry)
    floor = 0.0 if radius <= threshold else 0.04 * math.log(radius - threshold) + 0.4
    if hz >= floor:
        above_floor = 1.0
    else:
        above_floor = tolerance(floor - hz, 0.0, 0.01, floor / 2.0, "long_tail")
    ix, iy, iz = hx - dx - 0.05, hy - dy - 0.03, hz - dz - -0.01
    in_place = tolerance(math.sqrt(ix * ix + iy * iy + iz * iz), 0, threshold / 2.0, 0.5, "long_tail")
    ready_to_open = hamacher_product(above_floor, in_place)

    door_angle = -theta
    opened = 0.2 * float(theta < _DOOR_TRIED) + 0.8 * tolerance(
        _DOOR_OPEN_AT - door_angle, 0, 0.5, _DOOR_OPEN_MARGIN, "long_tail"
    )
    reward = 2.0 * hamacher_product(ready_to_open, grab) + 8.0 * opened
    success = abs(ox - env._target_pos[0]) <= 0.08
    if success:
        reward = 10.0
    return float(reward), float(success)


def door_close(env, obs, action) -> tuple[float, float]:
    """3 hand_in_place (tcp to target) + 6 in_place (handle to target), gaussian; 10 within 0.05."""
    ox, oy, oz = obs[4:7].tolist()
    cx, cy, cz = tcp_xyz(env)
    tx, ty, tz = env._target_pos.tolist()
    ix, iy, iz = env.obj_init_pos.tolist()
    px, py, pz = env.hand_init_pos.tolist()
    radius = 0.05

    x, y, z = cx - tx, cy - ty, cz - tz
    tcp_to_target = math.sqrt(x * x + y * y + z * z)
    x, y, z = ox - tx, oy - ty, oz - tz
    obj_to_target = math.sqrt(x * x + y * y + z * z)
    x, y, z = ix - tx, iy - ty, iz - tz
    in_place = tolerance(obj_to_target, 0, radius, math.sqrt(x * x + y * y + z * z), "gaussian")
    x, y, z = px - ox, py - oy, pz - oz
    hand_margin = math.sqrt(x * x + y * y + z * z) + 0.1
    hand_in_place = tolerance(tcp_to_target, 0, 0.25 * radius, hand_margin, "gaussian")

    reward = 3 * hand_in_place + 6 * in_place
    if obj_to_target < radius:
        reward = 10.0
    return float(reward), float(obj_to_target <= 0.08)


def door_lock(env, obs, action) -> tuple[float, float]:
    """2 hamacher(gripper opened, near_lock) + 8 lock_pressed (z to target), long tails."""
    opened, ox, oy, oz = obs[3:7].tolist()
    lx, ly, lz = env.data.xpos[env._fast_body_id("leftpad")].tolist()
    # init_left_pad is Meta-World's live view of the left pad's xpos, so it is read every step
    jx, jy, jz = env.init_left_pad.tolist()
    x, y, z = (ox - lx) * 0.25, (oy - ly) * 1.0, (oz - lz) * 0.5
    tcp_to_obj = math.sqrt(x * x + y * y + z * z)
    x, y, z = (ox - jx) * 0.25, (oy - jy) * 1.0, (oz - jz) * 0.5
    tcp_to_obj_init = math.sqrt(x * x + y * y + z * z)
    obj_to_target = abs(float(env._target_pos[2]) - oz)

    tcp_opened = max(opened, 0.0)
    near_lock = tolerance(tcp_to_obj, 0, 0.01, tcp_to_obj_init, "long_tail")
    lock_pressed = tolerance(obj_to_target, 0, 0.005, env._lock_length, "long_tail")
    reward = 2 * hamacher_product(tcp_opened, near_lock) + 8 * lock_pressed
    return float(reward), float(obj_to_target <= 0.02)


def door_unlock(env, obs, action) -> tuple[float, float]:
    """2 ready_to_push (shoulder to lock, scaled) + 8 pushed (x to target), long tails."""
    gx, gy, gz, _, ox, oy, oz = obs[:7].tolist()
    tx, ty, tz = env.init_tcp.tolist()
    # obj_init_pos is Meta-World's live view of lock_link's xpos, so it is read every step
    ix, iy, iz = env.obj_init_pos.tolist()
    x, y, z = (gx + 0.0 - ox) * 0.25, (gy + 0.055 - oy) * 1.0, (gz + 0.07 - oz) * 0.5
    shoulder_to_lock = math.sqrt(x * x + y * y + z * z)
    x, y, z = (tx + 0.0 - ix) * 0.25, (ty + 0.055 - iy) * 1.0, (tz + 0.07 - iz) * 0.5
    ready_to_push = tolerance(shoulder_to_lock, 0, 0.02, math.sqrt(x * x + y * y + z * z), "long_tail")

    obj_to_target = abs(float(env._target_pos[0]) - ox)
    pushed = tolerance(obj_to_target, 0, 0.005, env._lock_length, "long_tail")
    reward = 2 * ready_to_push + 8 * pushed
    return float(reward), float(obj_to_target <= 0.02)


def drawer_open(env, obs, action) -> tuple[float, float]:
    """5 (caging (xy-weighted gripper to handle) + opening (handle to target)), long tails."""
    gx, gy, gz, _, hx, hy, hz = obs[:7].tolist()
    tx, ty, tz = env._target_pos.tolist()
    cx, cy, cz = env.init_tcp.tolist()
    max_dist = env.maxDist

    x, y, z = hx - tx, hy - ty, hz - tz
    handle_error = math.sqrt(x * x + y * y + z * z)
    opening = tolerance(handle_error, 0, 0.02, max_dist, "long_tail")
    x, y, z = (hx - gx) * 3.0, (hy - gy) * 3.0, (hz - gz) * 1.0
    gripper_error = math.sqrt(x * x + y * y + z * z)
    x, y, z = ((tx + 0.0) - cx) * 3.0, ((ty + max_dist) - cy) * 3.0, ((tz + 0.0) - cz) * 1.0
    caging = tolerance(gripper_error, 0, 0.01, math.sqrt(x * x + y * y + z * z), "long_tail")
    reward = (caging + opening) * 5.0
    return float(reward), float(handle_error <= 0.03)


def drawer_close(env, obs, action) -> tuple[float, float]:
    """10 hamacher(hamacher(reach, gripper closed), in_place); 10 within TARGET_RADIUS + 0.015."""
    ox, oy, oz = obs[4:7].tolist()
    cx, cy, cz = tcp_xyz(env)
    tx, ty, tz = env._target_pos.tolist()
    ix, iy, iz = env.obj_init_pos.tolist()
    jx, jy, jz = env.init_tcp.tolist()
    target_radius = env.TARGET_RADIUS

    x, y, z = ox - tx, oy - ty, oz - tz
    target_to_obj = math.sqrt(x * x + y * y + z * z)
    x, y, z = ix - tx, iy - ty, iz - tz
    margin = abs(math.sqrt(x * x + y * y + z * z) - target_radius)
    in_place = tolerance(target_to_obj, 0, target_radius, margin, "long_tail")

    reach_radius = 0.005
    x, y, z = ox - cx, oy - cy, oz - cz
    tcp_to_obj = math.sqrt(x * x + y * y + z * z)
    x, y, z = ix - jx, iy - jy, iz - jz
    margin = abs(math.sqrt(x * x + y * y + z * z) - reach_radius)
    reach = tolerance(tcp_to_obj, 0, reach_radius, margin, "gaussian")
    success = target_to_obj <= target_radius + 0.015
    g = action[-1]
    gf = float(g)
    if action.dtype is _FLOAT32 and 0 < gf <= 1:
        # Meta-World's gripper_closed is then the float32 scalar, which makes both products and
        # the final *10 float32 arithmetic (the Python floats cast to float32 first)
        reach = _hamacher_f32(_f32(reach), gf)
        reward = _hamacher_f32(reach, _f32(in_place))
        return (10.0 if success else _f32(reward * 10)), float(success)
    # otherwise Meta-World's own expression, numpy scalar and all
    reach = hamacher_product(reach, min(max(0, g), 1))
    reward = hamacher_product(reach, in_place)
    if success:
        reward = 1.0
    reward *= 10
    return float(reward), float(success)


def _window(env, handle_site: str, handle_init_x: float, reach_sigmoid: str) -> tuple[float, float]:
    """10 hamacher(reach (tcp to handle site), in_place (handle x to target x))."""
    ox, oy, oz = env.data.site_xpos[env._fast_site_id(handle_site)].tolist()
    cx, cy, cz = tcp_xyz(env)
    target_x = float(env._target_pos[0])
    target_radius = env.TARGET_RADIUS

    d = ox - target_x
    target_to_obj = math.sqrt(d * d)  # np.linalg.norm of a scalar
    d = handle_init_x - target_x
    margin = abs(math.sqrt(d * d) - target_radius)
    in_place = tolerance(target_to_obj, 0, target_radius, margin, "long_tail")

    handle_radius = 0.02
    x, y, z = ox - cx, oy - cy, oz - cz
    tcp_to_obj = math.sqrt(x * x + y * y + z * z)
    hx, hy, hz = env.window_handle_pos_init.tolist()
    jx, jy, jz = env.init_tcp.tolist()
    x, y, z = hx - jx, hy - jy, hz - jz
    margin = abs(math.sqrt(x * x + y * y + z * z) - handle_radius)
    reach = tolerance(tcp_to_obj, 0, handle_radius, margin, reach_sigmoid)
    reward = 10 * hamacher_product(reach, in_place)
    return float(reward), float(target_to_obj <= target_radius)


def window_open(env, obs, action) -> tuple[float, float]:
    """10 hamacher(reach long tail, in_place); the open-start handle site, init x from obj_init_pos."""
    return _window(env, "handleOpenStart", float(env.obj_init_pos[0]), "long_tail")


def window_close(env, obs, action) -> tuple[float, float]:
    """10 hamacher(reach gaussian, in_place); the close-start handle site, init x from the handle."""
    return _window(env, "handleCloseStart", float(env.window_handle_pos_init[0]), "gaussian")


REWARDS = {
    SawyerDoorEnvV3: door_open,
    SawyerDoorCloseEnvV3: door_close,
    SawyerDoorLockEnvV3: door_lock,
    SawyerDoorUnlockEnvV3: door_unlock,
    SawyerDrawerOpenEnvV3: drawer_open,
    SawyerDrawerCloseEnvV3: drawer_close,
    SawyerWindowOpenEnvV3: window_open,
    SawyerWindowCloseEnvV3: window_close,
}
