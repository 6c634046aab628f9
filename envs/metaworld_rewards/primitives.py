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


def norm(v) -> float:
    return math.sqrt(sum(float(x) * float(x) for x in v))


def tolerance(
    x: float,
    lower: float,
    upper: float,
    margin: float,
    sigmoid: str = "gaussian",
    value_at_margin: float = _VALUE_AT_MARGIN,
) -> float:
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


def gripper_caging(
    env,
    action,
    obj,
    tcp,
    obj_radius: float,
    pad_thresh: float,
    xz_thresh: float,
    *,
    init=None,
    reach_radius: float = 0.0,
    effort: float = 1.0,
    high_density: bool = False,
    medium_density: bool = False,
):
    """``SawyerXYZEnv._gripper_caging_reward`` on floats: ``obj`` and ``tcp`` are 3 floats, ``init``
    the object's initial position (default ``env.obj_init_pos``; stick-push's override uses its
    stick's). Caging on y by the pads, on x-z by the tcp, gripping once caged (> 0.97).

    The gripping term keeps the action's dtype: with a float32 action and 0 < action[-1] <=
    effort, Meta-World's products from there on are float32 arithmetic (NEP 50), and so is the
    value returned here (a float64 version is up to ~1e-7 off)."""
    if high_density and medium_density:
        raise ValueError("Can only be either high_density or medium_density")
    xpos = env.data.xpos
    left_y = float(xpos[env._fast_body_id("leftpad"), 1])
    right_y = float(xpos[env._fast_body_id("rightpad"), 1])
    ox, oy, oz = obj
    tx, ty, tz = tcp
    ix, iy, iz = env.obj_init_pos.tolist() if init is None else init
    jx, jy, jz = env.init_tcp.tolist()
    cage_l = tolerance(abs(left_y - oy), obj_radius, pad_thresh, abs(abs(left_y - iy) - pad_thresh), "long_tail")
    cage_r = tolerance(abs(right_y - oy), obj_radius, pad_thresh, abs(abs(right_y - iy) - pad_thresh), "long_tail")
    caging_y = hamacher_product(cage_l, cage_r)
    dx, dz = ix - jx, iz - jz
    xz_margin = math.sqrt(dx * dx + dz * dz) - xz_thresh
    dx, dz = tx - ox, tz - oz
    caging_xz = tolerance(math.sqrt(dx * dx + dz * dz), 0, xz_thresh, xz_margin, "long_tail")
    caging = hamacher_product(caging_y, caging_xz)
    gripping = min(max(0, action[-1]), effort) / effort if caging > 0.97 else 0.0
    caging_and_gripping = hamacher_product(caging, gripping)
    if high_density:
        caging_and_gripping = (caging_and_gripping + caging) / 2
    if medium_density:
        reach_margin = abs(dist(ix, iy, iz, jx, jy, jz) - reach_radius)
        reach = tolerance(dist(ox, oy, oz, tx, ty, tz), 0, reach_radius, reach_margin, "long_tail")
        caging_and_gripping = (caging_and_gripping + reach) / 2
    return caging_and_gripping
