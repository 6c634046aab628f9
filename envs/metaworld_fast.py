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
  checkpoints, and each task's own ``evaluate_state`` (the reward) and ``_get_pos_objects`` /
  ``_get_quat_objects``.
- **Replaced**: the per-step path. The actions of all sub-envs are clipped, scaled and added to
  the mocap bodies in one batched numpy operation, the physics is called directly, and what
  the wrappers do per step (time limit, terminate-on-success, one-hot id) is done on arrays for
  all sub-envs at once. The helpers that Meta-World's observation and reward code call by name
  (``tcp_center``, ``get_body_com``, ``_get_site_pos``, ``touching_object``, the observation's
  hand and gripper part) are replaced by index-based ones with the same arithmetic, through a
  subclass of each env's own class (``fast_env_class``).

Transition-exact: for the same seed and actions, qpos, qvel and mocap state are bit-identical
to the sync path, observations and rewards agree to 1e-9 and the success, termination and
truncation flags are identical (``tests/test_metaworld_fast.py`` checks every MT50 task).

Not reproduced: gymnasium's ``RecordEpisodeStatistics`` ``info["episode"]`` entry and
Meta-World's other info keys (``grasp_reward``, ...); ``info`` holds ``success`` only, which is
all mtrl reads.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from metaworld.sawyer_xyz_env import SawyerXYZEnv

from envs.metaworld_rewards import REWARDS


def _touching_object(self: SawyerXYZEnv, object_geom_id: int) -> bool:
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
    for (g1, g2), address in zip(geoms, efc):
        if object_geom_id == g1 or object_geom_id == g2:
            if left_id == g1 or left_id == g2:
                left = left + force[address]
            if right_id == g1 or right_id == g2:
                right = right + force[address]
    return 0 < left and 0 < right


def _tcp_center(self: SawyerXYZEnv) -> np.ndarray:
    right, left = self._fast_finger_sites
    xpos = self.data.site_xpos
    return (xpos[right] + xpos[left]) / 2.0


def _get_body_com(self: SawyerXYZEnv, body_name: str) -> np.ndarray:
    return self.data.xpos[self._fast_body_id(body_name)]


def _get_site_pos(self: SawyerXYZEnv, site_name: str) -> np.ndarray:
    return self.data.site_xpos[self._fast_site_id(site_name)].copy()


def _get_endeff_pos(self: SawyerXYZEnv) -> np.ndarray:
    return self.data.xpos[self._fast_hand_id]


def _body_id(self: SawyerXYZEnv, name: str) -> int:
    ids = self._fast_ids
    key = ("body", name)
    if key not in ids:
        ids[key] = self.model.body(name).id
    return ids[key]


def _site_id(self: SawyerXYZEnv, name: str) -> int:
    ids = self._fast_ids
    key = ("site", name)
    if key not in ids:
        ids[key] = self.model.site(name).id
    return ids[key]


def _init_fast(self: SawyerXYZEnv) -> None:
    """The ids the helpers index by, looked up once (Meta-World looks them up by name every step)."""
    m = self.model
    self._fast_ids = {}
    self._fast_pad_ids = (m.geom("leftpad_geom").id, m.geom("rightpad_geom").id)
    self._fast_finger_sites = (m.site("rightEndEffector").id, m.site("leftEndEffector").id)
    self._fast_hand_id = m.body("hand").id


@functools.cache
def fast_env_class(cls: type[SawyerXYZEnv]) -> type[SawyerXYZEnv]:
    """``cls`` with the by-name helpers replaced by index-based ones. A subclass, so the task's
    own reward and object code (and ``set_task``'s ``isinstance`` check) run unchanged."""
    return type(
        f"Fast{cls.__name__}",
        (cls,),
        {
            "touching_object": _touching_object,
            "tcp_center": property(_tcp_center),
            "get_body_com": _get_body_com,
            "_get_site_pos": _get_site_pos,
            "get_endeff_pos": _get_endeff_pos,
            "_fast_body_id": _body_id,
            "_fast_site_id": _site_id,
        },
    )


class MetaWorldVectorEnv(gym.vector.VectorEnv):
    """The sub-envs of ``reference`` (a ``SyncVectorEnv`` of Meta-World envs built with
    auto-reset disabled, as ``envs.vector`` builds them), stepped on the fast path.

    ``reset``, ``call`` (checkpoints, seeding) and ``close`` go to ``reference``; ``step`` does
    what the sub-envs' wrapper chain and Meta-World's ``SawyerXYZEnv.step`` do, in one pass.
    """

    def __init__(self, reference: gym.vector.SyncVectorEnv, max_episode_steps: int, terminate_on_success: bool):
        self.reference = reference
        self.num_envs = reference.num_envs
        self.single_observation_space = reference.single_observation_space
        self.single_action_space = reference.single_action_space
        self.observation_space = reference.observation_space
        self.action_space = reference.action_space
        self.metadata = reference.metadata
        self.envs: list[SawyerXYZEnv] = [e.unwrapped for e in reference.envs]
        self._rewards = [REWARDS.get(type(env)) for env in self.envs]
        # tasks whose reward runs Meta-World's own numpy code (exact, slower): said once by the trainer
        self.uncovered = [env.task_name for env, fn in zip(self.envs, self._rewards) if fn is None]
        for env in self.envs:
            if env._did_see_sim_exception:  # never set in Meta-World v3; the fast step has no such branch
                raise RuntimeError(f"{env.task_name}: the simulation reported an exception before the fast path took over")
            env.__class__ = fast_env_class(type(env))
            _init_fast(env)
        self._max_episode_steps = max_episode_steps
        self._terminate_on_success = terminate_on_success
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._mocap_low = np.stack([e.mocap_low for e in self.envs])
        self._mocap_high = np.stack([e.mocap_high for e in self.envs])
        self._action_scale = np.array([e.action_scale for e in self.envs], dtype=np.float64)
        obs_dim = self.single_observation_space.shape[0]
        self._one_hot = np.zeros((self.num_envs, obs_dim - self.envs[0].sawyer_observation_space.shape[0]))
        self._one_hot[np.arange(self.num_envs), np.arange(self.num_envs)] = 1.0
        self._mocap_quat = np.array([1.0, 0.0, 1.0, 0.0])

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        mask = None if options is None else options.get("reset_mask")  # read first: the sync env pops it
        obs, info = self.reference.reset(seed=seed, options=options)
        if mask is None:
            self._elapsed[:] = 0
        else:
            self._elapsed[np.asarray(mask, dtype=bool)] = 0
        return obs, info

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions)
        n = self.num_envs
        obs = np.empty((n, self.single_observation_space.shape[0]), dtype=self.single_observation_space.dtype)
        rewards = np.empty(n, dtype=np.float64)
        success = np.zeros(n, dtype=np.float64)
        truncated = np.zeros(n, dtype=bool)
        # SawyerXYZEnv.set_xyz_action for every sub-env at once, in the same dtypes: an action
        # times a Python float keeps the action's dtype (NEP 50), then adds to the float64 mocap
        delta = np.clip(actions[:, :3], -1, 1) * self._action_scale[:, None].astype(actions.dtype)
        for i, env in enumerate(self.envs):
            data = env.data
            if env.curr_path_length >= env.max_path_length:
                raise ValueError("You must reset the env manually once truncate==True")
            new_pos = data.mocap_pos + delta[i][None]
            new_pos[0, :] = np.clip(new_pos[0, :], self._mocap_low[i], self._mocap_high[i])
            data.mocap_pos = new_pos
            data.mocap_quat = self._mocap_quat
            grip = actions[i, -1]
            data.ctrl[0] = grip
            data.ctrl[1] = -grip
            mujoco.mj_step(env.model, data, nstep=env.frame_skip)
            mujoco.mj_rnePostConstraint(env.model, data)
            env.curr_path_length += 1
            for site, pos in env._target_site_config:
                data.site(site).xpos = pos[:3]
            mujoco.mj_forward(env.model, data)
            space = env.sawyer_observation_space  # read each step: set_task may rebuild it
            o = np.clip(env._get_obs(), space.low, space.high, dtype=np.float64)
            env._last_stable_obs = o
            reward_fn = self._rewards[i]
            if reward_fn is None:
                reward, info = env.evaluate_state(o, actions[i])
                rewards[i], success[i] = reward, info["success"]
            else:
                rewards[i], success[i] = reward_fn(env, o, actions[i])
            truncated[i] = env.curr_path_length == env.max_path_length
            obs[i, : o.shape[0]] = o
        obs[:, o.shape[0] :] = self._one_hot
        self._elapsed += 1
        truncated |= self._elapsed >= self._max_episode_steps
        terminated = success == 1.0 if self._terminate_on_success else np.zeros(n, dtype=bool)
        return obs, rewards, terminated, truncated, {"success": success}

    def call(self, name: str, *args, **kwargs):
        return self.reference.call(name, *args, **kwargs)

    def close(self, **kwargs):
        self.reference.close(**kwargs)
