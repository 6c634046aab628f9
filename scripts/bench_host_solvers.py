"""Host time of MGDA's solve and of imgrad's and cagrad's host solves: this tree against a base revision.

    PYTHONPATH=. python scripts/bench_host_solvers.py [--base REV] [--calls 200] [--k 10 50]

Inputs: float32 gradients G (K x 5000) = shared component + rank-3 part + noise, task norms
spread 5-20x, drifting slowly from call to call as in training (consecutive Gram matrices are
close, so the warm start of the active set sees realistic supports); the float64 Gram matrix
is formed as the balancers form it. Timed, per call:

* ``min_norm_weights`` -- the base revision's, always cold (a start is not passed to it), this
  tree's cold, this tree's started from the previous call's support;
* imgrad's and cagrad's host solve -- the code inside ``with host_solve():`` of their
  ``_balance``, read from the accounting (``HOST.solve_s``) around ``balance()``; for the base,
  this tree's balancers with the base revision's ``min_norm_weights`` and
  ``conflict_averse_update`` (imgrad cold and started from the previous call's MGDA support).

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
from pathlib import Path

import numpy as np
import torch

import mtrl.balancers.cagrad as cagrad_module
import mtrl.balancers.imgrad as imgrad_module
from mtrl.balancers import _simplex, make_balancer

ROOT = Path(__file__).resolve().parents[1]


def base_simplex(rev: str):
    """The base revision's ``mtrl/balancers/_simplex.py``, imported as its own module."""
    src = subprocess.check_output(["git", "show", f"{rev}:mtrl/balancers/_simplex.py"], cwd=ROOT, text=True)
    spec = importlib.util.spec_from_loader(f"_simplex_{rev}", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(src, f"{rev}:_simplex.py", "exec"), module.__dict__)
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


def host_gram(g: torch.Tensor) -> np.ndarray:
    return _simplex.host_gram(g, torch.ones(g.shape[0]))[1]


def per_call(fn, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def host_s(balancer, g: torch.Tensor, losses: torch.Tensor, repeat: int, support=None) -> float:
    """Seconds inside ``host_solve()`` per ``balance()`` call (imgrad: each repeat started from
    the same MGDA support)."""
    total = 0.0
    for _ in range(repeat):
        if hasattr(balancer, "support"):
            balancer.support = support
        before = _simplex.HOST.solve_s
        balancer.balance(g, losses)
        total += _simplex.HOST.solve_s - before
    return total / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="HEAD", help="the revision to compare against (default HEAD)")
    parser.add_argument("--calls", type=int, default=200, help="calls per K (default 200)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per call and solver (default 5)")
    parser.add_argument("--k", type=int, nargs="+", default=[10, 50])
    args = parser.parse_args()
    torch.set_num_threads(1)
    old = base_simplex(args.base)
    new_mnw, new_cau = imgrad_module.min_norm_weights, imgrad_module.conflict_averse_update

    def use(base: bool) -> None:
        """Point IMGrad and CAGrad at the base revision's solvers or at this tree's (their other
        code is this tree's either way)."""
        if base:
            imgrad_module.min_norm_weights = lambda m, start=None: old.min_norm_weights(m)
            imgrad_module.conflict_averse_update = cagrad_module.conflict_averse_update = old.conflict_averse_update
        else:
            imgrad_module.min_norm_weights, imgrad_module.conflict_averse_update = new_mnw, new_cau
            cagrad_module.conflict_averse_update = new_cau

    print(f"base {args.base} vs this tree; {args.calls} calls per K, medians in ms (new / old)")
    for k in args.k:
        grads = gradient_sequence(k, args.calls, seed=k)
        losses = torch.ones(k)
        times = {
            key: []
            for key in ("mgda_old", "mgda_cold", "mgda_warm", "imgrad_old", "imgrad_cold", "imgrad_warm")
            + ("cagrad_old", "cagrad_new")
        }
        imgrad, cagrad = make_balancer("imgrad", num_tasks=k, c=0.5), make_balancer("cagrad", num_tasks=k, c=0.5)
        support = None
        for g in grads:
            m = host_gram(g)
            times["mgda_old"].append(per_call(lambda: old.min_norm_weights(m), args.repeat))
            times["mgda_cold"].append(per_call(lambda: _simplex.min_norm_weights(m), args.repeat))
            times["mgda_warm"].append(per_call(lambda: _simplex.min_norm_weights(m, support), args.repeat))
            use(True)
            times["imgrad_old"].append(host_s(imgrad, g, losses, args.repeat))
            times["cagrad_old"].append(host_s(cagrad, g, losses, args.repeat))
            use(False)
            times["imgrad_cold"].append(host_s(imgrad, g, losses, args.repeat))
            times["imgrad_warm"].append(host_s(imgrad, g, losses, args.repeat, support))
            times["cagrad_new"].append(host_s(cagrad, g, losses, args.repeat))
            w, ok = _simplex.min_norm_weights(m, support)
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
