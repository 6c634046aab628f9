"""Task sets of every kind resolve, build and train; gymnasium sets are padded and one-hot
encoded exactly; bad task sets exit 2 with one line and leave no run directory."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.tasksets import TaskSetError, get_taskset
from envs.vector import env_rng_state, load_env_rng_state, make_vector_env, reset_done
from mtrl.checkpoint import list_checkpoints
from mtrl.cli import main
from tests.conftest import REPO, SMOKE

EXAMPLES = REPO / "docs" / "examples"
# a classic-control car (obs 2) and a MuJoCo pendulum that falls (obs 9, early termination):
# both have one action in [-1, 1]
UNEVEN = "gym:MountainCarContinuous-v0,InvertedDoublePendulum-v5"
# a few steps on tiny networks; each sub-env gets 40 steps, 10 of them warm-up
TINY = ["total_env_steps=120", "warmup_env_steps=30", "eval_every=120", "eval_episodes=1",
        "checkpoint_every=60", "log_every=60", "max_episode_steps=20", "grad_stats_every=5"]  # fmt: skip


def _run(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def _train(run_dir, taskset: str, *extra: str) -> dict:
    num_tasks = get_taskset(taskset).num_tasks
    argv = ["train", "--config", str(SMOKE), "--run-dir", str(run_dir), f"taskset={taskset}",
            f"batch_size={4 * num_tasks}", *TINY, *extra]  # fmt: skip
    assert main(argv) == 0
    return json.loads((run_dir / "summary.json").read_text())


def test_padding_and_one_hot_are_exact():
    """obs of task t = [its env's obs, zeros up to the largest obs size, one-hot(t)], float32;
    the same values a bare env seeded with seed + t gives."""
    envs = make_vector_env(get_taskset(UNEVEN), seed=7, max_episode_steps=20)
    obs, _ = envs.reset()
    assert obs.dtype == np.float32 and obs.shape == (2, 9 + 2)
    car, _ = gym.make("MountainCarContinuous-v0").reset(seed=7)
    pendulum, _ = gym.make("InvertedDoublePendulum-v5").reset(seed=8)
    np.testing.assert_array_equal(obs[0], np.concatenate([car, np.zeros(7), [1, 0]]).astype(np.float32))
    np.testing.assert_array_equal(obs[1], np.concatenate([pendulum, [0, 1]]).astype(np.float32))
    obs, *_ = envs.step(np.full((2, 1), 0.5, dtype=np.float32))
    np.testing.assert_array_equal(obs[0, 2:], np.array([0] * 7 + [1, 0], dtype=np.float32))
    np.testing.assert_array_equal(obs[1, 9:], np.array([0, 1], dtype=np.float32))
    assert envs.single_observation_space.contains(obs[0]) and envs.single_action_space.shape == (1,)


def test_gymnasium_env_rng_checkpoint_restores_the_next_episode():
    """After load_env_rng_state, a reset gives the same start states as the run that saved it."""
    envs = make_vector_env(get_taskset(UNEVEN), seed=3, max_episode_steps=5)
    obs, _ = envs.reset()
    for _ in range(5):
        obs, *_ = envs.step(np.zeros((2, 1), dtype=np.float32))
    state = env_rng_state(envs)
    first = reset_done(envs, obs, np.ones(2, dtype=bool))
    load_env_rng_state(envs, state)
    np.testing.assert_array_equal(reset_done(envs, obs, np.ones(2, dtype=bool)), first)


def test_mismatched_action_spaces_exit_2_with_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "--config", str(SMOKE), "--run-dir", str(run_dir), "taskset=gym:InvertedPendulum-v5,Reacher-v5"]
    code, err = _run(argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("mtrl: error:") and "action spaces differ between 'InvertedPendulum-v5'" in err
    assert "'Reacher-v5'" in err and "Traceback" not in err
    assert not run_dir.exists()


@pytest.mark.parametrize(
    "content,message",
    [
        ("name: bad\ntasks: [reach-v3, nope-v3]\n", "unknown Meta-World task 'nope-v3'"),
        ("tasks: reach-v3\n", "must hold 'tasks: [...]'"),
        ("tasks: [reach-v3, reach-v3]\n", "lists a task twice"),
        ("kind: gymnasium\ntasks: [NoSuchEnv-v0]\n", "cannot make gymnasium env 'NoSuchEnv-v0'"),
    ],
)
def test_bad_taskset_files_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "tasks.yaml"
    path.write_text(content)
    run_dir = tmp_path / "run"
    code, err = _run(["train", "--config", str(SMOKE), "--run-dir", str(run_dir), f"taskset={path}"], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not run_dir.exists()


def test_unknown_module_attribute_exits_2(tmp_path, capsys):
    code, err = _run(["train", "--config", str(SMOKE), "--run-dir", str(tmp_path / "r"), "taskset=no_such_mod:x"], capsys)
    assert code == 2 and "cannot load taskset 'no_such_mod:x'" in err


def test_custom_metaworld_yaml_trains(tmp_path):
    summary = _train(tmp_path / "run", str(EXAMPLES / "mt3.yaml"))
    assert list(summary["final_success"]) == ["reach-v3", "push-v3", "drawer-close-v3"]
    assert summary["env_steps"] == 120 and summary["updates"] == (120 - 30) // 3


def test_gymnasium_set_with_uneven_episodes_checkpoints_when_due_and_resumes(tmp_path):
    """The pendulum falls long before the car's episode ends, so the sub-envs rarely end an
    episode together: checkpoints are written when due, mid-episode (the rule of Trainer.train)."""
    run = tmp_path / "run"
    summary = _train(run, UNEVEN, "sac.multi_head=true", "balancer=cagrad", "keep_checkpoints=5")
    assert summary["method"] == "mh_sac+cagrad" and summary["updates"] == (120 - 30) // 2
    assert [p.name for p in list_checkpoints(run)] == ["ckpt_000000000060.pt", "ckpt_000000000120.pt"]
    assert main(["train", "--resume", str(run), "total_env_steps=160"]) == 0
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 160


def test_module_attribute_and_entry_point(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    assert get_taskset("my_tasks:robots").tasks == ("Reacher-v5", "Swimmer-v5")
    assert get_taskset("my_tasks:three_tasks").tasks == ("reach-v3", "push-v3", "drawer-close-v3")
    with pytest.raises(TaskSetError, match="is a str, not an envs.tasksets.TaskSet"):
        get_taskset("os:sep")
    with pytest.raises(TaskSetError, match="calling it raised TypeError"):
        get_taskset("json:dumps")
    dist = tmp_path / "site" / "my_robots-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-robots\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mtrl.tasksets]\nmy-robots = my_tasks:robots\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert get_taskset("my-robots").tasks == ("Reacher-v5", "Swimmer-v5")
    assert main(["list", "tasksets"]) == 0
    listed = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in listed]
    assert names[:4] == ["MT10", "MT25", "MT50", "MT1:<env-name>"]
    assert {"path/to/tasks.yaml", "gym:<id>,<id>,...", "my_pkg.module:attribute", "my-robots"} <= set(names)
    assert "entry point my_tasks:robots" in listed[names.index("my-robots")]
    summary = _train(tmp_path / "run", "my-robots")
    assert list(summary["final_success"]) == ["Reacher-v5", "Swimmer-v5"]


def test_docs_example_robots_train_and_obs_layout(tmp_path):
    """docs/examples/two_robots.yaml: Reacher (obs 10) and Swimmer (obs 8) padded to 10."""
    taskset = get_taskset(str(EXAMPLES / "two_robots.yaml"))
    assert taskset.name == "two-robots" and taskset.kind == "gymnasium"
    summary = _train(tmp_path / "run", str(EXAMPLES / "two_robots.yaml"))
    assert summary["taskset"].endswith("two_robots.yaml") and summary["env_steps"] == 120
    data = torch.load(list_checkpoints(tmp_path / "run")[-1], weights_only=False)["replay"]["data"]
    obs = data[..., :12]  # [K, slots, obs | action | reward | terminated | next_obs]
    assert torch.equal(obs[0, :, 10:], torch.tensor([1.0, 0.0]).expand(obs.shape[1], 2))
    assert torch.equal(obs[1, :, 8:], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(obs.shape[1], 4))
    assert obs[1, :, :8].abs().sum() > 0 and obs[0, :, 8:10].abs().sum() > 0  # Reacher fills all 10


def test_docs_tasksets_page_examples_run(tmp_path, monkeypatch):
    """Every `mtrl train` command of docs/tasksets.md that uses docs/examples runs (a few steps
    on tiny networks), and its YAML and Python blocks are the example files' contents."""
    import re
    import shlex

    page = (REPO / "docs" / "tasksets.md").read_text()
    for block in re.findall(r"```(?:yaml|python)\n(.*?)```", page, flags=re.DOTALL):
        source = next(p for p in EXAMPLES.iterdir() if block.splitlines()[0] in p.read_text())
        for line in block.splitlines():
            assert line in source.read_text().splitlines(), (source.name, line)
    commands = [line.strip() for line in page.splitlines() if "mtrl train" in line and "docs/examples" in line]
    assert len(commands) == 4
    monkeypatch.chdir(REPO)
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the PYTHONPATH=docs/examples of the my_tasks command
    for i, command in enumerate(commands):
        argv = shlex.split(command.split("mtrl ", 1)[1])
        run_dir = tmp_path / f"run{i}"
        assert argv[0] == "train"
        assert main(["train", "--run-dir", str(run_dir), *argv[1:], "sac.hidden_sizes=[32,32]", "device=cpu", *TINY]) == 0
        assert json.loads((run_dir / "summary.json").read_text())["env_steps"] == 120


def test_legacy_preset_fixes_one_goal_per_task():
    """configs/mt10_legacy.yaml: 150-step episodes, 1 eval episode, num_goals 1, i.e. every
    reset of a task shows the same goal (obs[36:39]), where the default samples among 50."""
    from mtrl.config import load_config

    cfg = load_config(REPO / "configs" / "mt10_legacy.yaml")
    assert (cfg.max_episode_steps, cfg.num_goals, cfg.eval_episodes) == (150, 1, 1)
    assert "LEGACY PROTOCOL" in (REPO / "configs" / "mt10_legacy.yaml").read_text().splitlines()[0]
    goals = {}
    for num_goals in (1, 50):
        envs = make_vector_env(get_taskset("MT1:reach-v3"), seed=1, num_goals=num_goals)
        goals[num_goals] = {tuple(envs.reset()[0][0, 36:39]) for _ in range(4)}
        envs.close()
    assert len(goals[1]) == 1 and len(goals[50]) > 1
