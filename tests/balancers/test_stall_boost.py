"""Stall boost on hand-made success sequences: stalled tasks gain weight up to the cap, moving
and solved ones do not, the boost decays when a task moves again, and the weights stay finite
and sum to 1. Also the optional task_success keyword that every other method ignores."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from mtrl.balancers import available_balancers, make_balancer
from tests.balancers.conftest import DTYPE, positive_losses, spread_grads
from tests.balancers.test_registry import SyncSpy

LOSSES = torch.ones(3, dtype=DTYPE)


def _run(b, rows):
    """Feed the success rows (one [K] list per call); return the weights and boosts per call."""
    weights, boosts = [], []
    for row in rows:
        weights.append(b.balance(None, LOSSES, task_success=torch.tensor(row, dtype=torch.float32)).weights)
        boosts.append(b.task_scalars()["boost"].clone())
    return torch.stack(weights), torch.stack(boosts)


def test_stalled_task_gains_weight_improving_and_solved_ones_do_not():
    """Task 0 sits at 0.2 (stalled), task 1 gains 0.1 every 5 calls (moving), task 2 is solved."""
    b = make_balancer("stall_boost", num_tasks=3, patience=10, ramp=10, max_boost=3.0)
    rows = [[0.2, 0.1 * (k // 5), 1.0] for k in range(40)]
    weights, boosts = _run(b, rows)
    # quiet reaches patience at call 10 (index 9); from there the boost grows by 3^(1/10) per call
    assert torch.equal(boosts[:9, 0], torch.ones(9, dtype=DTYPE))
    torch.testing.assert_close(boosts[9:19, 0], 3.0 ** (torch.arange(1, 11, dtype=DTYPE) / 10))
    assert torch.all(boosts[19:, 0] == boosts[19, 0]) and boosts[19, 0] == pytest.approx(3.0)  # capped
    assert torch.equal(boosts[:, 1:], torch.ones(40, 2, dtype=DTYPE))
    torch.testing.assert_close(weights[-1], torch.tensor([3.0, 1.0, 1.0], dtype=DTYPE) / 5)
    torch.testing.assert_close(weights.sum(1), torch.ones(40, dtype=DTYPE))


def test_boost_decays_when_the_task_moves_again_and_returns_when_it_stalls():
    patience, ramp = 5, 4
    b = make_balancer("stall_boost", num_tasks=3, patience=patience, ramp=ramp, max_boost=2.0, min_gain=0.1)
    stalled = [[0.3, 0.0, 0.0]] * 20  # at the cap after 5 + 4 - 1 calls
    _, boosts = _run(b, stalled)
    assert boosts[-1, 0] == pytest.approx(2.0)
    # a gain below min_gain is not a move: still capped
    _, boosts = _run(b, [[0.35, 0.0, 0.0]] * 3)
    assert boosts[-1, 0] == pytest.approx(2.0)
    # one move by min_gain: the boost falls at the rate it rose, back to 1 after ramp calls ...
    _, boosts = _run(b, [[0.4, 0.0, 0.0]] * (patience + 3))
    torch.testing.assert_close(boosts[:ramp, 0], 2.0 ** (torch.arange(ramp - 1, -1, -1, dtype=DTYPE) / ramp))
    assert boosts[ramp - 1, 0] == 1.0
    # ... and after patience quiet calls since that move the task counts as stalled again
    assert boosts[patience - 1, 0] == 1.0 and boosts[patience, 0] > 1.0  # quiet counts from the move


def test_solved_task_is_not_boosted_forever():
    """A task stuck at 0.5 is boosted; once solved its boost drops to 1 at once and stays
    there however long it stays solved; if it slips back it is stalled until solved again."""
    b = make_balancer("stall_boost", num_tasks=3, patience=5, ramp=5, solved=0.9)
    _, boosts = _run(b, [[0.5, 0.0, 0.0]] * 15)
    assert boosts[-1, 0] == pytest.approx(3.0)
    _, boosts = _run(b, [[0.95, 0.0, 0.0]] * 200)
    assert torch.equal(boosts[:, 0], torch.ones(200, dtype=DTYPE))
    _, boosts = _run(b, [[0.8, 0.0, 0.0]] * 15)  # slipped: no gain above its best counts until 0.9
    assert boosts[-1, 0] == pytest.approx(3.0)


def test_forgotten_task_is_stalled_until_it_beats_its_best():
    b = make_balancer("stall_boost", num_tasks=3, patience=3, ramp=3)
    _run(b, [[0.6, 0.0, 0.0]])
    _, boosts = _run(b, [[0.2, 0.0, 0.0]] * 10 + [[0.5, 0.0, 0.0]] * 10)
    assert boosts[-1, 0] == pytest.approx(3.0)  # 0.5 is a recovery, not yet a gain over 0.6
    _, boosts = _run(b, [[0.7, 0.0, 0.0]])
    assert boosts[-1, 0] < 3.0


def test_weights_finite_normalised_and_bounded_on_random_sequences():
    K, max_boost = 10, 4.0
    gen = torch.Generator().manual_seed(0)
    b = make_balancer("stall_boost", num_tasks=K, patience=7, ramp=5, max_boost=max_boost)
    s = torch.zeros(K)
    lo, hi = 1 / (1 + (K - 1) * max_boost), max_boost / (max_boost + K - 1)
    for _ in range(300):
        s = (s + 0.05 * torch.randn(K, generator=gen)).clamp(0, 1) * (torch.rand(K, generator=gen) > 0.01)
        w = b.balance(None, positive_losses(K), task_success=s).weights
        assert torch.isfinite(w).all()
        assert float(w.sum()) == pytest.approx(1.0)
        assert float(w.min()) >= lo - 1e-12 and float(w.max()) <= hi + 1e-12


def test_without_task_success_the_boosts_hold():
    b = make_balancer("stall_boost", num_tasks=3, patience=2, ramp=2)
    before, _ = _run(b, [[0.0, 0.5, 0.0]] * 3)
    held = [b.balance(None, LOSSES).weights for _ in range(5)]
    for w in held:
        torch.testing.assert_close(w, before[-1])
    assert make_balancer("stall_boost", num_tasks=3).balance(None, LOSSES).weights.tolist() == [1 / 3] * 3


def test_state_round_trip_and_direction_with_grads():
    rows = [[0.1 * (k % 3), 0.0, min(1.0, 0.05 * k)] for k in range(30)]
    a = make_balancer("stall_boost", num_tasks=3, patience=4, ramp=3)
    _run(a, rows[:15])
    b = make_balancer("stall_boost", num_tasks=3, patience=4, ramp=3)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    g = spread_grads(3, dim=6)
    for row in rows[15:]:
        s = torch.tensor(row)
        oa, ob = a.balance(g, LOSSES, task_success=s), b.balance(g, LOSSES, task_success=s)
        assert torch.equal(oa.weights, ob.weights) and torch.equal(oa.direction, ob.direction)
        torch.testing.assert_close(oa.direction, g.T @ oa.weights)


def test_no_host_synchronisation_with_task_success():
    b = make_balancer("stall_boost", num_tasks=10, patience=1, ramp=2)
    losses = torch.linspace(-3.0, 3.0, 10, dtype=DTYPE)
    with SyncSpy() as spy:
        for k in range(3):
            b.balance(None, losses, task_success=torch.full((10,), 0.1 * k))
    assert not spy.calls, spy.calls


def test_float32_in_float32_out():
    out = make_balancer("stall_boost", num_tasks=3).balance(None, LOSSES.float(), task_success=torch.zeros(3))
    assert out.weights.dtype == torch.float32 and torch.isfinite(out.weights).all()


def test_bad_hyperparameters():
    for bad in ({"patience": 0}, {"ramp": 0}, {"min_gain": 0.0}, {"max_boost": 0.5}, {"solved": 1.5}):
        with pytest.raises(ValueError, match="stall_boost"):
            make_balancer("stall_boost", num_tasks=3, **bad)
    assert math.isclose(make_balancer("stall_boost", num_tasks=3, max_boost=1.0).log_cap, 0.0)


@pytest.mark.parametrize("name", [n for n in available_balancers() if n != "stall_boost"])
def test_every_other_method_ignores_task_success(name):
    g, losses = spread_grads(4, dim=10, seed=3), positive_losses(4)
    a, b = make_balancer(name, num_tasks=4), make_balancer(name, num_tasks=4)
    assert not a.uses_success
    for _ in range(2):
        oa = a.balance(g, losses)
        ob = b.balance(g, losses, task_success=torch.tensor([0.0, 1.0, 0.5, 0.2]))
        assert torch.equal(oa.direction, ob.direction) and torch.equal(oa.weights, ob.weights)
