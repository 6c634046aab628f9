"""Worker processes forked from an object that holds its sub-envs, each running that object's
methods on its own share of them, with arrays in shared memory.

Why fork: the workers start as copies of the process that built the envs, after they are
built, so each holds the very same env objects in the same state (models, goal sets, RNGs).
Nothing is rebuilt or pickled, which is what keeps them transition-exact (Meta-World's
construction draws from numpy's global RNG, so a rebuild elsewhere is not the same env). A
worker then imports nothing and runs no torch: only numpy and MuJoCo on the envs it owns.

Protocol: ``run(fn, *args)`` sends ``(fn, args)`` down each worker's pipe (``fn`` is a plain
function, pickled by name), runs ``fn(owner, shares[0], *args)`` in the calling process meanwhile
(the caller steps a share too: W workers are W processes, the caller one of them), then collects
every worker's reply. Results come back pickled; bulk data (observations, rewards) is written
by the workers into arrays made by ``shared_array`` before the fork.

Signals: the workers ignore SIGINT and SIGTERM. A Ctrl-C or a scheduler's SIGTERM reaches
the whole process group; the trainer stops at its next safe point and checkpoints, which asks
the workers for their envs' RNG states, so they must still be there. They exit when ``close``
asks them to or, if the caller dies, when their pipe reaches end-of-file.
"""

from __future__ import annotations

import gc
import mmap
import os
import pickle
import signal
import time
import traceback
import warnings
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection, Pipe
from typing import Any

import numpy as np


def shared_array(shape: tuple[int, ...], dtype) -> np.ndarray:
    """A zeroed array in anonymous shared memory: writes by a forked worker are seen by the
    process it was forked from, and the other way round."""
    dtype = np.dtype(dtype)
    size = max(1, int(np.prod(shape)) * dtype.itemsize)
    return np.frombuffer(mmap.mmap(-1, size), dtype=dtype, count=int(np.prod(shape))).reshape(shape)


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity, as a scheduler's cgroup sets it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class ForkedWorkers:
    """``len(shares)`` processes stepping ``owner``'s sub-envs: the caller runs ``shares[0]``,
    one forked worker each of the others. With one share there are no workers and ``run`` is a
    plain call."""

    def __init__(self, owner: Any, shares: list[range]):
        self.shares = shares
        self.owner = owner
        self._conns: list[Connection] = []
        self.pids: list[int] = []
        if len(shares) > 1 and not hasattr(os, "fork"):
            raise ValueError(f"{len(shares)} env workers need os.fork, which this platform lacks; use env_workers=1")
        for _ in shares[1:]:
            ours, theirs = Pipe()
            with warnings.catch_warnings():
                # Python 3.12+ warns on forking a process with threads (torch's pools); the
                # worker touches no lock those threads hold: it runs numpy and MuJoCo only
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # the worker: never returns
                ours.close()
                _serve(owner, theirs, [*self._conns])
            theirs.close()
            self._conns.append(ours)
            self.pids.append(pid)
        self._finalizer = weakref.finalize(self, _stop, self._conns, self.pids)

    def run(self, fn: Callable, *args) -> list:
        """``fn(owner, share, *args)`` for every share, in parallel; the results in share order.
        An error in any share is raised here once every share has finished (so the pipes stay
        in step); the caller's own first."""
        for conn, share in zip(self._conns, self.shares[1:], strict=True):
            conn.send((fn, share, args))
        results: list = [None] * len(self.shares)
        errors: list[BaseException] = []
        try:
            results[0] = fn(self.owner, self.shares[0], *args)
        except BaseException as e:  # KeyboardInterrupt too: the workers' replies are still collected
            errors.append(e)
        for w, conn in enumerate(self._conns, start=1):
            try:
                ok, value = conn.recv()
            except (EOFError, OSError):
                errors.append(RuntimeError(f"env worker {w} (pid {self.pids[w - 1]}) exited; the envs cannot go on"))
                continue
            if ok:
                results[w] = value
            else:
                errors.append(value)
        if errors:
            raise errors[0]
        return results

    def close(self) -> None:
        self._finalizer()


def _serve(owner: Any, conn: Connection, inherited: list[Connection]) -> None:
    """A worker's loop; ends the process."""
    status = 0
    try:
        # other workers' pipe ends came along with the fork: holding them would keep those
        # workers from seeing end-of-file when the caller dies
        for other in inherited:
            other.close()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # the caller's unreachable cycles came along too: collecting them here would run their
        # finalizers (another env's workers told to close) in the wrong process
        gc.disable()
        while True:
            try:
                message = conn.recv()
            except EOFError:
                break
            if message is None:
                break
            fn, share, args = message
            try:
                reply = (True, fn(owner, share, *args))
            except Exception as e:  # the caller raises it
                if hasattr(e, "add_note"):  # Python 3.11+
                    e.add_note(f"in env worker pid {os.getpid()}")
                reply = (False, e)
            try:
                conn.send(reply)
            except (pickle.PicklingError, TypeError, AttributeError):  # an exception that does not pickle
                conn.send((False, RuntimeError(f"in env worker pid {os.getpid()}: {reply[1]!r}")))
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        os._exit(status)  # no atexit handlers, no flushing of buffers copied from the caller


def _stop(conns: list[Connection], pids: list[int]) -> None:
    for conn in conns:
        try:
            conn.send(None)
            conn.close()
        except OSError:  # already gone
            pass
    deadline = time.monotonic() + 10.0
    for pid in pids:
        try:
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:  # stuck: it has nothing left to save
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.001)
        except ChildProcessError:  # reaped already
            pass
