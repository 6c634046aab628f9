"""Task sets whose envs observe Dict (and nested) spaces: flattened in the documented key order,
padded and one-hot tagged like Box observations; spaces with no flat vector form, non-Box
action spaces and ids of packages not imported exit 2 with one line naming the env and the space.

The envs here are registered by this file (tiny, deterministic, no simulator), so that the
expected vectors can be written out by hand."""

from collections import OrderedDict

import gymnasium as gym
import numpy as np
import pytest

from envs.tasksets import get_taskset
from envs.vector import make_vector_env
from mtrl.cli import main
from tests.conftest import SMOKE

S = gym.spaces
BOX2 = S.Box(-1.0, 1.0, (2,), dtype=np.float32)


class SpaceEnv(gym.Env):
    """Observes ``observation(step)`` for the given space; success at step 3."""

    def __init__(self, observation_space: gym.Space, observation, action_space: gym.Space = BOX2):
        self.observation_space, self.action_space = observation_space, action_space
        self._observation, self._t = observation, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._observation(0), {}

    def step(self, action):
        self._t += 1
        return self._observation(self._t), 0.0, False, False, {"is_success": float(self._t >= 3)}


# keys given out of order: gymnasium's Dict sorts a plain dict's keys ("a" before "b", "y" before "z")
NESTED = S.Dict(
    {"b": S.Box(-2.0, 2.0, (2,)), "a": S.Dict({"z": S.Discrete(3), "y": S.Box(0.0, 9.0, (1,))})}
)
# an OrderedDict keeps its order
ORDERED = S.Dict(OrderedDict([("goal", S.Box(-5.0, 5.0, (1,))), ("arm", S.Box(-5.0, 5.0, (3,)))]))


def nested_obs(t: int) -> dict:
    return {"b": np.array([t, -t], dtype=np.float32), "a": {"z": t % 3, "y": np.array([t + 0.5], dtype=np.float32)}}


def ordered_obs(t: int) -> OrderedDict:
    return OrderedDict([("goal", np.array([10.0 + t])), ("arm", np.array([t, 2 * t, 3 * t], dtype=np.float64))])


REGISTERED = {
    "mtrl_test/Nested-v0": lambda: SpaceEnv(NESTED, nested_obs),
    "mtrl_test/Ordered-v0": lambda: SpaceEnv(ORDERED, ordered_obs),
    "mtrl_test/TextObs-v0": lambda: SpaceEnv(S.Text(5), lambda t: "ab"),
    "mtrl_test/SequenceObs-v0": lambda: SpaceEnv(S.Sequence(BOX2), lambda t: (np.zeros(2, np.float32),)),
    "mtrl_test/GraphObs-v0": lambda: SpaceEnv(S.Graph(BOX2, S.Discrete(2)), lambda t: None),
    "mtrl_test/DiscreteAction-v0": lambda: SpaceEnv(BOX2, lambda t: np.zeros(2, np.float32), S.Discrete(3)),
    "mtrl_test/DictAction-v0": lambda: SpaceEnv(BOX2, lambda t: np.zeros(2, np.float32), S.Dict({"a": BOX2})),
}


@pytest.fixture(scope="module", autouse=True)
def registered():
    for env_id, make in REGISTERED.items():
        gym.register(id=env_id, entry_point=make, max_episode_steps=50)
    yield
    for env_id in REGISTERED:
        gym.registry.pop(env_id, None)


def test_nested_dict_flattens_in_sorted_key_order_then_pads_and_tags():
    """Nested (a: {y: Box 1, z: Discrete 3 one-hot}, b: Box 2) is 6 wide; Ordered (goal, arm) is 4
    wide, padded to 6; then one-hot(t) of 2. Written out by hand, not by gymnasium.spaces.flatten."""
    envs = make_vector_env(get_taskset("gym:mtrl_test/Nested-v0,mtrl_test/Ordered-v0"), seed=0, max_episode_steps=10)
    assert envs.single_observation_space.shape == (6 + 2,)
    obs, _ = envs.reset()
    np.testing.assert_array_equal(obs[0], np.array([0.5, 1, 0, 0, 0, 0, 1, 0], dtype=np.float32))
    np.testing.assert_array_equal(obs[1], np.array([10, 0, 0, 0, 0, 0, 0, 1], dtype=np.float32))
    obs, _, _, _, infos = envs.step(np.zeros((2, 2), dtype=np.float32))
    # step 1: y = 1.5, z = 1 -> [0, 1, 0], b = [1, -1]; goal 11, arm [1, 2, 3]
    np.testing.assert_array_equal(obs[0], np.array([1.5, 0, 1, 0, 1, -1, 1, 0], dtype=np.float32))
    np.testing.assert_array_equal(obs[1], np.array([11, 1, 2, 3, 0, 0, 0, 1], dtype=np.float32))
    assert obs.dtype == np.float32 and list(infos["success"]) == [0.0, 0.0]
    space = envs.single_observation_space
    # the bounds: the union of the flattened spaces' bounds per entry (padding [0, 0], one-hot [0, 1])
    np.testing.assert_array_equal(space.low, np.array([-5, -5, -5, -5, -2, -2, 0, 0], dtype=np.float32))
    np.testing.assert_array_equal(space.high, np.array([9, 5, 5, 5, 2, 2, 1, 1], dtype=np.float32))
    for _ in range(2):
        obs, _, _, _, infos = envs.step(np.zeros((2, 2), dtype=np.float32))
    assert list(infos["success"]) == [1.0, 1.0]  # the env's is_success, at step 3


def test_a_dict_observation_set_trains(tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--config", str(SMOKE), "--run-dir", str(run), "taskset=gym:mtrl_test/Nested-v0,mtrl_test/Ordered-v0",
            "batch_size=8", "total_env_steps=80", "warmup_env_steps=20", "eval_every=80", "eval_episodes=1",
            "checkpoint_every=80", "log_every=40", "max_episode_steps=10"]  # fmt: skip
    assert main(argv) == 0
    assert (run / "summary.json").exists()


@pytest.mark.parametrize(
    "env_id,space",
    [
        ("mtrl_test/TextObs-v0", "Text(1, 5, charset="),
        ("mtrl_test/SequenceObs-v0", "Sequence(Box("),
        ("mtrl_test/GraphObs-v0", "Graph(Box("),
    ],
)
def test_observations_without_a_flat_form_exit_2_naming_env_and_space(env_id, space, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--config", str(SMOKE), "--run-dir", str(run), f"taskset=gym:{env_id}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"'{env_id}' observes {space}" in err and "no flat vector form" in err and "Traceback" not in err
    assert not run.exists()


@pytest.mark.parametrize("env_id,kind", [("mtrl_test/DiscreteAction-v0", "Discrete"), ("mtrl_test/DictAction-v0", "Dict")])
def test_action_spaces_that_are_not_one_box_exit_2(env_id, kind, tmp_path, capsys):
    code = main(["train", "--config", str(SMOKE), "--run-dir", str(tmp_path / "r"), f"taskset=gym:{env_id}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"'{env_id}' acts in" in err and f"a {kind} action space; SAC needs a continuous (Box) one" in err


def test_an_id_of_a_package_not_imported_says_how_to_name_it(tmp_path, capsys, monkeypatch):
    """FetchReach-v4 is registered by gymnasium_robotics only once it is imported (here it may
    have been, by another test: it is unregistered for this one); a misspelt package is one line
    too."""
    monkeypatch.delitem(gym.registry, "FetchReach-v4", raising=False)
    code = main(["train", "--config", str(SMOKE), "--run-dir", str(tmp_path / "r"), "taskset=gym:FetchReach-v4"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "cannot make gymnasium env 'FetchReach-v4'" in err and "gym:<package>:FetchReach-v4" in err
    code = main(["train", "--config", str(SMOKE), "--run-dir", str(tmp_path / "r"), "taskset=gym:no_such_pkg:Foo-v0"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "cannot make gymnasium env 'no_such_pkg:Foo-v0'" in err and "No module named 'no_such_pkg'" in err
