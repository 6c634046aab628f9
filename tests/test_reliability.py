"""Signals, kills, non-finite values, a full disk and damaged checkpoints: a run is never lost
beyond its last checkpoint, and resuming goes on without gaps or duplicates."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from mtrl.checkpoint import list_checkpoints
from mtrl.cli import main
from tests.conftest import REPO, SMOKE
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.test_train_smoke import scalar_steps


def _start(run_dir, *overrides, prelude: str = ""):
    """`mtrl train` on the smoke preset in a subprocess (``prelude``: Python run first)."""
    code = f"{prelude}\nimport sys\nfrom mtrl.cli import main\nsys.exit(main(sys.argv[1:]))"
    argv = ["train", "--config", str(SMOKE), "--run-dir", str(run_dir), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _wait_for(predicate, proc, timeout=120.0):
    end = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        assert time.time() < end, "timed out"
        time.sleep(0.01)


def _assert_continued_cleanly(run_dir, total=3000):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] == total
    steps = [json.loads(line)["step"] for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == total
    for tag, tag_steps in scalar_steps(run_dir).items():
        assert tag_steps == sorted(set(tag_steps)), f"{tag}: {tag_steps}"


def test_sigterm_checkpoints_exits_0_and_resumes(tmp_path):
    run = tmp_path / "run"
    proc = _start(run)
    _wait_for(lambda: list_checkpoints(run), proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"continue with: mtrl train --resume {run}" in err and "Traceback" not in err
    stopped_at = torch.load(list_checkpoints(run)[-1], weights_only=False)["counters"]["env_steps"]
    assert 1000 <= stopped_at < 3000
    assert main(["train", "--resume", str(run)]) == 0
    _assert_continued_cleanly(run)


def test_sigkill_while_writing_a_checkpoint_loses_only_that_checkpoint(tmp_path):
    """The checkpoint write is held open (torch.save patched to pause after writing) and the
    process is SIGKILLed mid-write: the torn temporary file is never taken for a checkpoint,
    the previous one is intact, and the resumed run finishes cleanly."""
    run = tmp_path / "run"
    prelude = (
        "import time, mtrl.checkpoint as c\n"
        "_save = c.torch.save\n"
        "def slow_save(*a, **k):\n"
        "    _save(*a, **k)\n"
        "    if c.list_checkpoints(a[1].name.rsplit('/checkpoints/', 1)[0]): time.sleep(60)\n"
        "c.torch.save = slow_save\n"
    )
    proc = _start(run, prelude=prelude)
    _wait_for(lambda: list((run / "checkpoints").glob(".*.tmp")) and list_checkpoints(run), proc)
    proc.kill()
    proc.wait()
    assert [p.name for p in list_checkpoints(run)] == ["ckpt_000000001000.pt"]
    assert list((run / "checkpoints").glob(".*.tmp")), "the torn file should still be there"
    assert main(["train", "--resume", str(run)]) == 0
    assert not list((run / "checkpoints").glob(".*.tmp"))
    _assert_continued_cleanly(run)


def test_sigkill_at_a_random_moment_then_resume(tmp_path):
    run = tmp_path / "run"
    proc = _start(run, "checkpoint_every=500")
    _wait_for(lambda: list_checkpoints(run), proc)
    time.sleep(random.Random(os.getpid()).uniform(0.2, 3.0))
    proc.kill()
    proc.wait()
    assert main(["train", "--resume", str(run)]) == 0
    _assert_continued_cleanly(run)


def _trainer(run_dir, **overrides):
    from mtrl.config import load_config
    from mtrl.run_loop import start_run
    from mtrl.trainer import Trainer

    cfg = load_config(SMOKE, {"total_env_steps": 1500, "eval_every": 10**6, **overrides})
    return start_run(cfg, run_dir, Trainer)


def _poison_critic(trainer, bad_calls):
    """Make the critic loss NaN on the given (0-based) calls."""
    calls = {"n": 0}
    critic_loss = trainer.agent.critic_loss

    def poisoned(*args):
        out = critic_loss(*args)
        calls["n"] += 1
        return out * float("nan") if calls["n"] - 1 in bad_calls else out

    trainer.agent.critic_loss = poisoned


def _optimizer_states(trainer) -> list[str]:
    update = trainer.update
    return [json.dumps(str(o.state_dict()["state"])) for o in [update.critic.optimizer, update.actor.optimizer, update.alpha_opt]]


@pytest.mark.parametrize("balancer", ["ew", "nash_mtl", "famo"])
def test_non_finite_updates_are_skipped_leaving_parameters_and_optimizers_untouched(tmp_path, balancer):
    """Decided on the device (no host read): parameters, optimizer states, targets, temperatures
    and balancer states stay as they were; the count is read at log and checkpoint time."""
    trainer = _trainer(tmp_path / "run", balancer=balancer)
    _poison_critic(trainer, bad_calls={10, 11, 12})
    update, seen = trainer.update_once, []

    def watched_update():
        before = {k: v.clone() for k, v in trainer.agent.state_dict().items()}
        opt_before = _optimizer_states(trainer)
        balancers_before = json.dumps(str([b.state_dict() for b in trainer.update.balancers.values()]))
        skipped_before = int(trainer.update.nonfinite.counts[0])
        update()
        if int(trainer.update.nonfinite.counts[0]) > skipped_before:
            assert all(torch.equal(before[k], v) for k, v in trainer.agent.state_dict().items())
            assert opt_before == _optimizer_states(trainer)
            assert balancers_before == json.dumps(str([b.state_dict() for b in trainer.update.balancers.values()]))
            seen.append(trainer.counters.updates - 1)

    trainer.update_once = watched_update
    trainer.train()
    assert seen == [10, 11, 12]
    assert trainer.counters.nonfinite_skipped == 3 and trainer.counters.nonfinite_in_row == 0
    assert trainer.counters.updates == 50  # 50 vector steps after the warm-up: 50 updates tried, 3 skipped
    assert all(torch.isfinite(v).all() for v in trainer.agent.state_dict().values())
    ea = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"scalars": 0})
    ea.Reload()
    assert [e.value for e in ea.Scalars("train/nonfinite_skipped")][-1] == 3


def test_too_many_non_finite_updates_in_a_row_stop_the_run_with_checkpoints_intact(tmp_path, monkeypatch, capsys):
    import mtrl.run_loop

    run = tmp_path / "run"
    trainer = _trainer(run, checkpoint_every=500, max_nonfinite_in_row=5)
    _poison_critic(trainer, bad_calls=set(range(20, 10**6)))
    monkeypatch.setattr(mtrl.run_loop, "start_run", lambda cfg, run_dir, trainer_class: trainer)  # the CLI imports it
    assert main(["train", "--config", str(SMOKE), "--run-dir", str(run)]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("mtrl: error")]
    assert len(errors) == 1 and "updates in a row had non-finite" in errors[0] and "Traceback" not in err
    assert "max_nonfinite_in_row=5" in errors[0]
    last = torch.load(list_checkpoints(run)[-1], weights_only=False)
    assert all(torch.isfinite(v).all() for v in last["agent"].values())
    assert not (run / "summary.json").exists()


def test_full_disk_gives_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    import mtrl.checkpoint
    import mtrl.run_loop

    run = tmp_path / "run"
    trainer = _trainer(run, checkpoint_every=500)
    save = mtrl.checkpoint.torch.save

    def save_until_full(obj, f):
        if list_checkpoints(run):  # the second checkpoint meets a full disk half-way
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        save(obj, f)

    monkeypatch.setattr(mtrl.checkpoint.torch, "save", save_until_full)
    monkeypatch.setattr(mtrl.run_loop, "start_run", lambda cfg, run_dir, trainer_class: trainer)  # the CLI imports it
    assert main(["train", "--config", str(SMOKE), "--run-dir", str(run)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mtrl: error")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "ckpt_000000000500.pt is intact" in errors[0]
    assert [p.name for p in list_checkpoints(run)] == ["ckpt_000000000500.pt"]
    assert not list((run / "checkpoints").glob(".*.tmp"))
    torch.load(list_checkpoints(run)[-1], weights_only=False)


def test_corrupt_checkpoint_exits_2_naming_it(smoke_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    latest = list_checkpoints(run)[-1]
    latest.write_bytes(b"not a checkpoint")
    # the run is finished: only an extension (or mtrl eval) reads its checkpoint
    for argv in (["train", "--resume", str(run), "total_env_steps=3500"], ["eval", str(run)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert latest.name in err and "delete it to resume from ckpt_000000002000.pt" in err
        assert len(err.strip().splitlines()) == 1


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_over(smoke_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    for ckpt in list_checkpoints(run):
        ckpt.unlink()
    (run / "summary.json").unlink()
    assert main(["train", "--resume", str(run)]) == 0
    _assert_continued_cleanly(run)
    steps = [json.loads(line)["step"] for line in (run / "eval.jsonl").read_text().splitlines()]
    assert steps == [1500, 3000]


# --- how soon a stop signal is answered ------------------------------------------------------------
def _interrupt():
    """SIGINT to this process, as Ctrl-C sends it: the trainer's own handler answers it."""
    os.kill(os.getpid(), signal.SIGINT)


def _train(trainer) -> dict:
    try:
        return trainer.train()
    except KeyboardInterrupt:  # as a failure of this test, not an interrupt of the whole session
        pytest.fail("SIGINT reached Python's default handler: the trainer was not catching it")


def _eval_steps(run_dir) -> list[int]:
    path = run_dir / "eval.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.exists() else []


def test_a_stop_when_an_evaluation_is_due_skips_it_and_the_resume_runs_it_once(smoke_run, tmp_path):
    """SIGINT during the updates of the step where an evaluation is due: the run checkpoints
    and exits without evaluating; the resume runs that evaluation first, at its own step. The
    stop stands between two episodes, so the resumed run is the uninterrupted one (smoke_run)."""
    from mtrl.config import load_config
    from mtrl.run_loop import start_run
    from mtrl.trainer import Trainer

    run = tmp_path / "run"
    trainer = start_run(load_config(SMOKE), run, Trainer)  # eval_every 1500
    updates = trainer._updates

    def updates_then_interrupt():
        updates()
        if trainer.counters.env_steps == 1500:
            _interrupt()

    trainer._updates = updates_then_interrupt
    assert _train(trainer) == {"stopped_by": "SIGINT", "env_steps": 1500}
    assert _eval_steps(run) == []  # the evaluation due at 1500 did not run before the exit
    state = torch.load(list_checkpoints(run)[-1], weights_only=False)
    assert state["counters"]["env_steps"] == 1500 and state["counters"]["next_eval"] == 1500
    assert main(["train", "--resume", str(run)]) == 0
    _assert_continued_cleanly(run)
    assert _eval_steps(run) == [1500, 3000]
    assert scalar_steps(run)["eval/success_rate_mean"] == [1500, 3000]
    assert (run / "eval.jsonl").read_text() == (smoke_run / "eval.jsonl").read_text()


@pytest.mark.parametrize("total, at", [(2000, 1500), (2000, 2000)])  # a periodic and the final evaluation
def test_a_stop_during_an_evaluation_abandons_it_and_the_resume_runs_it_whole(total, at, tmp_path):
    """SIGINT on the evaluation's third vector step: it takes no further step, nothing of it is
    logged, and the resume runs it whole at its own step."""
    from mtrl.config import load_config
    from mtrl.run_loop import start_run
    from mtrl.trainer import Trainer

    run = tmp_path / "run"
    trainer = start_run(load_config(SMOKE, {"total_env_steps": total}), run, Trainer)
    act, calls = trainer.agent.act, []

    def act_and_interrupt(obs, deterministic):
        if deterministic and trainer.counters.env_steps == at:
            calls.append(len(calls))
            if len(calls) == 3:
                _interrupt()
        return act(obs, deterministic)

    trainer.agent.act = act_and_interrupt
    assert _train(trainer) == {"stopped_by": "SIGINT", "env_steps": at}
    assert len(calls) == 3
    assert _eval_steps(run) == ([1500] if at > 1500 else [])
    assert torch.load(list_checkpoints(run)[-1], weights_only=False)["counters"]["env_steps"] == at
    assert not (run / "summary.json").exists()
    assert main(["train", "--resume", str(run)]) == 0
    _assert_continued_cleanly(run, total)
    assert _eval_steps(run) == [1500, total]


@pytest.mark.parametrize("final", [False, True])
def test_a_stop_during_a_checkpoint_write_writes_no_second_one(final, tmp_path, monkeypatch):
    """SIGINT while the checkpoint at 1000 is written: the run exits on it, without writing the
    same state again. While the final one is written (after the final evaluation): the run
    finishes, summary included, as it would have."""
    import mtrl.run_loop
    from mtrl.config import load_config
    from mtrl.run_loop import start_run
    from mtrl.trainer import Trainer

    run = tmp_path / "run"
    trainer = start_run(load_config(SMOKE, {"total_env_steps": 1500}), run, Trainer)  # checkpoints at 1000 and 1500
    save, written = mtrl.run_loop.save_checkpoint, []

    def save_and_interrupt(run_dir, env_steps, state, keep):
        written.append(env_steps)
        out = save(run_dir, env_steps, state, keep)
        if env_steps == (1500 if final else 1000) and written.count(env_steps) == 1:
            _interrupt()
        return out

    monkeypatch.setattr(mtrl.run_loop, "save_checkpoint", save_and_interrupt)
    result = _train(trainer)
    if final:
        assert result["env_steps"] == 1500 and "stopped_by" not in result
        assert written == [1000, 1500] and (run / "summary.json").exists()
    else:
        assert result == {"stopped_by": "SIGINT", "env_steps": 1000}
        assert written == [1000] and not (run / "summary.json").exists()
    assert [p.name for p in list_checkpoints(run)][-1] == f"ckpt_00000000{written[-1]:04d}.pt"
