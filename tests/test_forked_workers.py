"""The worker protocol of ``envs.forked_workers``: each share runs in its own process on the
caller's objects as they were at the fork, results come back in share order, errors and dead
workers are raised in the caller, and closing reaps every worker."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from envs.forked_workers import ForkedWorkers, shared_array

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not os.path.isdir("/proc"), reason="needs fork and /proc (Linux)")


class Owner:
    def __init__(self, n: int):
        self.values = list(range(100, 100 + n))  # made before the fork: every worker has them
        self.out = shared_array((n,), np.int64)


def where(owner: Owner, share: range) -> list[tuple[int, int]]:
    """Which process ran each index of the share, and the value it saw there."""
    return [(os.getpid(), owner.values[i]) for i in share]


def write_squares(owner: Owner, share: range, offset: int) -> None:
    for i in share:
        owner.out[i] = i * i + offset


def fail_on(owner: Owner, share: range, bad: int) -> None:
    if bad in share:
        raise KeyError(f"index {bad}")


def exit_now(owner: Owner, share: range) -> None:
    if share.start > 0:
        os._exit(3)


@pytest.fixture
def workers():
    w = ForkedWorkers(Owner(7), [range(0, 2), range(2, 5), range(5, 7)])
    yield w
    w.close()


def test_each_share_runs_in_its_own_process_on_the_forked_objects(workers):
    results = workers.run(where)
    pids = [{pid for pid, _ in part} for part in results]
    assert pids[0] == {os.getpid()}  # the caller steps the first share itself
    assert all(len(p) == 1 for p in pids) and len(set.union(*pids)) == 3
    assert [v for part in results for _, v in part] == list(range(100, 107))


def test_workers_write_shared_arrays_in_place(workers):
    workers.run(write_squares, 5)
    np.testing.assert_array_equal(workers.owner.out, np.arange(7) ** 2 + 5)


def test_an_error_in_a_worker_is_raised_in_the_caller_and_the_pipes_stay_in_step(workers):
    with pytest.raises(KeyError, match="index 3"):
        workers.run(fail_on, 3)
    with pytest.raises(KeyError, match="index 0"):  # the caller's own share
        workers.run(fail_on, 0)
    workers.run(write_squares, 1)  # every worker still answers its own call
    np.testing.assert_array_equal(workers.owner.out, np.arange(7) ** 2 + 1)


def test_a_worker_that_dies_is_reported():
    w = ForkedWorkers(Owner(4), [range(0, 2), range(2, 4)])
    with pytest.raises(RuntimeError, match="env worker 1 .* exited"):
        w.run(exit_now)
    w.close()


def test_workers_ignore_sigint_and_close_reaps_them():
    """A Ctrl-C reaches the whole process group; the trainer checkpoints after it, which needs
    the workers alive. Closing ends and reaps them (no zombies)."""
    w = ForkedWorkers(Owner(3), [range(0, 1), range(1, 2), range(2, 3)])
    pids = list(w.pids)
    for pid in pids:
        os.kill(pid, signal.SIGINT)
    w.run(write_squares, 0)  # all still answer
    w.close()
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # already reaped


def test_one_share_forks_nothing():
    w = ForkedWorkers(Owner(3), [range(0, 3)])
    assert w.pids == [] and w.run(where)[0][0][0] == os.getpid()
    w.close()


def test_env_workers_zero_chooses_by_device(monkeypatch):
    """``env_workers: 0``: one worker per core on the fast path when the networks run on a GPU,
    1 when they run on the CPU (torch's threads use the cores) or off the fast path; a number
    set is kept."""
    import torch

    import mtrl.run_loop
    from envs.forked_workers import default_workers
    from mtrl.config import Config

    resolve = mtrl.run_loop.resolve_env_workers
    assert resolve(Config(device="cpu")) == 1
    assert resolve(Config(device="cpu", env_workers=3)) == 3
    monkeypatch.setattr(mtrl.run_loop, "resolve_device", lambda name: torch.device("cuda"))  # no GPU here
    assert resolve(Config(device="cuda")) == default_workers()
    assert resolve(Config(device="cuda", vector_strategy="sync")) == 1
    assert resolve(Config(device="cuda", taskset="gym:MountainCarContinuous-v0")) == 1


def test_workers_exit_when_the_caller_dies():
    """A caller killed without closing (SIGKILL, an OOM kill) leaves no worker behind: each
    sees end-of-file on its pipe and exits."""
    import subprocess
    import sys
    import time

    code = ("import os, sys; sys.path.insert(0, '.'); from envs.forked_workers import ForkedWorkers; "
            "w = ForkedWorkers(None, [range(0, 1), range(1, 2), range(2, 3)]); "
            "print(*w.pids, flush=True); os._exit(0)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout  # fmt: skip
    pids = [int(p) for p in out.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _running(pid)]
        time.sleep(0.05)
    assert not alive, f"workers {alive} outlived their caller"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
