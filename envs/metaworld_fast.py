"""The fast path for Meta-World task sets: one vector env that steps Meta-World's own envs
without gymnasium's wrapper chain and vector env around every step.

What a Meta-World step costs (measured on a 2-core AMD EPYC, MT10, random actions): 0.5 ms
through ``gym.vector.SyncVectorEnv``, of which MuJoCo's own work (``mj_step`` x frame_skip,
``mj_rnePostConstraint``, ``mj_forward``) is about 0.13 ms. The rest is Python: five wrappers
and the vector env per step, bodies and sites looked up by name, contacts scanned as Python
lists, and Meta-World's observation and reward code.

What this module keeps and what it replaces:

- **Kept, as Meta-World ships it**: the envs themselves (built by ``envs.vector`` exactly as the
  sync path builds them, so models, goal sets, seeding and resets are the same objects), every
  reset (through the gymnasium vector env that built them, wrappers included), the RNG
  checkpoints, and each task's own ``_get_pos_objects``.
- **Replaced**: the per-step path. The actions of all sub-envs are clipped, scaled and added to
  the mocap bodies in one batched numpy operation, the physics is called directly, and what
  the wrappers do per step (time limit, terminate-on-success, one-hot id) is done on arrays for
  all sub-envs at once. The observation is assembled from lists (object orientations from the
  table ``_QUATS`` and ``mat_to_quat``, scipy's formula); each task's reward is its float
  version in ``envs.metaworld_rewards`` (Meta-World's own ``evaluate_state`` for a task without
  one). The helpers that Meta-World's code calls by name (``tcp_center``, ``get_body_com``,
  ``_get_site_pos``, ``touching_object``) are replaced by index-based ones with the same
  arithmetic, through a subclass of each env's own class (``fast_env_class``), so resets use
  them too.

Transition-exact: for the same seed and actions, qpos, qvel and mocap state are bit-identical
to the sync path, observations and rewards agree to 1e-9 and the success, termination and
truncation flags are identical (``tests/test_metaworld_fast.py`` checks every MT50 task).

Not reproduced: gymnasium's ``RecordEpisodeStatistics`` ``info["episode"]`` entry and
Meta-World's other info keys (``grasp_reward``, ...); ``info`` holds ``success`` only, which is
all mtrl reads.
"""

from __future__ import annotations

import collections
import copy
import math
from typing import TYPE_CHECKING, Any, cast

import gymnasium as gym
import mujoco
import numpy as np
from metaworld.env_dict import ALL_V3_ENVIRONMENTS
from metaworld.sawyer_xyz_env import SawyerXYZEnv

from envs.forked_workers import ForkedWorkers, shared_array
from envs.metaworld_rewards import REWARDS

if TYPE_CHECKING:

    class FastSawyerXYZEnv(SawyerXYZEnv):
        """What a Meta-World env is once ``fast_env_class`` has swapped its class and ``_init_fast``
        has run: the ids the helpers below index by. For the type checker only: at run time the
        attributes are set on the env and the helpers are put into its class by ``type()``."""

        _fast_ids: dict[object, Any]  # the rewards' own ids, by their key (envs.metaworld_rewards)
        _fast_site_ids: dict[str, int]
        _fast_body_ids: dict[str, int]
        _fast_pad_ids: tuple[int, int]
        _fast_finger_sites: tuple[int, int]
        _fast_hand_id: int
        _fast_claw_ids: tuple[int, int]
        _fast_quat_parts: tuple[tuple[str, int | None], ...] | None
        _prev_obs: np.ndarray  # set by reset, before any step reads it
        _target_pos: np.ndarray  # the goal: set by reset

        def _fast_body_id(self, name: str) -> int: ...
        def _fast_site_id(self, name: str) -> int: ...


def _touching_object(self: FastSawyerXYZEnv, object_geom_id: int) -> bool:
    """``SawyerXYZEnv.touching_object`` on the contact arrays: the same contacts, summed in
    the same order, so the same float sums and the same answer."""
    ncon = self.data.ncon
    if ncon == 0:
        return False
    geoms = self.data.contact.geom[:ncon].tolist()
    efc = self.data.contact.efc_address[:ncon].tolist()
    force = self.data.efc_force
    left_id, right_id = self._fast_pad_ids
    left = right = 0
    for (g1, g2), address in zip(geoms, efc, strict=True):
        if object_geom_id == g1 or object_geom_id == g2:
            if left_id == g1 or left_id == g2:
                left = left + force[address]
            if right_id == g1 or right_id == g2:
                right = right + force[address]
    return 0 < left and 0 < right


def _tcp_center(self: FastSawyerXYZEnv) -> np.ndarray:
    right, left = self._fast_finger_sites
    xpos = self.data.site_xpos
    return (xpos[right] + xpos[left]) / 2.0


def _get_body_com(self: FastSawyerXYZEnv, body_name: str) -> np.ndarray:
    return self.data.xpos[self._fast_body_id(body_name)]


def _get_site_pos(self: FastSawyerXYZEnv, site_name: str) -> np.ndarray:
    return self.data.site_xpos[self._fast_site_id(site_name)].copy()


def _get_endeff_pos(self: FastSawyerXYZEnv) -> np.ndarray:
    return self.data.xpos[self._fast_hand_id]


def mat_to_quat(m) -> list[float]:
    """(x, y, z, w) of the rotation matrix ``m`` (9 floats, row-major), as scipy's
    ``Rotation.from_matrix(m).as_quat()`` computes it (Markley 2008: the largest of the trace
    and the diagonal picks the formula, first one on ties; scipy's sign). MuJoCo's matrices
    are orthogonal to 1e-15, so scipy's orthogonalisation step does not apply."""
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    trace = m00 + m11 + m22
    choice, best = 0, m00
    if m11 > best:
        choice, best = 1, m11
    if m22 > best:
        choice, best = 2, m22
    if trace > best:
        choice = 3
    if choice == 0:
        q = [1 - trace + 2 * m00, m10 + m01, m20 + m02, m21 - m12]
    elif choice == 1:
        q = [m10 + m01, 1 - trace + 2 * m11, m21 + m12, m02 - m20]
    elif choice == 2:
        q = [m20 + m02, m21 + m12, 1 - trace + 2 * m22, m10 - m01]
    else:
        q = [m21 - m12, m02 - m20, m10 - m01, 1 + trace]
    n = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    return [q[0] / n, q[1] / n, q[2] / n, q[3] / n]


# Where each task's ``_get_quat_objects`` reads its object orientations: a quaternion of a body
# ("body_quat"), a rotation matrix of a geom, site or body through scipy ("geom_mat", ...), or
# zeros. Checked against Meta-World's own method by tests/test_metaworld_fast.py.
_QUATS: dict[str, tuple[tuple[str, str | None], ...]] = {
    **{
        t: (("body_quat", b),)
        for t, b in [
            ("assembly-v3", "RoundNut"),
            ("basketball-v3", "bsktball"),
            ("bin-picking-v3", "obj"),
            ("box-close-v3", "top_link"),
            ("button-press-topdown-v3", "button"),
            ("button-press-topdown-wall-v3", "button"),
            ("button-press-v3", "button"),
            ("button-press-wall-v3", "button"),
            ("dial-turn-v3", "dial"),
            ("disassemble-v3", "RoundNut"),
            ("door-lock-v3", "door_link"),
            ("door-unlock-v3", "door_link"),
            ("drawer-open-v3", "drawer_link"),
            ("faucet-close-v3", "faucetBase"),
            ("faucet-open-v3", "faucetBase"),
            ("hand-insert-v3", "obj"),
            ("peg-unplug-side-v3", "plug1"),
            ("pick-out-of-hole-v3", "obj"),
            ("sweep-v3", "obj"),
        ]
    },
    **{
        t: (("geom_mat", g),)
        for t, g in [
            ("coffee-pull-v3", "mug"),
            ("coffee-push-v3", "mug"),
            ("door-close-v3", "handle"),
            ("door-open-v3", "handle"),
            ("lever-pull-v3", "objGeom"),
            ("pick-place-v3", "objGeom"),
            ("pick-place-wall-v3", "objGeom"),
            ("plate-slide-back-side-v3", "puck"),
            ("plate-slide-back-v3", "puck"),
            ("plate-slide-side-v3", "puck"),
            ("plate-slide-v3", "puck"),
            ("push-back-v3", "objGeom"),
            ("push-v3", "objGeom"),
            ("push-wall-v3", "objGeom"),
            ("reach-v3", "objGeom"),
            ("reach-wall-v3", "objGeom"),
            ("shelf-place-v3", "objGeom"),
            ("sweep-into-v3", "objGeom"),
        ]
    },
    **{
        t: (("zeros", None),)
        for t in [
            "drawer-close-v3",
            "handle-press-side-v3",
            "handle-press-v3",
            "handle-pull-side-v3",
            "handle-pull-v3",
            "window-close-v3",
            "window-open-v3",
        ]
    },
    "coffee-button-v3": (("identity", None),),
    "hammer-v3": (("body_quat", "hammer"), ("body_quat", "nail_link")),
    "peg-insert-side-v3": (("site_mat", "pegGrasp"),),
    "soccer-v3": (("body_mat", "soccer_ball"),),
    "stick-pull-v3": (("body_mat", "stick"), ("zeros", None)),
    "stick-push-v3": (("body_mat", "stick"), ("zeros", None)),
}


_TASK_NAMES = {cls: name for name, cls in ALL_V3_ENVIRONMENTS.items()}


def _quat_objects(self: FastSawyerXYZEnv, parts: tuple[tuple[str, int | None], ...]) -> list[float]:
    data, out = self.data, []
    for kind, index in parts:
        if kind == "body_quat":
            out += data.xquat[index].tolist()
        elif kind == "geom_mat":
            out += mat_to_quat(data.geom_xmat[index].tolist())
        elif kind == "site_mat":
            out += mat_to_quat(data.site_xmat[index].tolist())
        elif kind == "body_mat":
            out += mat_to_quat(data.xmat[index].tolist())
        elif kind == "zeros":
            out += [0.0, 0.0, 0.0, 0.0]
        else:
            out += [1.0, 0.0, 0.0, 0.0]
    return out


def _curr_obs_no_goal(self: FastSawyerXYZEnv) -> list[float]:
    """``SawyerXYZEnv._get_curr_obs_combined_no_goal``: hand position, gripper opening, then
    (position, quaternion) per object, zero-padded to 18."""
    xpos = self.data.xpos
    r0, r1, r2 = xpos[self._fast_claw_ids[0]].tolist()
    l0, l1, l2 = xpos[self._fast_claw_ids[1]].tolist()
    dx, dy, dz = r0 - l0, r1 - l1, r2 - l2
    opening = min(max(math.sqrt(dx * dx + dy * dy + dz * dz) / 0.1, 0.0), 1.0)
    pos = np.asarray(self._get_pos_objects()).tolist()
    parts = self._fast_quat_parts
    quat = self._get_quat_objects() if parts is None else _quat_objects(self, parts)
    quat = np.asarray(quat).tolist() if isinstance(quat, np.ndarray) else quat
    out = xpos[self._fast_hand_id].tolist()
    out.append(opening)
    objects = min(len(pos) // 3, len(quat) // 4)
    for k in range(objects):
        out += pos[3 * k : 3 * k + 3]
        out += quat[4 * k : 4 * k + 4]
    out += [0.0] * (14 - 7 * objects)
    return out


def _get_obs(self: FastSawyerXYZEnv) -> np.ndarray:
    """``SawyerXYZEnv._get_obs``: current frame, previous frame, goal (zeros when partially observable)."""
    curr = _curr_obs_no_goal(self)
    goal = [0.0, 0.0, 0.0] if self._partially_observable else self._target_pos.tolist()  # = _get_pos_goal()
    obs = np.array(curr + self._prev_obs.tolist() + goal)
    self._prev_obs = obs[:18].copy()
    return obs


def _body_id(self: FastSawyerXYZEnv, name: str) -> int:
    ids = self._fast_body_ids
    if name not in ids:
        ids[name] = self.model.body(name).id
    return ids[name]


def _site_id(self: FastSawyerXYZEnv, name: str) -> int:
    ids = self._fast_site_ids
    if name not in ids:
        ids[name] = self.model.site(name).id
    return ids[name]


def _init_fast(self: FastSawyerXYZEnv, task_name: str | None) -> None:
    """The ids the helpers index by, looked up once (Meta-World looks them up by name every step)."""
    m = self.model
    self._fast_ids = {}
    self._fast_site_ids = {}
    self._fast_body_ids = {}
    self._fast_pad_ids = (m.geom("leftpad_geom").id, m.geom("rightpad_geom").id)
    self._fast_finger_sites = (m.site("rightEndEffector").id, m.site("leftEndEffector").id)
    self._fast_hand_id = m.body("hand").id
    self._fast_claw_ids = (m.body("rightclaw").id, m.body("leftclaw").id)
    by_kind = {"body_quat": m.body, "body_mat": m.body, "geom_mat": m.geom, "site_mat": m.site}
    parts = None if task_name is None else _QUATS.get(task_name)
    self._fast_quat_parts = (
        None
        if parts is None
        else tuple((kind, None if name is None else by_kind[kind](name).id) for kind, name in parts)
    )


_FAST_CLASSES: dict[type[SawyerXYZEnv], type[FastSawyerXYZEnv]] = {}  # one subclass per task class


def fast_env_class(cls: type[SawyerXYZEnv]) -> type[FastSawyerXYZEnv]:
    """``cls`` with the by-name helpers replaced by index-based ones. A subclass, so the task's
    own reward and object code (and ``set_task``'s ``isinstance`` check) run unchanged."""
    if cls not in _FAST_CLASSES:
        _FAST_CLASSES[cls] = _fast_subclass(cls)
    return _FAST_CLASSES[cls]


def _fast_subclass(cls: type[SawyerXYZEnv]) -> type[FastSawyerXYZEnv]:
    return type(
        f"Fast{cls.__name__}",
        (cls,),
        {
            "touching_object": _touching_object,
            "tcp_center": property(_tcp_center),
            "get_body_com": _get_body_com,
            "_get_site_pos": _get_site_pos,
            "get_endeff_pos": _get_endeff_pos,
            "_get_obs": _get_obs,
            "_fast_body_id": _body_id,
            "_fast_site_id": _site_id,
        },
    )


class MetaWorldVectorEnv(gym.vector.VectorEnv):
    """The sub-envs of ``references`` (sync vector envs of Meta-World envs built with auto-reset
    disabled, as ``envs.vector`` builds them), stepped on the fast path. Training uses one
    reference (sub-env t runs task t); evaluation may use several copies of the task set
    (sub-env ``c * K + t`` is copy c of task t), stepped together so that one batched policy
    call serves them all.

    ``reset`` and ``call`` (checkpoints, seeding) go through each sub-env's wrapper chain;
    ``step`` does what that chain and Meta-World's ``SawyerXYZEnv.step`` do, in one pass.

    ``workers`` > 1 spreads the sub-envs over that many processes in contiguous shares
    (``envs.forked_workers``; this process steps the first share). Every sub-env is stepped,
    reset and called only in the process that owns it, on the same objects, so any number of
    workers gives the same transitions; observations, rewards and flags meet in shared memory.
    """

    def __init__(
        self,
        references: list[gym.vector.SyncVectorEnv],
        max_episode_steps: int,
        terminate_on_success: bool,
        workers: int = 1,
    ):
        first = references[0]
        obs_space, action_space = first.single_observation_space, first.single_action_space
        assert isinstance(obs_space, gym.spaces.Box) and isinstance(action_space, gym.spaces.Box)  # Meta-World's
        self.references = references
        self.num_tasks = first.num_envs
        self.copies = len(references)
        self.num_envs = n = self.num_tasks * self.copies
        self.single_observation_space: gym.spaces.Box = obs_space
        self.single_action_space: gym.spaces.Box = action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.metadata = first.metadata
        self._wrapped = [env for reference in references for env in reference.envs]  # the wrapper chains
        # Meta-World's envs, fast ones once the loop below has swapped their class
        self.envs = cast("list[FastSawyerXYZEnv]", [env.unwrapped for env in self._wrapped])
        self._rewards = [REWARDS.get(type(env)) for env in self.envs]
        # tasks whose reward runs Meta-World's own numpy code (exact, slower): said once by the trainer
        self.uncovered = [
            env.task_name
            for env, fn in zip(self.envs[: self.num_tasks], self._rewards[: self.num_tasks], strict=True)
            if fn is None
        ]
        for env in self.envs:
            if env.model.nmocap != 1 or env.model.nu != 2:  # what the batched action step assumes
                raise RuntimeError(
                    f"{env.task_name}: {env.model.nmocap} mocap bodies and {env.model.nu} actuators, "
                    "the fast path expects Meta-World's Sawyer (1 and 2)"
                )
            if env._did_see_sim_exception:  # never set in Meta-World v3; the fast step has no such branch
                raise RuntimeError(
                    f"{env.task_name}: the simulation reported an exception before the fast path took over"
                )
            task_name = _TASK_NAMES.get(type(env))
            env.__class__ = fast_env_class(type(env))
            _init_fast(env, task_name)
        self._max_episode_steps = max_episode_steps
        self._terminate_on_success = terminate_on_success
        self._elapsed = np.zeros(n, dtype=np.int64)
        self._mocap_low = np.stack([e.mocap_low for e in self.envs])
        self._mocap_high = np.stack([e.mocap_high for e in self.envs])
        self._action_scale = np.array([e.action_scale for e in self.envs], dtype=np.float64)
        self._mocap_quat = np.array([1.0, 0.0, 1.0, 0.0])
        self._goal_queues: list[collections.deque | None] = [None] * n
        # sub-envs that ``step`` leaves as they are (reward 0, no flags): evaluation sets it for
        # the sub-envs whose episodes are all counted, so they cost nothing while others finish
        self.idle: np.ndarray | None = None

        workers = max(1, min(workers, n))

        def array(shape: tuple[int, ...], dtype) -> np.ndarray:
            return shared_array(shape, dtype) if workers > 1 else np.zeros(shape, dtype)

        obs_dim = self.single_observation_space.shape[0]
        self._obs = array((n, obs_dim), self.single_observation_space.dtype)
        env_obs_dim = self.envs[0].sawyer_observation_space.shape[0]
        self._obs[np.arange(n), env_obs_dim + np.arange(n) % self.num_tasks] = 1.0  # one-hot
        self._env_obs_dim = env_obs_dim
        # actions travel as float64 and are cast back to their own dtype in each share: exact for
        # float16/32/64, and the dtype matters (Meta-World's grip arithmetic keeps it)
        self._actions = array((n, self.single_action_space.shape[0]), np.float64)
        self._idle = array((n,), bool)
        self._reward = array((n,), np.float64)
        self._success = array((n,), np.float64)
        self._mw_truncated = array((n,), bool)  # Meta-World's own max_path_length
        bounds = np.linspace(0, n, workers + 1).round().astype(int)
        self.workers = ForkedWorkers(self, [range(bounds[w], bounds[w + 1]) for w in range(workers)])

    def plan_goals(self, num_episodes: int) -> None:
        """From now on, the j-th episode of task t counted over its copies gets the goal that the
        j-th episode of a single env of task t would draw from its RNG as seeded now: copy c runs
        episodes c, c + copies, c + 2 copies, ... Evaluation calls it after re-seeding, so any
        number of copies evaluates the same (task, goal) pairs. Episodes past the plan repeat the
        last goal (they are not counted; evaluation leaves those sub-envs idle)."""
        self.workers.run(MetaWorldVectorEnv._plan_goals_share, num_episodes)

    def _plan_goals_share(self, share: range, num_episodes: int) -> None:
        for i in share:
            wrapped = self._wrapped[i]
            rng = copy.deepcopy(self.envs[i].np_random)  # the draws RandomTaskSelectWrapper would make
            tasks = wrapped.get_wrapper_attr("tasks")
            draws = [tasks[rng.choice(len(tasks))] for _ in range(num_episodes)]
            # a copy with no episode to run (copies > episodes) still needs a goal to reset to
            self._goal_queues[i] = collections.deque(draws[i // self.num_tasks :: self.copies] or draws[:1])
            wrapped.get_wrapper_attr("toggle_sample_tasks_on_reset")(False)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        mask = None if options is None else options.get("reset_mask")
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        self.workers.run(MetaWorldVectorEnv._reset_share, seed, mask)
        self._elapsed[mask] = 0
        return self._obs.copy(), {}

    def _reset_share(self, share: range, seed: int | list[int] | None, mask: np.ndarray) -> None:
        """Resets the masked sub-envs of ``share`` through their wrapper chains, with the seeds a
        sync vector env gives its sub-envs (Meta-World ignores them: its seed goes in at
        construction)."""
        K = self.num_tasks
        for i in share:
            if not mask[i]:
                continue
            if queue := self._goal_queues[i]:
                self.envs[i].set_task(queue.popleft())
            sub_seed = seed[i] if isinstance(seed, list) else None if seed is None else seed + i % K
            self._obs[i], _ = self._wrapped[i].reset(seed=sub_seed)

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions)
        if actions.shape != self._actions.shape:
            raise ValueError(
                f"actions of shape {actions.shape}; the {self.num_envs} sub-envs take {self._actions.shape}"
            )
        self._actions[:] = actions
        self._idle[:] = False if self.idle is None else self.idle
        self.workers.run(MetaWorldVectorEnv._step_share, actions.dtype.str)
        idle = self._idle.copy()
        self._elapsed += 1
        truncated = self._mw_truncated | (self._elapsed >= self._max_episode_steps)
        truncated &= ~idle
        success = self._success.copy()
        terminated = success == 1.0 if self._terminate_on_success else np.zeros(self.num_envs, dtype=bool)
        return self._obs.copy(), self._reward.copy(), terminated, truncated, {"success": success}

    def _step_share(self, share: range, dtype: str) -> None:
        """``SawyerXYZEnv.step`` for the sub-envs of ``share``; writes their observations,
        rewards, success and Meta-World's own truncation into the shared arrays."""
        s = slice(share.start, share.stop)
        actions = self._actions[s].astype(dtype)
        # SawyerXYZEnv.set_xyz_action for the share at once, in the same dtypes: an action
        # times a Python float keeps the action's dtype (NEP 50), then adds to the float64 mocap
        delta = np.clip(actions[:, :3], -1, 1) * self._action_scale[s, None].astype(dtype)
        mocap = np.concatenate([self.envs[i].data.mocap_pos for i in share])  # one mocap body each
        mocap = np.clip(mocap + delta, self._mocap_low[s], self._mocap_high[s])
        obs, dim = self._obs, self._env_obs_dim  # the one-hot columns stay as set in __init__
        for j, i in enumerate(share):
            if self._idle[i]:
                self._reward[i] = self._success[i] = 0.0
                self._mw_truncated[i] = False
                continue
            env = self.envs[i]
            data = env.data
            if env.curr_path_length >= env.max_path_length:
                raise ValueError("You must reset the env manually once truncate==True")
            data.mocap_pos[0] = mocap[j]
            data.mocap_quat[0] = self._mocap_quat
            grip = actions[j, -1]
            data.ctrl[:] = (grip, -grip)
            mujoco.mj_step(env.model, data, nstep=env.frame_skip)
            mujoco.mj_rnePostConstraint(env.model, data)
            env.curr_path_length += 1
            site_xpos = data.site_xpos  # Meta-World puts the goal sites back after the physics
            for site, pos in env._target_site_config:
                site_xpos[env._fast_site_id(site)] = pos[:3]
            mujoco.mj_forward(env.model, data)
            space = env.sawyer_observation_space  # read each step: set_task may rebuild it
            o = env._get_obs()
            np.minimum(np.maximum(o, space.low, out=o), space.high, out=o)  # np.clip's definition, without its wrapper
            env._last_stable_obs = o
            reward_fn = self._rewards[i]
            if reward_fn is None:
                reward, info = env.evaluate_state(o, actions[j])
                self._reward[i], self._success[i] = reward, info["success"]
            else:
                self._reward[i], self._success[i] = reward_fn(env, o, actions[j])
            self._mw_truncated[i] = env.curr_path_length == env.max_path_length
            obs[i, :dim] = o

    def call(self, name: str, *args, **kwargs) -> tuple:
        """``SyncVectorEnv.call`` over every sub-env, each in the process that owns it."""
        if self.copies > 1 and name in ("get_checkpoint", "load_checkpoint"):
            # Meta-World's checkpoints name a sub-env by task: copies would overwrite each other
            raise ValueError("copies of a task set (evaluation envs) have no checkpoint")
        return tuple(
            out for part in self.workers.run(MetaWorldVectorEnv._call_share, name, args, kwargs) for out in part
        )

    def _call_share(self, share: range, name: str, args: tuple, kwargs: dict) -> list:
        out = []
        for i in share:
            attr = self._wrapped[i].get_wrapper_attr(name)
            out.append(attr(*args, **kwargs) if callable(attr) else attr)
        return out

    def close(self, **kwargs):
        self.workers.close()
        for reference in self.references:
            reference.close(**kwargs)
