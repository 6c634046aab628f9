"""Nash-MTL against independent math: the residual of (G G^T) alpha = 1/alpha, the K = 2 closed
form alpha_i = 1 / (|g_i| sqrt(1 + cos(g_1, g_2))), scipy's minimiser of
1/2 a^T G G^T a - sum log a, the bargaining invariants, and a reference loop for the
update_weights_every schedule."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from conftest import DTYPE, degenerate_cases, spread_grads
from mtrl.balancers import make_balancer
from mtrl.balancers import nash_mtl as nash_module

EPS = 1e-8  # the documented ridge: M_reg = M + EPS * diag(M)


def alpha_of(grads: torch.Tensor, **kwargs) -> np.ndarray:
    b = make_balancer("nash_mtl", num_tasks=grads.shape[0], max_norm=0.0, **kwargs)
    out = b.balance(grads, torch.ones(grads.shape[0], dtype=grads.dtype))
    assert b.solver_failures.item() == 0
    return out.weights.numpy()


def closed_form_two_tasks(g: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(g, axis=1)
    cos = g[0] @ g[1] / (n[0] * n[1])
    return 1.0 / (n * np.sqrt(1.0 + cos))


def test_residual_of_bargaining_equation(grads_and_losses, num_tasks):
    grads, _ = grads_and_losses
    a = alpha_of(grads)
    g = grads.numpy()
    m = g @ g.T
    m_reg = m + EPS * np.diag(np.diag(m))
    assert np.all(a > 0)
    assert np.abs(a * (m_reg @ a) - 1.0).max() <= 1e-6  # the equation solved, to the promised 1e-6
    assert np.abs(a * (m @ a) - 1.0).max() <= 2e-6  # the ridge's effect on a well-posed problem


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_tasks_closed_form(seed):
    grads = spread_grads(2, seed=seed)
    np.testing.assert_allclose(alpha_of(grads), closed_form_two_tasks(grads.numpy()), rtol=1e-6)


def test_matches_scipy_minimiser(grads_and_losses, num_tasks):
    grads, _ = grads_and_losses
    g = grads.numpy()
    m = g @ g.T
    x0 = 1.0 / np.linalg.norm(g, axis=1)
    # minimise over log a (unconstrained, same minimiser) with exact gradients
    res = minimize(
        lambda x: (0.5 * np.exp(x) @ m @ np.exp(x) - x.sum(), np.exp(x) * (m @ np.exp(x)) - 1.0),
        np.log(x0),
        jac=True,
        method="BFGS",
        options={"gtol": 1e-12, "maxiter": 10000},
    )
    np.testing.assert_allclose(alpha_of(grads), np.exp(res.x), rtol=1e-5)


def test_bargaining_invariants(grads_and_losses, num_tasks):
    """Every task gets the same utility alpha_i g_i.d = 1, hence |d|^2 = K."""
    grads, _ = grads_and_losses
    a = alpha_of(grads)
    g = grads.numpy()
    d = a @ g
    np.testing.assert_allclose(a * (g @ d), np.ones(num_tasks), rtol=2e-6)
    np.testing.assert_allclose(d @ d, num_tasks, rtol=2e-6)


def test_per_task_scale_invariance():
    """Rescaling one task's loss by s divides its alpha by s and leaves d unchanged."""
    g = spread_grads(10, seed=1)
    g2 = g.clone()
    g2[3] *= 7.0
    a, a2 = alpha_of(g), alpha_of(g2)
    np.testing.assert_allclose(a2[3], a[3] / 7.0, rtol=1e-6)
    np.testing.assert_allclose(a2 @ g2.numpy(), a @ g.numpy(), rtol=1e-5, atol=1e-6)


def test_max_norm_clipping(grads_and_losses, num_tasks):
    grads, losses = grads_and_losses
    a = alpha_of(grads)
    out = make_balancer("nash_mtl", num_tasks=num_tasks).balance(grads, losses)  # max_norm = 1.0
    d_full = a @ grads.numpy()
    np.testing.assert_allclose(np.linalg.norm(out.direction.numpy()), 1.0, rtol=1e-10)  # |d_full| = sqrt(K) > 1
    np.testing.assert_allclose(out.direction.numpy(), d_full / np.linalg.norm(d_full), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out.direction.numpy(), out.weights.numpy() @ grads.numpy(), rtol=1e-9, atol=1e-12)
    # a generous max_norm leaves the direction alone
    out = make_balancer("nash_mtl", num_tasks=num_tasks, max_norm=100.0).balance(grads, losses)
    np.testing.assert_allclose(out.direction.numpy(), d_full, rtol=1e-9, atol=1e-12)


def test_degenerate_inputs():
    cases = degenerate_cases()
    for name, g in cases.items():
        b = make_balancer("nash_mtl", num_tasks=3)
        out = b.balance(g, torch.ones(3, dtype=DTYPE))
        assert torch.isfinite(out.direction).all() and torch.isfinite(out.weights).all(), name
        assert float(out.direction.norm()) <= 1.0 + 1e-12, name
        assert b.solver_failures.item() == 0, name  # the ridge makes every case solvable
    # duplicate rows share their weight; the regularised equation is solved to 1e-6
    a = alpha_of(cases["duplicate_rows"])
    np.testing.assert_allclose(a[0], a[1], rtol=1e-8)
    for name in ("zero_row", "opposite_rows"):
        a = alpha_of(cases[name])
        g = cases[name].numpy()
        m = g @ g.T
        diag = np.where(np.diag(m) > 0, np.diag(m), np.trace(m) / 3)
        assert np.abs(a * ((m + EPS * np.diag(diag)) @ a) - 1.0).max() <= 1e-6, name
        assert a.max() <= np.sqrt(3 / EPS) / np.sqrt(diag.min()), name  # the ridge bounds |D a|^2 <= K / eps


def test_update_weights_every_matches_reference_loop():
    """alpha is recomputed on calls 0, 3, 6 and reused (with the new gradients) in between."""
    every, calls = 3, 8
    seq = [spread_grads(2, dim=6, seed=10 + t) for t in range(calls)]
    b = make_balancer("nash_mtl", num_tasks=2, update_weights_every=every)
    alpha = None
    for t, g in enumerate(seq):
        if t % every == 0:
            alpha = closed_form_two_tasks(g.numpy())
        d = alpha @ g.numpy()
        scale = min(1.0, 1.0 / np.linalg.norm(d))
        out = b.balance(g, torch.ones(2, dtype=DTYPE))
        np.testing.assert_allclose(out.weights.numpy(), alpha * scale, rtol=1e-6, err_msg=f"call {t}")
        np.testing.assert_allclose(out.direction.numpy(), d * scale, rtol=1e-6, atol=1e-9, err_msg=f"call {t}")


def test_state_dict_round_trip():
    seq = [spread_grads(10, seed=20 + t) for t in range(6)]
    ones = torch.ones(10, dtype=DTYPE)
    a = make_balancer("nash_mtl", num_tasks=10, update_weights_every=4)
    for g in seq[:3]:
        a.balance(g, ones)
    state = copy.deepcopy(a.state_dict())
    b = make_balancer("nash_mtl", num_tasks=10, update_weights_every=4)
    b.load_state_dict(state)
    for g in seq[3:]:  # call 3 reuses the saved alpha, call 4 recomputes it
        oa, ob = a.balance(g, ones), b.balance(g, ones)
        assert torch.equal(oa.direction, ob.direction) and torch.equal(oa.weights, ob.weights)


def test_failure_falls_back_to_previous_alpha_then_counts(monkeypatch):
    g1, g2 = spread_grads(3, seed=30), spread_grads(3, seed=31)
    ones = torch.ones(3, dtype=DTYPE)
    b = make_balancer("nash_mtl", num_tasks=3, max_norm=0.0)
    a1 = b.balance(g1, ones).weights.numpy()
    real = nash_module.solve_nash

    def failing(m):
        a, ok, r = real(m)
        return a * float("nan"), False, r

    monkeypatch.setattr(nash_module, "solve_nash", failing)
    out = b.balance(g2, ones)
    assert b.solver_failures.item() == 1
    np.testing.assert_allclose(out.weights.numpy(), a1)  # previous alpha, applied to the new gradients
    np.testing.assert_allclose(out.direction.numpy(), a1 @ g2.numpy())


def test_failure_on_first_call_uses_equal_ray_alpha(monkeypatch):
    real = nash_module.solve_nash
    def unconverged(m):
        a, ok, r = real(m)
        return a, False, r

    monkeypatch.setattr(nash_module, "solve_nash", unconverged)
    g = spread_grads(4, seed=32)
    b = make_balancer("nash_mtl", num_tasks=4, max_norm=0.0)
    out = b.balance(g, torch.ones(4, dtype=DTYPE))
    m = g.numpy() @ g.numpy().T
    t = np.sqrt(4 / (m + EPS * np.diag(np.diag(m))).sum())
    assert b.solver_failures.item() == 1
    np.testing.assert_allclose(out.weights.numpy(), np.full(4, t), rtol=1e-10)


def test_float32():
    g = spread_grads(10, dim=50, seed=3)
    a64 = alpha_of(g)
    b = make_balancer("nash_mtl", num_tasks=10, max_norm=0.0)
    out = b.balance(g.float(), torch.ones(10))
    assert out.weights.dtype == torch.float32 and out.direction.dtype == torch.float32
    assert b.solver_failures.item() == 0
    np.testing.assert_allclose(out.weights.numpy(), a64, rtol=1e-4)


@pytest.mark.parametrize("bad", [{"max_norm": -1.0}, {"update_weights_every": 0}, {"update_weights_every": 1.5}])
def test_invalid_hyperparameters(bad):
    with pytest.raises(ValueError):
        make_balancer("nash_mtl", num_tasks=3, **bad)
