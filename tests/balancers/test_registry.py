"""The registry and the contract every registered balancer keeps (README.md, "Balancers"):
clear errors for unknown names and hyperparameters, [P] direction and [K] weights
in the input's dtype and device, finite output on degenerate input and on negative losses, the
log_losses option, checkpoint round trips, and at most one host synchronisation per balance()
call: the copy of the Gram matrix, for the methods that solve on the host."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from conftest import DTYPE, degenerate_cases, positive_losses, spread_grads
from mtrl.balancers import available_balancers, balancer_hparams, make_balancer
from mtrl.bench_counters import HOST
from mtrl.balancers.base import log_loss_scale

METHODS = available_balancers()
# invariant to rescaling each task's gradient (Nash-MTL), or log-loss scaling built in (DB-MTL)
SCALE_INVARIANT = {"nash_mtl", "db_mtl"}
GRAD_METHODS = [n for n in METHODS if make_balancer(n, num_tasks=2).needs_grads]


def test_required_methods_are_registered():
    for name in ("ew", "mgda", "cagrad", "imgrad", "nash_mtl", "db_mtl"):
        assert name in METHODS


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as err:
        make_balancer("cagradd", num_tasks=3)
    msg = str(err.value)
    assert "cagradd" in msg
    for name in METHODS:
        assert name in msg


def test_unknown_hyperparameter_lists_valid_ones():
    with pytest.raises(ValueError) as err:
        make_balancer("cagrad", num_tasks=3, alpha=0.4)
    msg = str(err.value)
    valid = [s.strip() for s in msg.split("valid:")[1].split(",")]
    assert "alpha" in msg and "c" in valid and "log_losses" in valid
    with pytest.raises(ValueError, match="update_weights_every"):
        make_balancer("nash_mtl", num_tasks=3, update_every=2)


def test_defaults():
    assert balancer_hparams("cagrad") == {"log_losses": False, "c": 0.5}
    assert balancer_hparams("imgrad") == {"log_losses": False, "c": 0.5}
    assert balancer_hparams("mgda") == {"log_losses": False}
    assert balancer_hparams("nash_mtl") == {"log_losses": False, "max_norm": 1.0, "update_weights_every": 1}
    assert balancer_hparams("db_mtl") == {"log_losses": False, "beta": 0.9, "beta_sigma": 0.0}


@pytest.mark.parametrize("name,bad", [("cagrad", {"c": -0.1}), ("imgrad", {"c": -1.0})])
def test_invalid_values(name, bad):
    with pytest.raises(ValueError):
        make_balancer(name, num_tasks=3, **bad)


def _inputs():
    """The degenerate cases with positive losses, and a regular case with mixed-sign losses
    (the SAC actor loss can be negative)."""
    for name, g in degenerate_cases().items():
        yield name, g, positive_losses(3)
    yield "spread-mixed_losses", spread_grads(3, dim=8, seed=11), torch.tensor([-2.0, 0.5, 3.0], dtype=DTYPE)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", METHODS)
def test_shapes_dtype_device_and_finite(name, dtype):
    b = make_balancer(name, num_tasks=3)  # one instance: stateful methods carry state across cases
    for case, g, losses in _inputs():
        out = b.balance(g.to(dtype), losses.to(dtype))
        assert out.direction.shape == (g.shape[1],), case
        assert out.weights.shape == (3,), case
        for t in (out.direction, out.weights):
            assert t.dtype == dtype and t.device == g.device, case
            assert torch.isfinite(t).all(), f"{name}: non-finite output on {case}"


@pytest.mark.parametrize("name", GRAD_METHODS)
def test_log_losses_balances_log_loss_gradients(name):
    """log_losses=True is the method applied to grads_t / |L_t| (DB-MTL: already built in)."""
    g = spread_grads(4, dim=12, seed=12)
    losses = torch.tensor([0.5, -2.0, 8.0, 1.5], dtype=DTYPE)
    with_option = make_balancer(name, num_tasks=4, log_losses=True).balance(g, losses)
    scale = log_loss_scale(losses)
    if name == "db_mtl":
        expected = make_balancer(name, num_tasks=4).balance(g, losses)
        expected_weights = expected.weights
    else:
        expected = make_balancer(name, num_tasks=4).balance(g / scale.unsqueeze(1), losses)
        expected_weights = expected.weights / scale  # reported on the raw gradients
    torch.testing.assert_close(with_option.direction, expected.direction, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(with_option.weights, expected_weights, rtol=1e-10, atol=1e-12)
    if name not in SCALE_INVARIANT:  # the option does something
        plain = make_balancer(name, num_tasks=4).balance(g, losses)
        assert not torch.allclose(plain.direction, with_option.direction)


@pytest.mark.parametrize("name", METHODS)
def test_state_dict_round_trip(name):
    seq = [(spread_grads(4, dim=12, seed=50 + t), positive_losses(4, seed=t)) for t in range(4)]
    a = make_balancer(name, num_tasks=4)
    for g, losses in seq[:2]:
        a.balance(g, losses)
    state = copy.deepcopy(a.state_dict())
    b = make_balancer(name, num_tasks=4)
    b.load_state_dict(state)
    for g, losses in seq[2:]:
        oa, ob = a.balance(g, losses), b.balance(g, losses)
        torch.testing.assert_close(oa.direction, ob.direction, rtol=0, atol=0)
        torch.testing.assert_close(oa.weights, ob.weights, rtol=0, atol=0)
    assert torch.equal(a.solver_failures, b.solver_failures)


# Calls that read a tensor on the host (a device synchronisation on CUDA) or whose plain
# variants check their input on the host (torch.linalg.solve/cholesky/inv raise on singular
# input, which needs a sync; the *_ex variants do not).
_SYNCING = {
    "item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "nonzero",
    "argwhere", "masked_select", "unique", "unique_consecutive", "cpu",
    "solve", "inv", "cholesky", "eigh", "eigvalsh", "lstsq", "cholesky_inverse",
}


# Documented exceptions: aligned_mtl needs an eigendecomposition, which has no *_ex variant.
KNOWN_SYNCS = {"aligned_mtl": {"eigh"}}
# The methods that bring their Gram matrix to the host once per call and solve there.
HOST_SOLVERS = {"mgda", "cagrad", "imgrad", "nash_mtl", "fairgrad", "imgrad_nash"}


class SyncSpy(TorchFunctionMode):
    """Records the calls that read a tensor on the host, except inside the host-side regions of
    mtrl.balancers.host_solver (the one Gram-matrix copy, and solves on host copies)."""

    def __init__(self):
        super().__init__()
        self.calls: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if HOST.depth == 0:
            if name in _SYNCING:
                self.calls.add(name)
            if name in ("__getitem__", "__setitem__") and len(args) > 1:
                index = args[1] if isinstance(args[1], tuple) else (args[1],)
                if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index):
                    self.calls.add("boolean-mask indexing")
        return func(*args, **(kwargs or {}))


def test_sync_spy_detects_host_reads():
    x = torch.ones(3)
    with SyncSpy() as spy:
        if x.sum() > 0:
            x[x > 0] = 2.0
        x.max().item()
    assert spy.calls == {"__bool__", "boolean-mask indexing", "item"}


@pytest.mark.parametrize("name", METHODS)
def test_host_synchronisations(name):
    """No host read outside the marked host regions, and exactly one crossing per call for the
    host solvers (none for the others), on regular and degenerate input."""
    g = spread_grads(10, dim=30, seed=13)
    losses = torch.linspace(-3.0, 3.0, 10, dtype=DTYPE)
    opposite = degenerate_cases(10, 30)["opposite_rows"]
    b = make_balancer(name, num_tasks=10)
    before = HOST.syncs
    with SyncSpy() as spy:
        for grads in (g, g, opposite):  # the first call (lazy state), a later one, a degenerate one
            b.balance(grads, losses)
    calls = spy.calls - KNOWN_SYNCS.get(name, set())
    assert not calls, f"{name} reads tensors on the host: {sorted(calls)}"
    assert HOST.syncs - before == (3 if name in HOST_SOLVERS else 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", METHODS)
def test_cuda_syncs_and_same_result(name):
    """On CUDA, the second call (state and kernels warm) runs with sync debugging set to warn:
    one synchronisation for the host solvers (the Gram matrix copy), none for the others
    (aligned_mtl's eigh excepted), and the result matches the float64 CPU one."""
    import warnings

    g = spread_grads(10, dim=300, seed=14)
    losses = positive_losses(10)
    ref = make_balancer(name, num_tasks=10)
    ref.balance(g, losses)
    ref_out = ref.balance(g, losses)
    b = make_balancer(name, num_tasks=10)
    gc, lc = g.float().cuda(), losses.float().cuda()
    b.balance(gc, lc)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = b.balance(gc, lc)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    if name in HOST_SOLVERS:
        assert len(syncs) <= 1, [str(w.message) for w in syncs]
    elif name not in KNOWN_SYNCS:
        assert not syncs, [str(w.message) for w in syncs]
    assert out.direction.device.type == "cuda" and out.weights.device.type == "cuda"
    assert out.direction.dtype == torch.float32 and out.weights.dtype == torch.float32
    scale = float(ref_out.direction.abs().max())
    torch.testing.assert_close(out.direction.cpu().double(), ref_out.direction, rtol=1e-3, atol=1e-3 * scale)


@pytest.mark.parametrize("name", ["db_mtl", "famo", "uw"])
def test_log_losses_is_not_applied_twice(name):
    """DB-MTL, FAMO and UW take logs of losses by definition: log_losses=true changes nothing
    (issue 11: FAMO's weights went from [0.76, 0.19, 0.05] to [1.52, 0.10, 0.006] with it)."""
    g = spread_grads(3, dim=8, seed=21)
    plain, with_option = make_balancer(name, num_tasks=3), make_balancer(name, num_tasks=3, log_losses=True)
    for losses in ([0.5, 2.0, 8.0], [0.4, 2.5, 6.0]):  # two calls: FAMO's update needs a previous loss
        losses = torch.tensor(losses, dtype=DTYPE)
        a, b = plain.balance(g, losses), with_option.balance(g, losses)
        torch.testing.assert_close(a.weights, b.weights, rtol=0, atol=0)
    assert not with_option.log_losses


def _same_state(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


# the call counter of these counts skipped calls too; it changes no number (see their docstrings)
COUNTS_SKIPPED_CALLS = {"db_mtl": "step"}
# the methods that read the trainer's flag on the host (one synchronisation) instead of keeping
# their state on the device
READS_FLAG = {"famo", "uw", "loss_norm", "gradnorm", "pcgrad"}


@pytest.mark.parametrize("name", METHODS)
def test_a_skipped_call_leaves_the_state_as_it_was(name):
    """finite=False (the trainer skips the update, whatever the output): state untouched, no
    failure counted; the next call continues exactly as if the skipped one had not happened."""
    seq = [(spread_grads(4, dim=12, seed=70 + t), positive_losses(4, seed=t)) for t in range(4)]
    a, b = make_balancer(name, num_tasks=4), make_balancer(name, num_tasks=4)
    yes, no = torch.tensor(True), torch.tensor(False)
    for g, losses in seq[:2]:
        a.balance(g, losses, finite=yes)
        b.balance(g, losses)
    before = copy.deepcopy(a.state_dict())
    a.balance(seq[2][0] * float("nan"), seq[2][1], finite=no)
    after = a.state_dict()
    for key in ({COUNTS_SKIPPED_CALLS[name]} if name in COUNTS_SKIPPED_CALLS else set()):
        before.pop(key), after.pop(key)
    assert _same_state(before, after)
    oa, ob = a.balance(*seq[3], finite=yes), b.balance(*seq[3])
    torch.testing.assert_close(oa.direction, ob.direction, rtol=0, atol=0)
    assert int(a.solver_failures) == int(b.solver_failures)


@pytest.mark.parametrize("name", METHODS)
def test_host_reads_with_the_trainer_flag(name):
    """With the trainer's flag given: EW, DB-MTL and the other device-side methods read nothing,
    the host solvers bring the flag along with their Gram matrix (one crossing), and the listed
    stateful methods read the flag once."""
    g, losses = spread_grads(10, dim=30, seed=13), positive_losses(10)
    b = make_balancer(name, num_tasks=10)
    before = HOST.syncs
    with SyncSpy() as spy:
        b.balance(g, losses, finite=torch.tensor(True))
    calls = spy.calls - KNOWN_SYNCS.get(name, set())
    assert calls == ({"__bool__"} if name in READS_FLAG else set())
    assert HOST.syncs - before == (1 if name in HOST_SOLVERS else 0)
