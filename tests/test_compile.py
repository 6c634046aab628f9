"""compile=true against compile=false: the same parameters after several updates, for EW and the
required balancers, with every compiled function whole (fullgraph, no graph break) and compiled
once. Marked ``compile`` (a few minutes of torch.compile): ``python -m pytest -m compile``, which
.ci/run runs. The CUDA case (CUDA graphs) skips without a GPU; scripts/gpu_check.sh runs it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch._dynamo

import mtrl.bench
from torch._dynamo.utils import counters

from mtrl.balancers import make_balancer
from mtrl.config import BalancerConfig, load_config, make_loss_balancers
from mtrl.logger import RunLogger
from mtrl.trainer import Trainer
from tests.conftest import SMOKE

pytestmark = pytest.mark.compile

GYM2 = "gym:MountainCarContinuous-v0,InvertedDoublePendulum-v5"  # two tasks that build in a blink
BALANCERS = ["ew", "static", "stall_boost", "famo", "imgrad", "cagrad", "nash_mtl", "db_mtl"]  # famo: loss-only, reads the host
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


def _trainer(tmp_path, device: str, compile_: str) -> Trainer:
    cfg = load_config(SMOKE, {"taskset": GYM2, "device": device, "compile": compile_, "batch_size": 16,
                              "sac.multi_head": True, "warmup_env_steps": 2000})  # fmt: skip
    trainer = Trainer(cfg, tmp_path / compile_)
    trainer.logger = RunLogger(tmp_path / compile_, trainer.task_names)  # the gradient statistics of update 0
    obs, done = trainer.envs.reset()[0], np.zeros(trainer.num_tasks, dtype=bool)
    for _ in range(40):  # random warm-up actions from the same seed: both buffers hold the same data
        obs, _, terminated, truncated, _ = trainer.vector_step(obs, done)
        done = terminated | truncated
    return trainer


@pytest.fixture(scope="module", params=DEVICES)
def trainers(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"compile_{request.param}")
    eager = _trainer(tmp, request.param, "false")
    compiled = _trainer(tmp, request.param, "true")  # resets dynamo: nothing compiled before counts
    assert torch.equal(eager.buffer.data, compiled.buffer.data)
    start = copy.deepcopy({"agent": eager.agent.state_dict(), "opt": [o.state_dict() for o in _optimizers(eager)]})
    yield eager, compiled, start
    for t in (eager, compiled):
        t.close()


def _optimizers(trainer):
    return [*(loss.optimizer for loss in trainer.update.losses), trainer.update.alpha_opt]


def _updates(trainer: Trainer, start: dict, balancer: str, n: int) -> dict:
    """``n`` updates from the same parameters, optimizer states, replay draws and noise; the
    first one takes the gradient statistics (the per-task-gradient path for every balancer)."""
    trainer.agent.load_state_dict(start["agent"])
    for opt, state in zip(_optimizers(trainer), start["opt"]):
        opt.load_state_dict(state)
    trainer.update.balancers = make_loss_balancers(BalancerConfig(critic=balancer, actor=balancer), trainer.task_names)
    trainer.counters.updates = 0
    trainer.buffer.generator.manual_seed(7)
    torch.manual_seed(7)
    for _ in range(n):
        trainer.update_once()
    return {k: v.detach().clone() for k, v in trainer.agent.state_dict().items()}


@pytest.mark.parametrize("balancer", BALANCERS)
def test_compiled_updates_give_the_eager_parameters(trainers, balancer):
    eager, compiled, start = trainers
    want = _updates(eager, start, balancer, 4)
    got = _updates(compiled, start, balancer, 4)
    moved = max(float((want[k] - start["agent"][k]).abs().max()) for k in want)
    assert moved > 1e-4  # the updates did something
    for k in want:
        # inductor reorders float32 sums (~1e-7 relative); four Adam steps of lr 3e-4 keep that small
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5, msg=f"{balancer}: {k}")
    assert compiled.update.nonfinite.counts.tolist() == eager.update.nonfinite.counts.tolist() == [0, 0, 0]


@pytest.mark.parametrize("balancer", ["ew", "cagrad"])
def test_a_non_finite_update_is_skipped_in_the_compiled_update_too(trainers, balancer):
    """NaN rewards make every loss non-finite: the compiled update skips on the device as the
    eager one does (docs/reliability.md), parameters untouched, each skip counted."""
    _, compiled, start = trainers
    buffer = compiled.buffer
    saved = buffer.data.clone()
    buffer.data[..., buffer.obs_dim + buffer.action_dim] = float("nan")
    compiled.update.nonfinite.counts.zero_()
    try:
        after = _updates(compiled, start, balancer, 2)
    finally:
        buffer.data.copy_(saved)
    for k, v in after.items():
        assert torch.equal(v, start["agent"][k]), k
    assert compiled.update.nonfinite.counts.tolist() == [2, 2, 2]
    compiled.update.nonfinite.counts.zero_()


def test_every_function_compiled_whole_and_once(trainers):
    """compile=true compiles with fullgraph=True, so a graph break would have raised; here: no
    graph break was recorded, every function the updates use compiled, and more updates (all
    balancers again) compile nothing new."""
    eager, compiled, start = trainers
    for balancer in ("ew", "cagrad"):
        _updates(compiled, start, balancer, 2)
    assert all(fn.compile_s > 0 for fn in compiled.update.fns.all())  # the targets and every loss's three
    assert not counters["graph_break"], dict(counters["graph_break"])
    graphs = counters["stats"]["unique_graphs"]
    for balancer in BALANCERS:
        _updates(compiled, start, balancer, 2)
    assert counters["stats"]["unique_graphs"] == graphs


def test_ew_loss_step_is_one_graph(trainers):
    """EW's whole loss step (forward, balancer, both backward passes, clip) is one graph."""
    _, compiled, _ = trainers
    step = compiled.update.fns.actor.weighted_gradients
    batch = compiled.buffer.sample(compiled.cfg.batch_size)
    args = (compiled.update.actor.params, compiled.update.actor.heads,
            (batch.obs, compiled.agent.noise(batch.obs), compiled.agent.alpha()),
            torch.ones((), dtype=torch.bool, device=compiled.device), make_balancer("ew", num_tasks=2),
            compiled.task_success, 1.0)  # fmt: skip
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        explained = torch._dynamo.explain(step.fn)(*args)
    assert explained.graph_count == 1 and explained.graph_break_count == 0


def test_bench_compares_compile_on_and_off(trainers):
    """``mtrl bench``'s compile figures for EW and a required balancer (FAMO is neither): rates
    of both modes, ratios taken from them, compile seconds, and the host synchronisations of a
    compiled update: none for EW, the host solver's one per loss for CAGrad."""
    eager, _, _ = trainers
    plan = mtrl.bench.BenchPlan(vector_steps=10, train_steps=2, warmup_updates=1, rounds=2, updates=1, grad_repeats=1,
                                eval_episodes=1)
    lines = []
    figures = mtrl.bench.compile_rates(eager, ["ew", "cagrad", "famo"], plan, lines.append)
    assert list(figures["speedup"]) == ["ew", "cagrad"]
    for name, speedup in figures["speedup"].items():
        assert speedup == pytest.approx(figures["updates_per_s_compiled"][name] / figures["updates_per_s_eager"][name])
        assert figures["compile_s"][name] > 0
    assert figures["update_host_syncs"] == {"ew": 0, "cagrad": 2}
    fns = eager.update.fns  # the eager trainer is left eager
    assert not fns.compiled and not eager.update.cudagraphs and all(not fn.enabled for fn in fns.all())
    assert len(lines) == 2
