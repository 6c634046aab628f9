"""The float versions of ``metaworld.utils.reward_utils`` and ``SawyerXYZEnv``'s shared reward
pieces. Same formulas, the same operation order where it matters for the last bits.

Points are 3-tuples or 3-element numpy arrays indexed element-wise. What is returned is a
Python float, except where Meta-World's own arithmetic is float32 (the grip term of the caging
reward with a float32 action): there the same numpy float32 scalar comes back.
"""

from __future__ import annotations

import math

_VALUE_AT_MARGIN = 0.1
_LONG_TAIL_SCALE = math.sqrt(1 / _VALUE_AT_MARGIN - 1)
_GAUSSIAN_SCALE = math.sqrt(-2 * math.log(_VALUE_AT_MARGIN))


def tcp_xyz(env) -> tuple[float, float, float]:
    """``env.tcp_center`` as floats: the midpoint of the finger sites, (right + left) / 2.0 per
    axis as numpy rounds it."""
    right, left = env._fast_finger_sites
    site_xpos = env.data.site_xpos
    r0, r1, r2 = site_xpos[right].tolist()
    l0, l1, l2 = site_xpos[left].tolist()
    return (r0 + l0) / 2.0, (r1 + l1) / 2.0, (r2 + l2) / 2.0


def dist(ax: float, ay: float, az: float, bx: float, by: float, bz: float) -> float:
    """|a - b| for two points given as coordinates."""
    x, y, z = ax - bx, ay - by, az - bz
    return math.sqrt(x * x + y * y + z * z)


def norm3(a, b) -> float:
    """|a - b| for 3-vectors."""
    x, y, z = a[0] - b[0], a[1] - b[1], a[2] - b[2]
    return math.sqrt(x * x + y * y + z * z)


def norm(v) -> float:
    return math.sqrt(sum(float(x) * float(x) for x in v))


def tolerance(x: float, lower: float, upper: float, margin: float, sigmoid: str = "gaussian",
              value_at_margin: float = _VALUE_AT_MARGIN) -> float:  # fmt: skip
    """``reward_utils.tolerance`` for one float: 1 inside [lower, upper], else the sigmoid of the
    distance to the nearest bound over ``margin`` (0 outside when margin is 0)."""
    if lower > upper:
        raise ValueError("Lower bound must be <= upper bound.")
    if margin < 0:
        raise ValueError(f"`margin` must be non-negative. Current value: {margin}")
    if lower <= x <= upper:
        return 1.0
    if margin == 0:
        return 0.0
    d = (lower - x if x < lower else x - upper) / margin
    if sigmoid == "long_tail":
        scale = _LONG_TAIL_SCALE if value_at_margin == _VALUE_AT_MARGIN else math.sqrt(1 / value_at_margin - 1)
        return 1 / ((d * scale) ** 2 + 1)
    if sigmoid == "gaussian":
        scale = _GAUSSIAN_SCALE if value_at_margin == _VALUE_AT_MARGIN else math.sqrt(-2 * math.log(value_at_margin))
        return math.exp(-0.5 * (d * scale) ** 2)
    raise ValueError(f"sigmoid {sigmoid!r} has no float version; Meta-World v3's rewards use long_tail and gaussian")


def hamacher_product(a: float, b: float) -> float:
    """(a b) / (a + b - a b), 0 where the denominator is 0; a and b in [0, 1]."""
    if not ((0.0 <= a <= 1.0) and (0.0 <= b <= 1.0)):
        raise ValueError(f"a ({a}) and b ({b}) must range between 0 and 1")
    denominator = a + b - (a * b)
    return ((a * b) / denominator) if denominator > 0 else 0.0


def rect_prism_tolerance(curr, zero, one) -> float:
    """``reward_utils.rect_prism_tolerance``: the product of the per-axis scales inside the
    prism spanned by ``zero`` and ``one``, 1 outside."""

    def in_range(a, b, c):
        return b <= a <= c if c >= b else c <= a <= b

    if in_range(curr[0], zero[0], one[0]) and in_range(curr[1], zero[1], one[1]) and in_range(curr[2], zero[2], one[2]):
        return (
            ((curr[0] - zero[0]) / (one[0] - zero[0]))
            * ((curr[1] - zero[1]) / (one[1] - zero[1]))
            * ((curr[2] - zero[2]) / (one[2] - zero[2]))
        )
    return 1.0


def gripper_caging_reward(env, action, obj_pos, obj_radius: float, pad_success_thresh: float, object_reach_radius: float,
                          xz_thresh: float, desired_gripper_effort: float = 1.0, high_density: bool = False,
                          medium_density: bool = False) -> float:  # fmt: skip
    """``SawyerXYZEnv._gripper_caging_reward`` on floats (see its docstring for the terms)."""
    if high_density and medium_density:
        raise ValueError("Can only be either high_density or medium_density")
    xpos = env.data.xpos
    left_pad = xpos[env._fast_body_id("leftpad")]
    right_pad = xpos[env._fast_body_id("rightpad")]
    obj_init = env.obj_init_pos
    caging_lr = []
    for pad_y in (float(left_pad[1]), float(right_pad[1])):
        pad_to_obj = abs(pad_y - obj_pos[1])
        margin = abs(abs(pad_y - obj_init[1]) - pad_success_thresh)
        caging_lr.append(tolerance(pad_to_obj, obj_radius, pad_success_thresh, margin, "long_tail"))
    caging_y = hamacher_product(caging_lr[0], caging_lr[1])

    tcp = env.tcp_center
    init_tcp = env.init_tcp
    dx, dz = obj_init[0] - init_tcp[0], obj_init[2] - init_tcp[2]
    caging_xz_margin = math.sqrt(dx * dx + dz * dz) - xz_thresh
    dx, dz = tcp[0] - obj_pos[0], tcp[2] - obj_pos[2]
    caging_xz = tolerance(math.sqrt(dx * dx + dz * dz), 0, xz_thresh, caging_xz_margin, "long_tail")

    # gripper_closed keeps the action's dtype: with a float32 action Meta-World's products from
    # here on are float32 arithmetic (NEP 50), and so are these
    gripper_closed = min(max(0, action[-1]), desired_gripper_effort) / desired_gripper_effort
    caging = hamacher_product(caging_y, float(caging_xz))
    gripping = gripper_closed if caging > 0.97 else 0.0
    caging_and_gripping = hamacher_product(caging, gripping)
    if high_density:
        caging_and_gripping = (caging_and_gripping + caging) / 2
    if medium_density:
        tcp_to_obj = norm3(obj_pos, tcp)
        tcp_to_obj_init = norm3(obj_init, init_tcp)
        reach_margin = abs(tcp_to_obj_init - object_reach_radius)
        reach = tolerance(tcp_to_obj, 0, object_reach_radius, reach_margin, "long_tail")
        caging_and_gripping = (caging_and_gripping + float(reach)) / 2
    return caging_and_gripping
