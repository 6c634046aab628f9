"""Staged balancing (``balancer.stages``): the practitioners' recipe -- static loss
normalisation, then the stall boost, then GradNorm -- from one command on the smoke preset.
The stages switch at the right env step, each starts with fresh balancer state, a resume
inside a stage continues exactly, and bad stage lists exit 2 with one line."""

import json
import math
import re
import shutil

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from envs.tasksets import get_taskset
from mtrl.checkpoint import list_checkpoints
from mtrl.cli import main
from mtrl.config import BalancerConfig, BalancerStage, ConfigError, load_config, save_config
from mtrl.trainer import SUCCESS_MEMORY
from tests.conftest import SMOKE

TASKS = get_taskset("MT10").tasks
# boundaries off the 10-env-step grid of a vector step: the first update at or after `until`
# belongs to the next stage (1510 and 2500)
RECIPE = ("[{until: 1505, balancer: loss_norm}, "
          "{until: 2495, balancer: stall_boost, kwargs: {patience: 20, ramp: 20}}, {balancer: gradnorm}]")  # fmt: skip
LABEL = "loss_norm-stall_boost@1505-gradnorm@2495"


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("recipe") / "run"
    argv = ["train", "--config", str(SMOKE), "--run-dir", str(run), f"balancer.stages={RECIPE}", "keep_checkpoints=3"]
    assert main(argv) == 0
    return run


def _ckpt(run, step):
    return torch.load(run / "checkpoints" / f"ckpt_{step:012d}.pt", weights_only=False)


def _events(run, tag):
    ea = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)] if tag in ea.Tags()["scalars"] else []


def test_recipe_runs_from_one_command_and_names_its_stages(recipe_run):
    summary = json.loads((recipe_run / "summary.json").read_text())
    assert summary["balancer"] == summary["method"] == LABEL
    assert summary["env_steps"] == 3000
    # config.yaml reruns the same stages
    saved = load_config(recipe_run / "config.yaml").balancer
    assert saved == load_config(SMOKE, {"balancer.stages": RECIPE}).balancer
    assert [s.until for s in saved.stages] == [1505, 2495, None]


def test_stages_switch_at_the_right_env_step(recipe_run):
    marks = _events(recipe_run, "balancer/stage")
    steps = [s for s, _ in marks]
    assert steps == sorted(set(steps)), "one balancer/stage point per step"
    assert (1510, 1.0) in marks and (2500, 2.0) in marks  # the switches, marked where they happen
    for step, stage in marks:
        assert stage == (0 if step < 1505 else 1 if step < 2495 else 2), (step, stage)
    methods = {step: (_ckpt(recipe_run, step)["balancer_stage"], set(_ckpt(recipe_run, step)["balancers"]["critic"]))
               for step in (1000, 2000, 3000)}  # fmt: skip
    assert methods[1000][0] == 0 and "abs_sum" in methods[1000][1]  # loss_norm (no update yet)
    assert methods[2000][0] == 1 and "log_boost" in methods[2000][1]  # stall_boost
    assert methods[3000][0] == 2 and "loss_weights" in methods[3000][1]  # gradnorm


def test_each_stage_starts_with_fresh_state_and_its_own_kwargs(recipe_run):
    """The stall boost's counters start with its stage (50 updates from 1510 to 2000, not the
    100 of the run so far); GradNorm's Adam has taken the 51 steps of its stage only."""
    for loss in ("critic", "actor"):
        boost = _ckpt(recipe_run, 2000)["balancers"][loss]
        assert float(boost["quiet"].max()) == 50
        # patience 20 and ramp 20 from the stage's kwargs: tasks quiet since the stage began
        # are at the cap (stalled from call 20 on, 31 calls of growth)
        quiet = boost["quiet"] == 50
        assert quiet.any()
        torch.testing.assert_close(boost["log_boost"][quiet], torch.full((int(quiet.sum()),), math.log(3.0), dtype=torch.float64))
        assert _ckpt(recipe_run, 3000)["balancers"][loss]["adam"]["t"] == 51
    boosts = _events(recipe_run, "balancer/critic/boost/reach-v3")
    assert boosts and all(1505 <= step < 2495 and 1.0 <= value <= 3.0 for step, value in boosts)


def test_task_success_fed_to_the_balancers_is_the_documented_average(recipe_run):
    """task_success_t <- task_success_t + (x - task_success_t) / min(n, SUCCESS_MEMORY) over the
    task's finished training episodes (TensorBoard's train/success_rate)."""
    state = _ckpt(recipe_run, 3000)["task_success"]
    assert state["episodes"].tolist() == [6] * len(TASKS)
    for t, task in enumerate(TASKS):
        s = 0.0
        for n, (_, x) in enumerate(_events(recipe_run, f"train/success_rate/{task}"), start=1):
            s += (x - s) / min(n, SUCCESS_MEMORY)
        assert state["average"][t] == pytest.approx(s), task


def test_resume_inside_a_stage_continues_exactly(recipe_run, tmp_path):
    """Crash after the checkpoint at 2000 (inside the stall-boost stage): the resumed run
    crosses into GradNorm at 2500 and ends with the uninterrupted run's parameters and
    balancer state."""
    run = tmp_path / "crashed"
    shutil.copytree(recipe_run, run)
    (run / "summary.json").unlink()
    list_checkpoints(run)[-1].unlink()
    assert main(["train", "--resume", str(run)]) == 0
    final, reference = _ckpt(run, 3000), _ckpt(recipe_run, 3000)
    assert final["balancer_stage"] == reference["balancer_stage"] == 2
    for name, value in reference["agent"].items():
        assert torch.equal(final["agent"][name], value), name
    for loss in ("critic", "actor"):
        for key in ("loss_weights", "initial_losses"):
            assert torch.equal(final["balancers"][loss][key], reference["balancers"][loss][key]), (loss, key)
    assert final["task_success"]["average"].tolist() == reference["task_success"]["average"].tolist()
    marks = [s for s, _ in _events(run, "balancer/stage")]
    assert marks == sorted(set(marks)) and 2500 in marks


def test_label_is_readable_and_filesystem_safe():
    cfg = BalancerConfig(stages=[BalancerStage(critic="loss_norm", actor="ew", until=200_000),
                                 BalancerStage(critic="stall_boost", actor="stall_boost", until=1_000_000),
                                 BalancerStage(critic="gradnorm", actor="gradnorm", until=None)])  # fmt: skip
    assert cfg.label == "loss_norm+ew-stall_boost@200k-gradnorm@1M"
    assert re.fullmatch(r"[A-Za-z0-9_+@-]+", cfg.label)
    assert BalancerConfig(critic="cagrad", actor="cagrad").label == "cagrad"


def test_yaml_file_form_matches_the_command_line_and_round_trips(tmp_path):
    path = tmp_path / "staged.yaml"
    path.write_text(SMOKE.read_text() + "balancer:\n  stages:\n"
                    "    - {until: 1505, critic: loss_norm, actor: loss_norm}\n"
                    "    - {until: 2495, critic: stall_boost, actor: stall_boost, kwargs: {patience: 20, ramp: 20}}\n"
                    "    - {critic: gradnorm, actor: gradnorm}\n")  # fmt: skip
    cfg = load_config(path)
    assert cfg.balancer == load_config(SMOKE, {"balancer.stages": RECIPE}).balancer
    save_config(cfg, tmp_path / "saved.yaml")
    assert yaml.safe_load((tmp_path / "saved.yaml").read_text())["balancer"]["stages"][2]["until"] is None
    assert load_config(tmp_path / "saved.yaml") == cfg


BAD_STAGES = [
    ("unordered", ["balancer.stages=[{until: 2000, balancer: ew}, {until: 1000, balancer: ew}, {balancer: ew}]"],
     "balancer.stages[1].until is 1000, not after balancer.stages[0].until (2000)"),
    ("equal_until", ["balancer.stages=[{until: 1000, balancer: ew}, {until: 1000, balancer: ew}, {balancer: ew}]"],
     "must end in increasing order"),
    ("until_zero", ["balancer.stages=[{until: 0, balancer: ew}, {balancer: ew}]"], "balancer.stages[0].until must be > 0"),
    ("until_not_int", ["balancer.stages=[{until: soon, balancer: ew}, {balancer: ew}]"],
     "config key 'balancer.stages[0].until' expects int"),
    ("unknown_name", ["balancer.stages=[{until: 1000, balancer: nope}, {balancer: ew}]"],
     "balancer.stages[0]: unknown balancer 'nope'; valid:"),
    ("unknown_actor", ["balancer.stages=[{until: 1000, balancer: ew}, {critic: gradnorm, actor: gradnrom}]"],
     "balancer.stages[1]: unknown balancer 'gradnrom'"),
    ("after_open_ended", ["balancer.stages=[{balancer: loss_norm}, {balancer: gradnorm}]"],
     "balancer.stages[0] has no 'until' but balancer.stages[1] follows it"),
    ("missing_until", ["balancer.stages=[{until: 1000, balancer: ew}, {balancer: ew}, {balancer: gradnorm}]"],
     "balancer.stages[1] has no 'until'"),
    ("last_has_until", ["balancer.stages=[{until: 1000, balancer: ew}, {until: 2000, balancer: gradnorm}]"],
     "balancer.stages[1] is the last stage and runs to the end of training; drop its until"),
    ("unknown_key", ["balancer.stages=[{until: 1000, balancer: ew, after: 5}, {balancer: ew}]"],
     "unknown config key 'balancer.stages[0].after'; a stage has: balancer, critic, actor"),
    ("unknown_hparam", ["balancer.stages=[{until: 1000, balancer: loss_norm, kwargs: {nope: 1}}, {balancer: ew}]"],
     "balancer.stages[0].kwargs.nope: no hyperparameter of 'loss_norm'; valid:"),
    ("bad_hparam", ["balancer.stages=[{until: 1000, balancer: stall_boost, kwargs: {patience: 0}}, {balancer: ew}]"],
     "balancer.stages[0]: stall_boost: need patience >= 1"),
    ("kwargs_not_mapping", ["balancer.stages=[{until: 1000, balancer: ew, kwargs: 3}, {balancer: ew}]"],
     "config key 'balancer.stages[0].kwargs' expects a mapping"),
    ("stage_not_mapping", ["balancer.stages=[loss_norm, gradnorm]"], "config key 'balancer.stages[0]' expects a mapping"),
    ("not_a_list", ["balancer.stages=loss_norm"], "config key 'balancer.stages' expects a list of stages"),
    ("bad_yaml", ["balancer.stages=[{until: 1000"], "config key 'balancer.stages' expects a list of stages"),
    ("top_level_too", ["--balancer", "gradnorm", "balancer.stages=[{until: 1000, balancer: ew}, {balancer: ew}]"],
     "balancer.stages names every stage's balancers"),
    ("top_level_kwargs", ["balancer.kwargs.c=0.5", "balancer.stages=[{until: 1000, balancer: cagrad}, {balancer: ew}]"],
     "cannot be set beside it"),
    ("stl_sac", ["--agent", "stl_sac", "balancer.stages=[{until: 1000, balancer: ew}, {balancer: ew}]"],
     "agent 'stl_sac' trains one SAC per task and has no balancer"),
]  # fmt: skip


@pytest.mark.parametrize("args,message", [c[1:] for c in BAD_STAGES], ids=[c[0] for c in BAD_STAGES])
def test_bad_stage_lists_exit_2_with_one_line(args, message, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(SMOKE), "--run-dir", str(run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert not run_dir.exists()


def test_bad_stage_list_in_a_config_file_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(SMOKE.read_text() + "balancer:\n  stages:\n    - {balancer: ew}\n    - {balancer: gradnorm}\n")
    with pytest.raises(ConfigError, match=re.escape("balancer.stages[0] has no 'until'")):
        load_config(path)


def test_mtrl_list_balancers_shows_the_stall_boost(capsys):
    assert main(["list", "balancers"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("stall_boost "))
    for hparam in ("patience=10000", "min_gain=0.1", "max_boost=3.0", "ramp=10000", "solved=0.9"):
        assert hparam in line
