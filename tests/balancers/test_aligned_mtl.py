"""Aligned-MTL: the aligned gradient matrix has equal singular values (condition number 1 on
its span) fixed by the chosen eigenvalue, checked with numpy's SVD/eigh; torchjd agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrl.balancers import make_balancer
from mtrl.balancers.base import gram
from tests.balancers.conftest import DTYPE, degenerate_cases, positive_losses, spread_grads




def aligned(b, g: torch.Tensor) -> np.ndarray:
    mat, _ = b.balance_matrix(gram(g), torch.finfo(g.dtype).eps)
    return (mat.to(g.dtype) @ g).numpy()


def test_aligned_matrix_has_condition_number_one(grads_and_losses):
    g, losses = grads_and_losses
    k = g.shape[0]
    b = make_balancer("aligned_mtl", num_tasks=k)
    out = b.balance(g, losses)
    sv = np.linalg.svd(aligned(b, g), compute_uv=False)
    lam_min = np.linalg.eigvalsh((g @ g.T).numpy()).min()
    np.testing.assert_allclose(sv, np.sqrt(lam_min), rtol=1e-7)  # all equal, = sqrt(lambda_min)
    ghat = aligned(b, g)
    np.testing.assert_allclose(out.direction.numpy(), ghat.mean(0), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g.T @ out.weights, out.direction)


@pytest.mark.parametrize("mode", ["median", "rmse"])
def test_scale_modes(mode):
    g = spread_grads(5, seed=1)
    b = make_balancer("aligned_mtl", num_tasks=5, scale_mode=mode)
    lam = np.sort(np.linalg.eigvalsh((g @ g.T).numpy()))
    target = lam[(len(lam) - 1) // 2] if mode == "median" else lam.mean()
    np.testing.assert_allclose(np.linalg.svd(aligned(b, g), compute_uv=False), np.sqrt(target), rtol=1e-7)


def test_rank_deficient_aligns_on_the_span():
    g = spread_grads(4, seed=2)
    g[3] = 0.5 * g[0] - 2.0 * g[1]  # rank 3
    b = make_balancer("aligned_mtl", num_tasks=4)
    out = b.balance(g, positive_losses(4))
    sv = np.linalg.svd(aligned(b, g), compute_uv=False)
    lam = np.sort(np.linalg.eigvalsh((g @ g.T).numpy()))
    assert sv[3] < 1e-6 * sv[0]  # the null direction stays null
    np.testing.assert_allclose(sv[:3], np.sqrt(lam[1]), rtol=1e-6)  # smallest nonzero eigenvalue
    assert b.solver_failures.item() == 0 and torch.isfinite(out.direction).all()


def test_agrees_with_torchjd():
    pytest.importorskip("torchjd")
    from torchjd.aggregation import AlignedMTL as JDAlignedMTL

    g = spread_grads(4, seed=3)
    ours = make_balancer("aligned_mtl", num_tasks=4).balance(g, positive_losses(4)).direction
    theirs = JDAlignedMTL()(g).to(ours.dtype)  # default preference: the mean
    torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("case", sorted(degenerate_cases()))
def test_degenerate_inputs(case):
    g = degenerate_cases()[case]
    b = make_balancer("aligned_mtl", num_tasks=3)
    out = b.balance(g, positive_losses(3))
    assert torch.isfinite(out.direction).all() and torch.isfinite(out.weights).all()
    if case == "all_zero":  # no alignment exists: counted, B = I
        assert b.solver_failures.item() == 1
        torch.testing.assert_close(out.weights, torch.full((3,), 1.0 / 3, dtype=DTYPE))
    else:
        assert b.solver_failures.item() == 0
        sv = np.linalg.svd(aligned(b, g), compute_uv=False)
        nz = sv[sv > 1e-6 * sv[0]]
        np.testing.assert_allclose(nz, nz[0], rtol=1e-6)


def test_float32_and_log_losses():
    g, losses = spread_grads(4, spread=10.0).float(), positive_losses(4).float()
    out = make_balancer("aligned_mtl", num_tasks=4).balance(g, losses)
    assert out.direction.dtype == torch.float32 and out.weights.dtype == torch.float32
    logd = make_balancer("aligned_mtl", num_tasks=4, log_losses=True).balance(g, losses).direction
    manual = make_balancer("aligned_mtl", num_tasks=4).balance(g / (losses.abs() + 1e-8).unsqueeze(1), losses).direction
    torch.testing.assert_close(logd, manual)
