"""Host time of MGDA's solve and of imgrad's and cagrad's host solves: this tree against a base revision.

    PYTHONPATH=. python scripts/bench_host_solvers.py [--base REV] [--calls 200] [--k 10 50]

Inputs: float32 gradients G (K x 5000) = shared component + rank-3 part + noise, task norms
spread 5-20x, drifting slowly from call to call as in training (consecutive Gram matrices are
close, so the warm start of the active set sees realistic supports); the float64 Gram matrix
is formed as the balancers form it. Timed, per call:

* ``min_norm_weights`` -- the base revision's, always cold (a start is not passed to it), this
  tree's cold, this tree's started from the previous call's support;
* imgrad's and cagrad's host solve -- their ``solve``, which runs inside ``host_solve()``, read
  from the accounting (``HOST.solve_s``) around ``balance()``; for the base, this tree's
  balancers with the base revision's ``min_norm_weights`` and ``conflict_averse_update``
  (imgrad cold and started from the previous call's MGDA support).

Old and new alternate call by call in one process (the machine's load hits both alike), each
call is timed as the mean of ``--repeat`` back-to-back runs, and the report gives medians over
calls, in ms, with the ratio new / old.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
import types
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

import mtrl.balancers.cagrad as cagrad_module
import mtrl.balancers.imgrad as imgrad_module
from mtrl.balancers import Balancer, make_balancer, simplex_solvers
from mtrl.balancers.host_solver import host_gram
from mtrl.balancers.imgrad import IMGrad
from mtrl.bench_counters import HOST

ROOT = Path(__file__).resolve().parents[1]


# where the solvers lived: revisions before the host-solver base kept them in _simplex.py
SOLVER_PATHS = ("mtrl/balancers/simplex_solvers.py", "mtrl/balancers/_simplex.py")


def base_solvers(rev: str) -> types.ModuleType:
    """The base revision's solver module, imported as its own module."""
    for path in SOLVER_PATHS:
        show = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, text=True, capture_output=True)
        if show.returncode == 0:
            break
    else:
        print(f"bench_host_solvers.py: revision {rev!r} has none of {', '.join(SOLVER_PATHS)}", file=sys.stderr)
        sys.exit(2)
    spec = importlib.util.spec_from_loader(f"solvers_{rev}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(show.stdout, f"{rev}:{path}", "exec"), module.__dict__)
    return module


def gradient_sequence(k: int, calls: int, seed: int, p: int = 5000, drift: float = 0.02) -> list[torch.Tensor]:
    """``calls`` float32 [K, P] gradients: shared + rank-3 + noise, norms spread 5-20x, each a
    small random step (``drift`` of each task's norm) from the previous one."""
    rng = np.random.default_rng(seed)
    shared, basis = rng.standard_normal(p), rng.standard_normal((3, p))
    g = 0.5 * shared + rng.standard_normal((k, 3)) @ basis + 0.3 * rng.standard_normal((k, p))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    scale = np.exp(rng.uniform(0.0, np.log(rng.uniform(5.0, 20.0)), k))[:, None]
    out = []
    for _ in range(calls):
        g = g + drift * rng.standard_normal((k, p)) / np.sqrt(p)
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        out.append(torch.tensor(g * scale, dtype=torch.float32))
    return out


def gram_on_host(g: torch.Tensor) -> np.ndarray:
    m = host_gram(g, torch.ones(g.shape[0]))[1]
    assert m is not None  # the inputs are finite
    return m


def per_call(fn: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def host_s(
    balancer: Balancer, g: torch.Tensor, losses: torch.Tensor, repeat: int, support: np.ndarray | None = None
) -> float:
    """Seconds inside ``host_solve()`` per ``balance()`` call (imgrad: each repeat started from
    the same MGDA support)."""
    total = 0.0
    for _ in range(repeat):
        if isinstance(balancer, IMGrad):
            balancer.support = support
        before = HOST.solve_s
        balancer.balance(g, losses)
        total += HOST.solve_s - before
    return total / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="HEAD", help="the revision to compare against (default HEAD)")
    parser.add_argument("--calls", type=int, default=200, help="calls per K (default 200)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per call and solver (default 5)")
    parser.add_argument("--k", type=int, nargs="+", default=[10, 50])
    args = parser.parse_args()
    torch.set_num_threads(1)
    old = base_solvers(args.base)
    new_mnw, new_cau = imgrad_module.min_norm_weights, imgrad_module.conflict_averse_update

    def use(base: bool) -> None:
        """Point IMGrad and CAGrad at the base revision's solvers or at this tree's (their other
        code is this tree's either way)."""
        if base:

            def old_min_norm(m: np.ndarray, start: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
                return old.min_norm_weights(m)  # always cold: the base may take no start

            imgrad_module.min_norm_weights = old_min_norm
            imgrad_module.conflict_averse_update = cagrad_module.conflict_averse_update = old.conflict_averse_update
        else:
            imgrad_module.min_norm_weights, imgrad_module.conflict_averse_update = new_mnw, new_cau
            cagrad_module.conflict_averse_update = new_cau

    print(f"base {args.base} vs this tree; {args.calls} calls per K, medians in ms (new / old)")
    for k in args.k:
        grads = gradient_sequence(k, args.calls, seed=k)
        losses = torch.ones(k)
        times: dict[str, list[float]] = {
            key: []
            for key in ("mgda_old", "mgda_cold", "mgda_warm", "imgrad_old", "imgrad_cold", "imgrad_warm")
            + ("cagrad_old", "cagrad_new")
        }
        imgrad, cagrad = make_balancer("imgrad", num_tasks=k, c=0.5), make_balancer("cagrad", num_tasks=k, c=0.5)
        assert isinstance(imgrad, IMGrad)
        support = None
        for g in grads:
            m = gram_on_host(g)
            times["mgda_old"].append(per_call(partial(old.min_norm_weights, m), args.repeat))
            times["mgda_cold"].append(per_call(partial(simplex_solvers.min_norm_weights, m), args.repeat))
            times["mgda_warm"].append(per_call(partial(simplex_solvers.min_norm_weights, m, support), args.repeat))
            use(True)
            times["imgrad_old"].append(host_s(imgrad, g, losses, args.repeat))
            times["cagrad_old"].append(host_s(cagrad, g, losses, args.repeat))
            use(False)
            times["imgrad_cold"].append(host_s(imgrad, g, losses, args.repeat))
            times["imgrad_warm"].append(host_s(imgrad, g, losses, args.repeat, support))
            times["cagrad_new"].append(host_s(cagrad, g, losses, args.repeat))
            w, ok = simplex_solvers.min_norm_weights(m, support)
            support = w > 0 if ok else None
        med = {key: 1e3 * float(np.median(v)) for key, v in times.items()}
        for what in ("mgda", "imgrad"):
            base = med[f"{what}_old"]
            cold, warm = med[f"{what}_cold"], med[f"{what}_warm"]
            print(
                f"K={k:3d} {what:6s}  old {base:.3f}   new cold {cold:.3f} ({cold / base:.2f})"
                f"   new warm {warm:.3f} ({warm / base:.2f})"
            )
        base, new = med["cagrad_old"], med["cagrad_new"]
        print(f"K={k:3d} cagrad  old {base:.3f}   new {new:.3f} ({new / base:.2f})")


if __name__ == "__main__":
    main()
