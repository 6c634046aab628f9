"""Bad input exits 2 with one clear line on stderr, and leaves no run directory behind."""

import subprocess
import sys

import pytest

from mtrl.cli import main
from tests.conftest import SMOKE


def _run(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    return code, capsys.readouterr().err


BAD_OVERRIDES = [
    (["foo=1"], "unknown config key 'foo'"),
    (["seed=abc"], "config key 'seed' expects int"),
    (["sac.hidden_sizes=[32,x]"], "sac.hidden_sizes"),
    (["sac.gamma=high"], "expects float"),
    (["batch_size=85"], "not divisible by the 10 tasks"),
    (["batch_size=0"], "must be > 0"),
    (["total_env_steps=-5"], "must be > 0"),
    (["taskset=MT11"], "unknown taskset 'MT11'; did you mean 'MT10'? valid: MT10"),
    (["taskset=MT1:no-such-v3"], "unknown Meta-World task"),
    (["balancer=nope"], "unknown balancer 'nope'; valid:"),
    (["device=tpu"], "valid: auto, cpu, cuda"),
    (["vector_strategy=threads"], "valid: auto, sync, async"),
    (["compile=maybe"], "valid: auto, true, false"),
    (["eval_envs_per_task=0"], "'eval_envs_per_task' must be > 0"),
    (["vector_strategy=sync", "eval_envs_per_task=5"], "eval_envs_per_task 5 needs the fast path"),
    (["env_workers=-1"], "'env_workers' must be >= 0"),
    (["vector_strategy=async", "env_workers=2"], "env_workers 2 needs the fast path"),
    (["seed"], "is not key=value"),
    (["balancer=static", "balancer.kwargs.weights=[1,2,3]"], "weights has 3 entries but the task set has 10 tasks"),
    (["balancer=static", "balancer.kwargs.weights={reach-v2: 2}"], "weights name task 'reach-v2'"),
    (["balancer=static", "balancer.kwargs.weights={push-v3: -1}"], "the weight of push-v3 must be a finite number >= 0"),
]


@pytest.mark.parametrize("overrides,message", BAD_OVERRIDES, ids=[o[0][-1] for o in BAD_OVERRIDES])
def test_bad_override_exits_2_with_one_line(overrides, message, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, err = _run(["train", "--config", str(SMOKE), "--run-dir", str(run_dir), *overrides], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
    assert "Traceback" not in err
    assert not run_dir.exists()


def test_bad_config_file_values_exit_2(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("taskset: MT10\nsac:\n  hidden_sizes: 400\n")
    code, err = _run(["train", "--config", str(cfg), "--run-dir", str(tmp_path / "run")], capsys)
    assert code == 2 and "sac.hidden_sizes" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--config", "no/such.yaml"], "not found"),
        (["train"], "needs --config"),
        (["train", "--resume", "no/such/run"], "no/such/run does not exist"),
        (["eval", "no/such/run"], "no/such/run does not exist"),
        (["list", "things"], "invalid choice"),
    ],
)
def test_bad_command_line_exits_2(argv, message, capsys):
    code, err = _run(argv, capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_existing_run_directory_is_not_overwritten(smoke_run, capsys):
    before = (smoke_run / "config.yaml").read_text()
    code, err = _run(["train", "--config", str(SMOKE), "--run-dir", str(smoke_run)], capsys)
    assert code == 2 and "--resume" in err
    assert (smoke_run / "config.yaml").read_text() == before


def test_resume_rejects_changed_settings(smoke_run, capsys):
    code, err = _run(["train", "--resume", str(smoke_run), "seed=5"], capsys)
    assert code == 2 and "cannot change seed" in err and "only total_env_steps=N and env_workers=N" in err


def test_console_script_exit_code():
    """The installed entry point, end to end: the exit status a shell sees is 2."""
    out = subprocess.run([sys.executable, "-m", "mtrl.cli", "train", "--config", str(SMOKE), "bogus=1"],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip() == out.stderr.strip().splitlines()[0]
    assert "unknown config key 'bogus'" in out.stderr
