"""The fast path is transition-exact against Meta-World through gymnasium's sync vector env:
same seed and actions -> bit-identical qpos, qvel and mocap, observations and rewards within
1e-9, identical success, termination and truncation flags, across resets and goal changes.
Actions come from Meta-World's scripted policies (which reach success, so the grasp and
success branches of the rewards run) with noise, and uniform random actions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from metaworld import env_dict
from metaworld.policies import ENV_POLICY_MAP

from envs.metaworld_fast import MetaWorldVectorEnv
from envs.tasksets import TaskSet
from envs.vector import make_metaworld_vector, reset_done

TOL = 1e-9
MT50 = tuple(env_dict.MT50_V3)


def build_pair(tasks: tuple[str, ...], seed: int, max_episode_steps: int, terminate_on_success: bool):
    taskset = TaskSet("exactness", tasks)
    common = dict(
        seed=seed,
        use_one_hot=True,
        reward_function_version="v2",
        max_episode_steps=max_episode_steps,
        num_goals=50,
        terminate_on_success=terminate_on_success,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*precision lowered.*")
        reference = make_metaworld_vector(taskset, "sync", common)
        fast = MetaWorldVectorEnv(
            [make_metaworld_vector(taskset, "sync", common)], max_episode_steps, terminate_on_success
        )
    return reference, fast


def compare_rollout(reference, fast, tasks, steps: int, seed: int, scripted_fraction: float = 0.5) -> dict:
    """Step both envs with the same actions; assert exactness at every step; return what ran."""
    rng = np.random.default_rng(seed)
    policies = [ENV_POLICY_MAP[t]() for t in tasks]
    obs_r, _ = reference.reset()
    obs_f, _ = fast.reset()
    np.testing.assert_array_equal(obs_r, obs_f)
    n = len(tasks)
    scripted = rng.random(n) < scripted_fraction
    seen = {"success": np.zeros(n, bool), "resets": 0}
    for step in range(steps):
        actions = rng.uniform(-1, 1, (n, 4)).astype(np.float32)
        for i in np.flatnonzero(scripted):
            a = policies[i].get_action(obs_r[i, :39].astype(np.float64))
            actions[i] = np.clip(a + rng.normal(0, 0.1, 4), -1, 1).astype(np.float32)
        out_r, out_f = reference.step(actions), fast.step(actions)
        for i, (e_r, e_f) in enumerate(zip(reference.envs, fast.envs, strict=True)):
            d_r, d_f = e_r.unwrapped.data, e_f.data
            where = f"{tasks[i]} at step {step}"
            assert np.array_equal(d_r.qpos, d_f.qpos) and np.array_equal(d_r.qvel, d_f.qvel), where
            assert np.array_equal(d_r.mocap_pos, d_f.mocap_pos) and np.array_equal(d_r.mocap_quat, d_f.mocap_quat), (
                where
            )
            np.testing.assert_allclose(
                e_f._last_stable_obs, e_r.unwrapped._last_stable_obs, rtol=0, atol=TOL, err_msg=where
            )
        np.testing.assert_allclose(out_f[0], out_r[0], rtol=0, atol=1e-6)  # float32 casts of obs within 1e-9
        np.testing.assert_allclose(out_f[1], out_r[1], rtol=0, atol=TOL, err_msg=f"rewards at step {step}")
        np.testing.assert_array_equal(out_f[2], out_r[2], err_msg=f"terminated at step {step}")
        np.testing.assert_array_equal(
            out_f[3],
            out_r[3],
            err_msg=f"truncated at step {step}: {[tasks[i] for i in np.flatnonzero(out_f[3] != out_r[3])]} "
            f"elapsed {fast._elapsed[out_f[3] != out_r[3]]}",
        )
        np.testing.assert_array_equal(out_f[4]["success"], np.asarray(out_r[4]["success"], dtype=float))
        seen["success"] |= np.asarray(out_r[4]["success"]) > 0
        done = out_r[2] | out_r[3]
        if done.any():
            seen["resets"] += int(done.sum())
            scripted[done] = rng.random(int(done.sum())) < scripted_fraction
        obs_r = reset_done(reference, out_r[0], done)
        obs_f = reset_done(fast, out_f[0], done)
        np.testing.assert_array_equal(obs_r, obs_f)
    return seen


@pytest.fixture(scope="module")
def mt50_pair():
    return build_pair(MT50, seed=7, max_episode_steps=200, terminate_on_success=True)


def _vars(env) -> dict:
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(env).items()}


def test_every_mt50_task_is_exact(mt50_pair):
    """All MT50 tasks in lockstep, episodes of up to 200 steps, most scripted: successes end
    them (termination flags), resets sample new goals. Then, at each task's last state, the
    float reward against Meta-World's for gripper values on both sides of the grip branches,
    in float32 and float64, with no attribute of the env changed by either."""
    reference, fast = mt50_pair
    assert fast.uncovered == []  # every MT50 task has its float reward
    seen = compare_rollout(reference, fast, MT50, steps=400, seed=0, scripted_fraction=0.8)
    assert seen["resets"] >= len(MT50) * 2
    assert seen["success"].sum() >= 40, f"success reached on {seen['success'].sum()} tasks only"
    for env, reward_fn, task in zip(fast.envs, fast._rewards, MT50, strict=True):
        obs = env._last_stable_obs
        for grip in (-1.5, -0.4, 0.0, 0.3, 0.6, 1.0, 1.5):
            for dtype in (np.float32, np.float64):
                action = np.array([0.1, -0.2, 0.3, grip], dtype=dtype)
                before = _vars(env)
                expected, info = env.evaluate_state(obs, action)
                got, success = reward_fn(env, obs, action)
                after = _vars(env)
                assert before.keys() == after.keys()
                for k, v in before.items():
                    assert np.array_equal(v, after[k]) if isinstance(v, np.ndarray) else v is after[k], (task, k)
                assert abs(got - float(expected)) <= TOL and success == info["success"], (task, grip, dtype)


def test_matrix_to_quaternion_matches_scipy():
    """The fast observation's quaternions against scipy's ``Rotation.from_matrix(...).as_quat()``
    (what Meta-World calls), on random rotations, on each of Markley's four branches, and on
    the rotations objects rest in (identity, quarter and half turns, where the branch choice ties)."""
    from scipy.spatial.transform import Rotation

    from envs.metaworld_fast import mat_to_quat

    rng = np.random.default_rng(0)
    mats = list(Rotation.random(2000, random_state=1).as_matrix())
    mats += [
        Rotation.from_rotvec(axis * angle).as_matrix()
        for axis in np.eye(3)
        for angle in (0, np.pi / 2, np.pi, -np.pi / 2)
    ]
    mats += [Rotation.from_rotvec(rng.normal(size=3) * 1e-9).as_matrix() for _ in range(20)]
    branches = set()
    for m in mats:
        expected = Rotation.from_matrix(m).as_quat()
        got = mat_to_quat(m.ravel().tolist())
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        branches.add(int(np.argmax([m[0, 0], m[1, 1], m[2, 2], np.trace(m)])))
    assert branches == {0, 1, 2, 3}


def test_worker_processes_step_the_same_transitions():
    """Sub-envs spread over 3 processes (shares of 2, 1 and 2 sub-envs) against all in this
    one: bit-identical observations, rewards, flags and physics state (read from the owning
    worker through ``call``), across resets; the RNG checkpoints, read and loaded through the
    workers, are the same."""
    from envs.vector import make_vector_env

    tasks = ("pick-place-v3", "door-open-v3", "button-press-topdown-v3", "peg-insert-side-v3", "reach-v3")
    taskset = TaskSet("workers", tasks)
    one, three = (make_vector_env(taskset, 5, "auto", 60, terminate_on_success=True, workers=w) for w in (1, 3))
    assert [len(s) for s in three.workers.shares] == [2, 1, 2] and len(three.workers.pids) == 2
    rng = np.random.default_rng(1)
    policies = [ENV_POLICY_MAP[t]() for t in tasks]
    obs, _ = one.reset()
    np.testing.assert_array_equal(three.reset()[0], obs)
    resets = successes = 0
    checkpoint = None
    for step in range(240):
        actions = rng.uniform(-1, 1, (len(tasks), 4)).astype(np.float32)
        for i in range(0, len(tasks), 2):  # scripted on every other task, so some succeed
            actions[i] = np.clip(policies[i].get_action(obs[i, :39].astype(np.float64)), -1, 1)
        out1, out3 = one.step(actions), three.step(actions)
        for a, b in zip(out1[:4], out3[:4], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"step {step}")
        np.testing.assert_array_equal(out1[4]["success"], out3[4]["success"])
        if step % 40 == 39:
            for i, data in enumerate(three.call("data")):
                ref = one.envs[i].data
                for field in ("qpos", "qvel", "mocap_pos", "mocap_quat"):
                    assert np.array_equal(getattr(ref, field), getattr(data, field)), (tasks[i], field, step)
        if step == 100:
            checkpoint = one.call("get_checkpoint")
        done = out1[2] | out1[3]
        resets += int(done.sum())
        successes += int(out1[2].sum())
        obs = reset_done(one, out1[0], done)
        np.testing.assert_array_equal(reset_done(three, out3[0], done), obs)
    assert resets >= 2 * len(tasks) and successes >= 1
    assert _same(three.call("get_checkpoint"), one.call("get_checkpoint"))
    three.call("load_checkpoint", checkpoint)
    assert _same(three.call("get_checkpoint"), checkpoint)
    assert not _same(one.call("get_checkpoint"), checkpoint)  # the checkpoint is of another state
    one.close()
    three.close()


def _same(a, b) -> bool:
    """Equality of nested checkpoints (dicts, lists, tuples, arrays)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return a == b
