"""What ``mtrl bench`` counts inside the balancers: host crossings and host-solve time.

The host solvers (:mod:`mtrl.balancers.host_solver`) report here; the bench reads the counts
around an update. Kept apart from :mod:`mtrl.bench` so that the balancers need not import the
bench (and its trainer, envs and profiler) to be counted.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class HostAccounting:
    """Device-to-host crossings, seconds inside host solves, and whether a host solve is running
    (the bench's operation counter skips torch operations on host tensors made there: they are
    host work, not device kernels)."""

    syncs: int = 0
    solve_s: float = 0.0
    depth: int = 0


HOST = HostAccounting()


@contextlib.contextmanager
def on_host() -> Iterator[None]:
    """Marks host work (a device-to-host copy, a solve) so the operation counter skips it."""
    HOST.depth += 1
    try:
        yield
    finally:
        HOST.depth -= 1


@contextlib.contextmanager
def host_solve() -> Iterator[None]:
    """Marks host-side solver work (numpy, or torch on host copies) and adds its time to
    ``HOST.solve_s``."""
    start = time.perf_counter()
    with on_host():
        yield
    HOST.solve_s += time.perf_counter() - start
