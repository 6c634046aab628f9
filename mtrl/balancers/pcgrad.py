"""PCGrad: project each task gradient off the gradients it conflicts with, in random order."""

from __future__ import annotations

import torch
from torch import Tensor

from mtrl.balancers import register
from mtrl.balancers.base import Balancer, BalanceResult, given_grads, gram, skipped_result


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """Copy a small CPU tensor to ``device`` without a host synchronisation (pinned, async on
    CUDA; the caching host allocator keeps the buffer alive until the copy is done)."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


@register
class PCGrad(Balancer):
    r"""PCGrad (gradient surgery) -- Yu, Kumar, Gupta, Levine, Hausman & Finn, "Gradient Surgery
    for Multi-Task Learning", NeurIPS 2020 (Algorithm 1).

    For every task i, starting from g_i^PC = g_i, go through the tasks j in a fresh random order
    and, whenever g_i^PC . g_j < 0, project onto the normal plane of the *original* g_j:

        g_i^PC <- g_i^PC - (g_i^PC . g_j / |g_j|^2) g_j

    direction = mean_i g_i^PC (``reduction="mean"``, the ``ew`` scale; ``"sum"`` as in the
    paper's TF code and LibMTL). As in the official code j runs over all tasks including i
    (projecting on the own original gradient only triggers if earlier projections turned
    g_i^PC against g_i). K = 2: g_1^PC = g_1 - min(g_1.g_2, 0)/|g_2|^2 g_2 and symmetrically.

    Every g_i^PC is a linear combination of the original gradients, so mtrl runs the algorithm
    on the K x K Gram matrix (coefficients C, g_i^PC = sum_k C_ik g_k, inner products
    C_i . M[:, j]) and returns ``weights = mean_i C_i`` with ``direction = grads.T @ weights``:
    one [K, P] pass for M and one for the direction, no P-sized loop, no host sync (the
    ``if`` is a ``torch.where``; a zero g_j never projects since then g_i^PC . g_j = 0).

    Random order: a ``torch.Generator`` owned by the balancer, seeded with ``seed`` (default 0),
    on the CPU (K x K numbers per call): task i's order at a call is row i of
    ``argsort(torch.rand(K, K, generator=gen), dim=1)``. Its state is in ``state_dict``, so a
    resumed run draws the same orders.

    Hyperparameters: ``seed`` = 0, ``reduction`` = "mean". PCGrad has no further hyperparameter
    (the paper's MT10/MT50 runs use it with SAC as here).
    """

    name = "pcgrad"

    def __init__(self, num_tasks: int, seed: int = 0, reduction: str = "mean", **kwargs):
        super().__init__(num_tasks, **kwargs)
        if reduction not in ("mean", "sum"):
            raise ValueError(f"pcgrad: reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def draw_orders(self, k: int) -> Tensor:
        """[k, k] int64 on the CPU: row i is the order in which task i visits the tasks."""
        return torch.argsort(torch.rand(k, k, generator=self.generator), dim=1)

    def _balance(self, grads_or_none: Tensor | None, losses: Tensor) -> BalanceResult:
        grads = given_grads(grads_or_none, self.name)
        if self._skip_call():  # non-finite inputs: the trainer skips this update, the state stays
            return skipped_result(grads, losses)
        k = grads.shape[0]
        m = gram(grads)
        orders = to_device(self.draw_orders(k), grads.device)
        diag = torch.diagonal(m)
        eye = torch.eye(k, dtype=m.dtype, device=m.device)
        coef = eye.clone()  # row i: g_i^PC in the basis of the original gradients
        zero = torch.zeros((), dtype=m.dtype, device=m.device)
        for s in range(k):
            j = orders[:, s]
            inner = (coef * m.index_select(0, j)).sum(dim=1)  # g_i^PC . g_{j_i}
            d_j = diag.index_select(0, j)
            proj = torch.where((inner < 0) & (d_j > 0), inner / torch.where(d_j > 0, d_j, torch.ones_like(d_j)), zero)
            coef = coef - proj.unsqueeze(1) * eye.index_select(0, j)
        weights = coef.sum(dim=0)
        if self.reduction == "mean":
            weights = weights / k
        weights = weights.to(grads.dtype)
        return BalanceResult(direction=grads.T @ weights, weights=weights)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
