"""What a user reads: progress without a terminal, the end-of-run summary, the messages of a
resume, the CLI's quick start, and the one-line errors with a closest-match hint."""

import io
import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from mtrl.cli import main
from mtrl.config import load_config, to_dict
from tests.conftest import REPO, SMOKE


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory):
    """A smoke run whose output goes to pipes, as in a log file: (run_dir, stdout, stderr)."""
    run_dir = tmp_path_factory.mktemp("piped") / "run"
    out = subprocess.run([sys.executable, "-m", "mtrl.cli", "train", "--config", str(SMOKE), "--run-dir", str(run_dir)],
                         capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return run_dir, out.stdout, out.stderr


def test_without_a_terminal_one_plain_line_per_log_interval(piped_run):
    _, _, err = piped_run
    assert "\r" not in err and "\x1b" not in err
    progress = [line for line in err.splitlines() if re.match(r"^\d+/3000 env steps \(\d+%\)", line)]
    # smoke: log_every 500 over 3000 env steps
    assert [int(line.split("/")[0]) for line in progress] == [500, 1000, 1500, 2000, 2500, 3000]
    assert all("env/s" in line and "upd/s" in line and "ETA" in line for line in progress)
    assert "ETA after warm-up" in progress[0]  # warm-up ends at 1000: no estimate from random steps
    assert re.search(r"ETA \d+(m\d\ds|s)", progress[-2])
    # each evaluation says it is running and then what it found
    for step in (1500, 3000):
        assert f"evaluating at {step} env steps: 10 episodes" in err
        assert re.search(rf"evaluating at {step} env steps: mean success \d\.\d\d", err)


def test_end_of_run_summary(piped_run):
    run_dir, out, _ = piped_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"run        {run_dir}" in out
    assert f"final {summary['final_success_mean']:.2f}, best {summary['best_success_mean']:.2f}" in out
    assert "wall time" in out
    for task, rate in summary["final_success"].items():
        assert re.search(rf"^{re.escape(task)} +{rate:.2f} ", out, re.M), task
    assert out.strip().splitlines()[-1] == f"tensorboard --logdir {run_dir / 'tb'}"


def test_mtrl_eval_shows_its_progress(piped_run, capsys):
    run_dir = piped_run[0]
    code, out, err = _run(["eval", str(run_dir), "--episodes", "1"], capsys)
    assert code == 0
    assert f"evaluating {run_dir}: 10 episodes" in err  # said at the start, before any episode ends
    assert re.search(rf"evaluating {re.escape(str(run_dir))}: mean success \d\.\d\d", err)
    assert out.splitlines()[0].startswith("task")


def _snapshot(run_dir) -> dict:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in run_dir.rglob("*")}


def test_resuming_a_finished_run_says_so_and_touches_nothing(piped_run, capsys):
    run_dir = piped_run[0]
    before = _snapshot(run_dir)
    code, out, err = _run(["train", "--resume", str(run_dir)], capsys)
    assert code == 0
    assert err.strip() == (f"mtrl: {run_dir} finished at 3000 env steps; nothing to do. To train on, extend it with "
                           f"`mtrl train --resume {run_dir} total_env_steps=M` (M > 3000)")  # fmt: skip
    code, out, err = _run(["train", "--resume", str(run_dir), "total_env_steps=2000"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "total_env_steps=2000 is not beyond the 3000 env steps" in err and "total_env_steps=M" in err
    assert _snapshot(run_dir) == before


def test_extending_a_run_records_the_new_total_in_config_yaml(piped_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(piped_run[0], run_dir)
    code, out, err = _run(["train", "--resume", str(run_dir), "total_env_steps=3500"], capsys)
    assert code == 0, err
    assert "total_env_steps 3000 -> 3500" in err
    assert json.loads((run_dir / "summary.json").read_text())["env_steps"] == 3500
    from tests.test_train_smoke import scalar_steps

    # TensorBoard keeps the evaluation at 3000 that the first leg ended with
    assert scalar_steps(run_dir)["eval/success_rate_mean"] == [1500, 3000, 3500]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved == to_dict(load_config(SMOKE, {"total_env_steps": 3500}))
    assert not list(run_dir.glob(".*.tmp"))
    # now finished at 3500, and the message says so
    code, _, err = _run(["train", "--resume", str(run_dir)], capsys)
    assert code == 0 and "finished at 3500 env steps" in err


def test_cli_starts_without_torch_metaworld_or_gymnasium():
    """``--help``, ``mtrl list`` and an unknown key answer at once: none of them waits for torch."""
    heavy = "[m for m in ('torch', 'metaworld', 'gymnasium') if m in sys.modules]"
    code = f"import mtrl.cli, sys; assert not {heavy}, {heavy}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    code = f"import mtrl.cli, sys; assert mtrl.cli.main(['train', '--config', {str(SMOKE)!r}, 'bogus=1']) == 2; " \
           f"assert not {heavy}, {heavy}"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and "unknown config key 'bogus'" in out.stderr, out.stderr


@pytest.mark.parametrize(
    "override,hint",
    [
        ("total_steps=10", "did you mean 'total_env_steps'?"),
        ("sac.hiden_sizes=[8]", "did you mean 'sac.hidden_sizes'?"),
        ("balancer=cagrd", "did you mean 'cagrad'?"),
        ("taskset=MT100", "did you mean 'MT10'?"),
        ("taskset=MT1:reach-v2", "did you mean 'reach-v3'?"),
    ],
)
def test_unknown_names_get_the_closest_match(override, hint, tmp_path, capsys):
    code, _, err = _run(["train", "--config", str(SMOKE), "--run-dir", str(tmp_path / "run"), override], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert hint in err and "valid:" in err
    assert not (tmp_path / "run").exists()


def test_device_cuda_without_cuda_is_one_line_exit_2(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = _run(["train", "--config", str(SMOKE), "--run-dir", str(tmp_path / "run"), "device=cuda"], capsys)
    assert code == 2
    assert err.strip() == "mtrl: error: device=cuda was asked for but torch sees no CUDA device; use device=cpu or auto"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["train --resume", "eval"])
def test_a_missing_run_directory_is_named_as_missing(command, tmp_path, capsys):
    code, _, err = _run([*command.split(), str(tmp_path / "nope")], capsys)
    assert code == 2 and err.strip() == f"mtrl: error: {tmp_path / 'nope'} does not exist"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_rate_and_eta_come_from_training_after_the_warm_up(monkeypatch):
    """The warm-up's random steps are not timed; the estimate starts at its end."""
    from types import SimpleNamespace

    from mtrl import progress

    for stream in (io.StringIO(), _Terminal()):
        clock = iter([2.0, 12.0, 22.0, 32.0])  # at 2000 (the warm-up's end), 3000, 4000, 5000 env steps
        monkeypatch.setattr(progress, "time", SimpleNamespace(time=lambda: next(clock)))
        p = progress.TrainProgress(total=10000, start=0, warmup=2000, stream=stream)
        for steps in (1000, 2000, 3000, 4000, 5000):
            p.advance(1000)
            p.interval(steps, env_rate=0.0, update_rate=0.0, success=None)
        assert p.steady_rate() == pytest.approx(100.0)  # (5000 - 2000) steps over 30 s
        p.close()
        text = stream.getvalue()
        assert "ETA 50s" in text  # 5000 steps left at 100 steps/s
        assert "step/s" not in text  # tqdm's own rate is not shown


def test_compile_time_is_left_out_of_the_rate(monkeypatch):
    """The first updates of a compiled run compile for a minute once: excluded, the rate is
    that of training."""
    from types import SimpleNamespace

    from mtrl import progress

    clock = iter([2.0, 72.0, 82.0])  # 2000 (warm-up's end); 3000 after 60 s of compiling; 4000
    monkeypatch.setattr(progress, "time", SimpleNamespace(time=lambda: next(clock)))
    p = progress.TrainProgress(total=10000, start=0, warmup=2000, stream=io.StringIO())
    p.interval(2000, env_rate=0.0, update_rate=0.0, success=None)
    p.exclude(60.0)
    for steps in (3000, 4000):
        p.interval(steps, env_rate=0.0, update_rate=0.0, success=None)
    assert p.steady_rate() == pytest.approx(100.0)  # 2000 steps over 80 s - 60 s


def test_plain_evaluation_progress_lines(monkeypatch):
    from types import SimpleNamespace

    from mtrl import progress

    clock = iter([0.0, 0.0, 10.0, 40.0, 41.0, 50.0])
    monkeypatch.setattr(progress, "time", SimpleNamespace(time=lambda: next(clock)))
    stream = io.StringIO()
    shown = progress.EvalProgress("evaluating at 100 env steps", stream)
    for done in (0, 3, 6, 9):
        shown(done, 10)
    shown.finish(0.25)
    assert stream.getvalue().splitlines() == [
        "evaluating at 100 env steps: 10 episodes",
        "evaluating at 100 env steps: 6/10 episodes (40s)",
        "evaluating at 100 env steps: mean success 0.25 (50s)",
    ]
