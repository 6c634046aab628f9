"""The ``compile`` config key (``auto | true | false``): torch.compile of the update's device work.

What is compiled (the functions of :mod:`mtrl.update_steps`, one set per loss, built once per
trainer): the critic targets; for a gradient balancer, the per-task gradients (losses, the
batched vmap-of-grad pass, the finite check) and, after the balancer, the step from its
direction to the gradients Adam sees (finite check, clip, unflatten); for a loss-only balancer
whose ``balance()`` reads nothing on the host (``Balancer.traceable``: EW, stall_boost), the
whole loss step: losses, the balancer, the weighted backward pass (``torch.autograd.grad``,
traced with dynamo's ``trace_autograd_ops``), the clip. Each is compiled with ``fullgraph=True``:
a graph break is an error, not a silent slowdown.

What stays eager, and why: the balancers' ``balance()`` on the gradient path (the host solvers
bring a Gram matrix to the host and solve in numpy: there is nothing there for a compiler), the
loss-only balancers with a host read (FAMO, UW, loss_norm: the read would split the graph
between the forward and the backward pass; their loss step runs the same function eagerly), the
fused Adam steps (a graph break by design in torch.optim, and already one kernel per parameter
group), the temperature loss, the
Polyak update (one ``_foreach_lerp_``), replay sampling and every random draw (so that the
compiled and the eager update use the same random numbers and give the same parameters).

``auto``: on CUDA, compile with CUDA graphs (``mode="reduce-overhead"``: at MT10 sizes an update
is launch-bound there); on the CPU, compile too, because ``mtrl bench`` measures it faster here
(docs/benchmarks.md, "compile on and off"). Where compile cannot work (no C++ compiler for the
CPU backend, no Triton for the CUDA one) ``auto`` runs eagerly and says so in one line; ``true``
stops with a clear error. The first call of each compiled function traces and compiles it (seconds to minutes); the
trainer announces it, leaves it out of the progress estimate, and
:attr:`CompiledFunction.compile_s` records it for ``mtrl bench``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable

import torch

from mtrl.config import CompileSetting, ConfigError


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot run on ``device`` here, or None when it can."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile (it needs torch >= 2.0)"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed (torch.compile's CUDA backend needs it)"
    compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
    if not any(c and shutil.which(c) for c in compilers):
        return "no C++ compiler (g++, c++ or clang++ on PATH) for torch.compile's CPU backend"
    return None


def resolve_compile(setting: CompileSetting, device: torch.device, warn: Callable[[str], None] | None = None) -> bool:
    """Whether the update is compiled for the config value ``setting`` on ``device``."""
    if setting == "false":
        return False
    reason = compile_unavailable(device)
    if setting == "true":
        if reason:
            raise ConfigError(f"compile=true but {reason}; use compile=auto or compile=false")
        return True
    # auto compiles on the CPU too: `mtrl bench` on the 2-core development CPU (2026-12-01, MT10
    # protocol sizes, seven runs) measured the compiled update level with the eager one or up to 17%
    # faster for EW and each required balancer, for 20-35 s of compiling on a cold cache
    # (docs/benchmarks.md, "compile on and off")
    if reason:
        (warn or _stderr)(f"mtrl: compile=auto: {reason}; the update runs eagerly")
        return False
    return True


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _compile(fn: Callable, device: torch.device) -> Callable:
    """``fn`` under torch.compile, whole, with CUDA graphs on CUDA."""
    compiled = torch.compile(fn, fullgraph=True, mode="reduce-overhead" if device.type == "cuda" else None)

    def traced(*args):
        # torch.autograd.grad inside the loss step (mtrl.update_steps.weighted_gradients) is
        # traced, not a graph break; set on every call, since a recompilation traces again
        with torch._dynamo.config.patch(trace_autograd_ops=True):
            return compiled(*args)

    return traced


class CompiledFunction:
    """``fn`` under ``torch.compile(fullgraph=True)`` when ``enabled`` (with CUDA graphs on CUDA),
    else ``fn`` itself. The first call traces and compiles: it is announced and timed into
    ``compile_s``; :meth:`expect_compile` says that the next call compiles again (a new
    balancer traced into the function). With ``strict`` False (compile=auto) a function that fails to compile runs
    eagerly from then on, said in one line; with ``strict`` (compile=true) the error stands."""

    def __init__(
        self,
        fn: Callable,
        name: str,
        enabled: bool,
        device: torch.device,
        strict: bool,
        announce: Callable[[str], None],
        compiled_in: Callable[[float], None] = lambda seconds: None,
    ):
        self.fn, self.name, self.enabled, self.strict = fn, name, enabled, strict
        self.announce, self.compiled_in = announce, compiled_in
        self.compiled = _compile(fn, device) if enabled else fn
        self.compile_s = 0.0
        self.called = False

    def expect_compile(self) -> None:
        self.called = not self.enabled

    def __call__(self, *args):
        if not self.enabled or self.called:
            return self.compiled(*args)
        self.called = True
        self.announce(f"mtrl: compiling {self.name} (torch.compile) ...")
        start = time.perf_counter()
        try:
            out = self.compiled(*args)
        except Exception as e:
            if self.strict:
                raise
            self.compiled, self.enabled = self.fn, False
            self.announce(
                f"mtrl: compile=auto: compiling {self.name} failed ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); it runs eagerly"
            )
            return self.fn(*args)
        seconds = time.perf_counter() - start
        self.compile_s += seconds
        self.announce(f"mtrl: compiled {self.name} in {seconds:.1f} s")
        self.compiled_in(seconds)
        return out
