"""The shared part of the balancers that solve a K x K problem on the host.

A method's solve works on the K x K Gram matrix ``M = G G^T`` of the task gradients (K = 2..50),
so its cost does not depend on the number of parameters P. :class:`HostSolverBalancer` forms M on
the training device in float64 (from float32 gradients: products of float32 numbers are exact
in float64, so M is exact to float64 rounding whatever the spread of the task norms), brings it
to the host in one copy (the one host synchronisation of a ``balance()`` call), lets the method
solve there in float64 with numpy to its tolerance, and sends the weights back to the device,
where the direction ``G^T w`` is one float64 matrix-vector product cast to the gradients'
dtype. A call costs 15 device operations (`mtrl bench`, MT10 sizes).

Why not on the device: a solver written for the device runs a fixed iteration count with
``torch.where`` safeguards (a convergence test would read the device). Measured at the MT10
sizes, that was 2,000-7,400 aten operations per ``balance()`` call (each a kernel launch of
~5-10 us on a GPU, ~2 us inside a CUDA graph), so a solver would cost 15-25x EW's update on a
GPU (docs/benchmarks.md, "Operations and host synchronisations per update"). On the host a
10 x 10 interior-point iteration is a few dozen numpy calls of ~1 us, an active-set cycle about
15, and the loop stops when the KKT conditions hold. The price is one synchronisation per call.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mtrl.balancers.base import Balancer, BalanceResult, given_grads, skipped_result
from mtrl.bench_counters import HOST, host_solve, on_host


class HostSolverBalancer(Balancer):
    """Base of the methods whose weights solve a K x K problem on the host.

    One call: the Gram matrix to the host (:func:`host_gram`); a non-finite call is skipped with
    the method's state untouched; :meth:`solve` returns ``(weights, ok)``; ``not ok`` counts a
    solver failure and the weights become :meth:`fallback`'s; :meth:`finish` turns the weights
    into the direction on the device. A method writes :meth:`solve` (its math) and overrides the
    others only where its paper says so.
    """

    def solve(self, m: np.ndarray) -> tuple[np.ndarray, bool]:
        """The method's weights [K] (float64) for the Gram matrix ``m`` and whether they meet its
        optimality conditions. Runs inside the bench's host-solve accounting."""
        raise NotImplementedError

    def fallback(self, m: np.ndarray) -> np.ndarray:
        """The weights used when :meth:`solve` fails: equal weights, i.e. the average gradient."""
        return np.full(self.num_tasks, 1.0 / self.num_tasks)

    def reusable_weights(self) -> np.ndarray | None:
        """Weights to use with this call's gradients without a solve (and without a host read), or
        None to solve: methods that recompute their weights only every n calls return the last."""
        return None

    def finish(self, g64: Tensor, m: np.ndarray | None, weights: np.ndarray, dtype: torch.dtype) -> BalanceResult:
        """The update ``G^T weights`` on the device; ``m`` is None when the weights were reused."""
        direction, weights_t = device_direction(g64, weights, dtype)
        return BalanceResult(direction=direction, weights=weights_t)

    def _balance(self, grads_or_none: Tensor | None, losses: Tensor) -> BalanceResult:
        grads = given_grads(grads_or_none, self.name)
        reused = self.reusable_weights()
        if reused is not None:
            return self.finish(grads.to(torch.float64), None, reused, grads.dtype)
        g64, m = host_gram(grads, losses, self.finite)
        if m is None:  # not finite: the trainer skips this update; the state stays as it was
            return skipped_result(grads, losses)
        with host_solve():
            weights, ok = self.solve(m)
            if not ok:
                weights = self.fallback(m)
        self._count_failure(not ok)
        return self.finish(g64, m, weights, grads.dtype)


def host_gram(grads: Tensor, losses: Tensor, finite: Tensor | None = None) -> tuple[Tensor, np.ndarray | None]:
    """``(G64, M)``: the gradients in float64 on their device, and ``M = G64 G64^T`` on the host
    as a symmetric float64 numpy array, or None when the call is to be skipped: the trainer's
    ``finite`` flag is False, or the losses or gradients are not finite (M's diagonal is finite
    exactly when every gradient entry is). The flag and the losses travel in the same copy,
    which is the call's one synchronisation."""
    g64 = grads.to(torch.float64)
    k = grads.shape[0]
    if finite is None:
        flag = torch.ones(1, dtype=torch.float64, device=grads.device)
    else:
        flag = finite.to(torch.float64).reshape(1)
    block = torch.cat([(g64 @ g64.T).reshape(-1), losses.detach().to(torch.float64), flag])
    with on_host():
        host = block.cpu().numpy()
    HOST.syncs += 1
    if host[-1] != 1.0 or not np.isfinite(host).all():
        return g64, None
    m = host[: k * k].reshape(k, k)
    return g64, 0.5 * (m + m.T)


def device_direction(g64: Tensor, weights: np.ndarray, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``(G^T w, w)`` on the gradients' device, in ``dtype``; the product is taken in float64 so
    that weights of very different sizes (tasks whose norms differ by 1e4 and more) do not
    cancel in low precision."""
    w = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float64))
    # pinned and asynchronous on CUDA: the host goes on queueing work instead of waiting for the copy
    w = w.pin_memory().to(g64.device, non_blocking=True) if g64.device.type == "cuda" else w.to(g64.device)
    return (w @ g64).to(dtype), w.to(dtype)


def clipped_direction(
    g64: Tensor, m: np.ndarray | None, alpha: np.ndarray, max_norm: float, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Nash-MTL's update ``d = G^T alpha``, scaled down to norm ``max_norm`` when longer (0
    disables), and the weights that give it. With this call's Gram matrix ``m`` the norm is
    exact on the host (|d|^2 = alpha^T M alpha); without it (alpha reused from an earlier call,
    ``update_weights_every`` > 1) it is taken on the device, without a host read."""
    if max_norm > 0 and m is not None:
        norm = np.sqrt(max(float(alpha @ m @ alpha), 0.0))
        alpha = alpha * min(1.0, max_norm / norm) if norm > 0 else alpha
    direction, weights = device_direction(g64, alpha, dtype)
    if max_norm > 0 and m is None:
        factor = torch.clamp(max_norm / torch.linalg.vector_norm(direction).clamp(min=max_norm), max=1.0)
        direction, weights = direction * factor, weights * factor
    return direction, weights
