"""``mtrl bench``: throughput of each part of a training step, measured in one process on the
current device, with the real trainer code (``Trainer.vector_step`` and ``Trainer.update_once``).

    (a) env stepping: the raw vector env (random actions, sync and async) against the trainer's
        collection (policy inference + env step + replay insert, no updates) and against the
        whole training loop (collection + one EW update per vector step);
    (b) update steps per second for EW and every balancer, and each one's ratio to EW;
    (c) the per-task-gradient step alone: one batched pass (vmap over tasks) against the
        reference codebases' K backward passes over the whole batch;
    (d) peak memory (device memory on CUDA, the process's peak RSS on CPU);
    (e) per balancer, the ``balance()`` call alone on the critic's real [K, P] gradients: its
        time, the aten operations it dispatches on the training device's tensors, its host
        synchronisations, and the host-side time of its K x K solve; and the operations and
        synchronisations of a whole update. On a GPU at MT10 sizes every operation is a kernel
        launch of a few microseconds and every synchronisation drains the queue, so these counts
        predict the GPU cost where no GPU is at hand.

Where the line between device and host runs, also on a CPU-only machine (where the training
device is the host): operations count what runs on the training device's tensors; a solve
that has crossed to the host (``mtrl.bench_counters.host_solve``: numpy, or torch on host
copies) is measured by its time, and each crossing counts as a synchronisation, as do
``.item()``-style reads (``aten._local_scalar_dense``) and device-to-host copies.

Comparisons are ratios taken in the same run, so they survive a busy machine better than
absolute rates do. A unit test never asserts a time; these figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from envs.evaluation import evaluate
from envs.forked_workers import default_workers
from envs.metaworld_fast import MetaWorldVectorEnv
from envs.strategies import VECTOR_STRATEGIES, VectorStrategy
from envs.vector import make_vector_env, reset_done
from mtrl.balancers import available_balancers
from mtrl.bench_counters import HOST
from mtrl.compile import CompiledFunction, compile_unavailable
from mtrl.config import BalancerConfig, Config, make_loss_balancers
from mtrl.logger import RunLogger
from mtrl.run_loop import make_eval_envs
from mtrl.trainer import Trainer
from mtrl.update import per_task_grads


@dataclass(frozen=True)
class BenchPlan:
    vector_steps: int  # env stepping, per strategy and kind
    train_steps: int  # vector steps of the whole loop (collection + updates)
    warmup_updates: int  # untimed, per balancer: first-call costs (allocations, vmap tracing)
    rounds: int  # of update timing, all balancers in turn
    updates: int  # timed one by one, per balancer and round (the median counts)
    grad_repeats: int  # timed repeats of each per-task-gradient method
    eval_episodes: int | None  # per task, of the timed evaluation; None: the config's eval_episodes


QUICK = BenchPlan(
    vector_steps=100, train_steps=10, warmup_updates=2, rounds=2, updates=3, grad_repeats=3, eval_episodes=2
)
FULL = BenchPlan(
    vector_steps=500, train_steps=50, warmup_updates=3, rounds=5, updates=6, grad_repeats=10, eval_episodes=None
)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, repeats: int, device: torch.device) -> float:
    """Seconds per call, the device's queue drained before and after."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def bench_trainer(cfg: Config, strategy: VectorStrategy, run_dir: Path) -> Trainer:
    cfg = copy.deepcopy(cfg)
    cfg.vector_strategy = strategy
    cfg.warmup_env_steps = 0  # the policy acts from the first step, as in steady state
    cfg.compile = "false"  # operations are counted eagerly; compile_rates compiles its own copy
    trainer = Trainer(cfg, run_dir)
    trainer.logger = RunLogger(run_dir, trainer.task_names)  # gradient statistics at update 0 go here
    return trainer


def env_rates(trainer: Trainer, plan: BenchPlan, chunk: int = 10) -> dict[str, float]:
    """Env steps (transitions over all tasks) per second: raw stepping (random actions), the
    trainer's collection without updates, and the training loop with one update per vector step
    (``cfg.balancer``). Raw and collection alternate in chunks of ``chunk`` vector steps on the
    same envs, so a load change on a shared machine hits both alike."""
    envs, K = trainer.envs, trainer.num_tasks
    rng = np.random.default_rng(0)
    obs, _ = envs.reset()
    done = np.zeros(K, dtype=bool)

    def raw_step():
        nonlocal obs, done
        obs, done = random_step(envs, obs, done, rng)

    def trainer_step():
        nonlocal obs, done
        obs, _, terminated, truncated, _ = trainer.vector_step(obs, done)
        done = terminated | truncated

    seconds = {"raw": 0.0, "collect": 0.0}
    trainer.cfg.updates_per_vector_step = 0
    chunks = max(plan.vector_steps // chunk, 1)
    for _ in range(chunks):
        for kind, step in (("raw", raw_step), ("collect", trainer_step)):
            seconds[kind] += _timed(step, chunk, trainer.device) * chunk
    steps = chunks * chunk * K
    trainer.cfg.updates_per_vector_step = 1
    for _ in range(2):  # first updates: allocations and vmap tracing, untimed
        trainer_step()
    train_s = _timed(trainer_step, plan.train_steps, trainer.device)
    return {"raw": steps / seconds["raw"], "collect": steps / seconds["collect"], "train": K / train_s}


def random_step(envs, obs: np.ndarray, done: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One raw vector step: reset what finished, then uniform random actions."""
    obs = reset_done(envs, obs, done)
    actions = rng.uniform(-1, 1, (envs.num_envs, envs.single_action_space.shape[0])).astype(np.float32)
    obs, _, terminated, truncated, _ = envs.step(actions)
    return obs, terminated | truncated


def stepping_cpu(cfg: Config, taskset, plan: BenchPlan, chunk: int = 10) -> dict[str, float]:
    """CPU microseconds per transition of raw stepping (random actions, resets included), for
    every strategy side by side: one vector env each, stepped in alternating chunks of
    ``chunk`` vector steps (3 x the plan's vector steps each, after one untimed round), so that
    a load change hits them alike. Nothing else runs meanwhile
    (no policy: torch's threads are idle), so the figure is the stepping's own cost."""
    envs = {
        s: make_vector_env(taskset, cfg.seed, s, cfg.max_episode_steps, num_goals=cfg.num_goals)
        for s in VECTOR_STRATEGIES
    }
    rng = np.random.default_rng(0)
    state = {s: (e.reset()[0], np.zeros(e.num_envs, dtype=bool)) for s, e in envs.items()}
    cpu = dict.fromkeys(envs, 0.0)
    chunks = max(3 * plan.vector_steps // chunk, 1)  # 3x: these are cheap, and the ratio is noisy
    for round_ in range(chunks + 1):
        for s, e in envs.items():
            obs, done = state[s]
            start = cpu_seconds(e)
            for _ in range(chunk):
                obs, done = random_step(e, obs, done, rng)
            if round_:  # the first round warms up (first lookups, caches), untimed
                cpu[s] += cpu_seconds(e) - start
            state[s] = obs, done
    for e in envs.values():
        e.close()
    transitions = chunks * chunk * taskset.num_tasks
    return {s: seconds / transitions * 1e6 for s, seconds in cpu.items()}


def cpu_seconds(envs) -> float:
    """CPU seconds used so far by this thread, which steps sync envs and the fast path's first
    share, and by the worker processes of an async vector env or of the fast path (from /proc,
    Linux, in clock ticks of 10 ms), so that stepping strategies compare by the CPU they cost,
    not only by wall time. torch's own threads are not counted: between parallel regions its
    OpenMP threads spin for a while, and that CPU belongs to the policy's forward pass before
    the step, not to the step."""
    total = time.thread_time()
    if isinstance(envs, MetaWorldVectorEnv):
        pids = envs.workers.pids
    else:
        pids = [process.pid for process in getattr(envs, "processes", ())]  # AsyncVectorEnv's
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


def worker_counts(num_envs: int) -> list[int]:
    """The worker counts the bench compares: 1, 2 and one per core (``env_workers: 0``), at most
    one per sub-env."""
    return sorted({min(w, num_envs) for w in (1, 2, default_workers())})


def worker_step_times(cfg: Config, taskset, policy, plan: BenchPlan, chunk: int = 10) -> dict[str, dict[int, float]]:
    """The fast path's vector step with its sub-envs spread over 1, 2, ... worker processes
    (``worker_counts``), side by side in alternating chunks of ``chunk`` vector steps (3 x the
    plan's vector steps each, after one untimed round): wall milliseconds per vector step of raw
    stepping (random actions, resets included; timed before any policy pass), the same with a
    deterministic ``policy`` pass before each step (``policy_ms``: torch's threads work and then
    spin beside the workers, as in collection on the CPU; the policy's own time included), and
    CPU microseconds per transition of the raw stepping, the workers' CPU included."""
    counts = worker_counts(taskset.num_tasks)
    envs = {
        w: make_vector_env(taskset, cfg.seed, "auto", cfg.max_episode_steps, num_goals=cfg.num_goals, workers=w)
        for w in counts
    }
    rng = np.random.default_rng(0)
    state = {w: (e.reset()[0], np.zeros(e.num_envs, dtype=bool)) for w, e in envs.items()}
    figures = {kind: dict.fromkeys(counts, 0.0) for kind in ("raw_ms", "policy_ms", "cpu_us_per_transition")}
    chunks = max(3 * plan.vector_steps // chunk, 1)

    def policy_step(e, obs, done):
        obs = reset_done(e, obs, done)
        obs, _, terminated, truncated, _ = e.step(policy(obs))
        return obs, terminated | truncated

    # all raw rounds first: after a parallel region torch's OpenMP threads (libgomp) spin for a
    # while on the cores, which would charge the policy's threads to the raw stepping after it
    for kind, step in (("raw_ms", lambda e, o, d: random_step(e, o, d, rng)), ("policy_ms", policy_step)):
        for round_ in range(chunks + 1):
            for w, e in envs.items():
                obs, done = state[w]
                start, cpu = time.perf_counter(), cpu_seconds(e)
                for _ in range(chunk):
                    obs, done = step(e, obs, done)
                if round_:  # the first round warms up, untimed
                    figures[kind][w] += time.perf_counter() - start
                    if kind == "raw_ms":
                        figures["cpu_us_per_transition"][w] += cpu_seconds(e) - cpu
                state[w] = obs, done
    for e in envs.values():
        e.close()
    vector_steps = chunks * chunk
    for w in counts:
        figures["raw_ms"][w] *= 1e3 / vector_steps
        figures["policy_ms"][w] *= 1e3 / vector_steps
        figures["cpu_us_per_transition"][w] *= 1e6 / (vector_steps * taskset.num_tasks)
    return figures


def eval_times(trainer: Trainer, plan: BenchPlan, log) -> dict:
    """Wall seconds of one evaluation (the untrained policy: episodes run to full length unless
    a task succeeds by chance) through gymnasium's sync vector env, on the fast path, and on the
    fast path with several eval envs per task (``eval_envs_per_task``; 5 when the config has 1),
    in this process and (``w<N>``) over one worker process per core. The same episodes every
    time, so the successes agree (checked here)."""
    cfg = trainer.cfg
    episodes = plan.eval_episodes or cfg.eval_episodes
    variants: list[tuple[VectorStrategy, int, int]] = [("sync", 1, 1)]
    if trainer.taskset.kind == "metaworld":
        copies = cfg.eval_envs_per_task if cfg.eval_envs_per_task > 1 else 5
        variants += [("auto", 1, 1), ("auto", copies, 1)]
        if default_workers() > 1:
            variants.append(("auto", copies, default_workers()))
    seconds, successes = {}, {}
    for strategy, copies, workers in variants:
        variant = dataclasses.replace(cfg, vector_strategy=strategy, eval_envs_per_task=copies, env_workers=workers)
        envs = make_eval_envs(variant, trainer.taskset)
        start = time.perf_counter()
        result = evaluate(
            lambda o: trainer.agent.act(o, deterministic=True), envs, trainer.task_names, episodes, seed=cfg.seed
        )
        assert result is not None  # no stop callback: the evaluation runs whole
        name = f"{strategy} x{copies}" + (f" w{workers}" if workers > 1 else "")
        seconds[name] = time.perf_counter() - start
        successes[name] = result.success
        envs.close()
        log(f"  {name}: {seconds[name]:.1f} s")
    first = next(iter(successes.values()))
    if any(s != first for s in successes.values()):
        raise RuntimeError(f"evaluations of the same episodes disagree: {successes}")
    return {"episodes_per_task": episodes, "seconds": seconds}


def update_rates(trainer: Trainer, balancers: list[str], plan: BenchPlan, log) -> dict[str, float]:
    """Updates per second for each balancer on both losses. Every round times ``plan.updates``
    updates of each balancer in turn, each from the same parameters, optimizer state and replay
    data; the rate is 1 / the median update. Rounds spread a slow drift in the machine's load
    over all balancers instead of charging it to whichever ran at the time."""
    start_state = _snapshot(trainer)
    instances = {
        name: make_loss_balancers(BalancerConfig(critic=name, actor=name), trainer.task_names) for name in balancers
    }
    seconds: dict[str, list[float]] = {name: [] for name in balancers}
    for round_ in range(plan.rounds):
        for name in balancers:
            _restore(trainer, start_state)
            trainer.update.balancers = instances[name]
            trainer.counters.updates = 1  # gradient statistics every grad_stats_every updates, as in a run
            for _ in range(plan.warmup_updates if round_ == 0 else 1):
                trainer.update_once()
            seconds[name] += [_timed(trainer.update_once, 1, trainer.device) for _ in range(plan.updates)]
    rates = {name: 1.0 / float(np.median(s)) for name, s in seconds.items()}
    for name, rate in rates.items():
        log(f"  updates/s {name:<18} {rate:8.2f}")
    return rates


COMPILED = ("ew", "imgrad", "cagrad", "nash_mtl", "db_mtl")  # EW and the required balancers


def compile_rates(trainer: Trainer, balancers: list[str], plan: BenchPlan, log) -> dict[str, dict[str, float]]:
    """compile on against off (mtrl.compile) for EW and the required balancers among
    ``balancers``: updates per second of each (every round times both, eager first, from the
    same state, as :func:`update_rates` does), the seconds spent compiling the functions a run
    with it compiles (the first update, a gradient-statistics one, compiles the per-task-gradient
    path of every balancer too), and the host synchronisations of one compiled update. The
    compiled graphs hold no host read (they compile with fullgraph=True), so those are the
    balancer's own crossings (``HOST.syncs``). Operations are not counted here: torch.compile
    refuses a TorchDispatchMode, and a compiled graph's fused kernels are not aten operations."""
    names = [name for name in COMPILED if name in balancers]
    eager_fns = trainer.update.fns
    compiled_fns = trainer.update.device_functions(compiled=True)
    start_state = _snapshot(trainer)
    instances = {
        name: make_loss_balancers(BalancerConfig(critic=name, actor=name), trainer.task_names) for name in names
    }
    seconds: dict[tuple[str, str], list[float]] = {(name, mode): [] for name in names for mode in ("eager", "compiled")}
    figures: dict[str, dict[str, float]] = {"compile_s": {}, "update_host_syncs": {}}
    try:
        for round_ in range(plan.rounds):
            for name in names:
                for mode, fns in (("eager", eager_fns), ("compiled", compiled_fns)):
                    _restore(trainer, start_state)
                    trainer.update.balancers, trainer.update.fns = instances[name], fns
                    trainer.counters.updates = 0 if round_ == 0 else 1  # update 0 takes gradient statistics
                    for _ in range(plan.warmup_updates if round_ == 0 else 1):
                        trainer.update_once()
                    seconds[name, mode] += [_timed(trainer.update_once, 1, trainer.device) for _ in range(plan.updates)]
                    if mode == "compiled" and round_ == 0:
                        figures["compile_s"][name] = sum(fn.compile_s for fn in _compiled_functions(trainer))
                        syncs = HOST.syncs
                        trainer.update_once()
                        figures["update_host_syncs"][name] = HOST.syncs - syncs
    finally:
        trainer.update.fns = eager_fns
    for mode in ("eager", "compiled"):
        figures[f"updates_per_s_{mode}"] = {name: 1.0 / float(np.median(seconds[name, mode])) for name in names}
    figures["speedup"] = {
        name: figures["updates_per_s_compiled"][name] / figures["updates_per_s_eager"][name] for name in names
    }
    for name in names:
        log(
            f"  {name:<10} eager {figures['updates_per_s_eager'][name]:7.2f}  compiled "
            f"{figures['updates_per_s_compiled'][name]:7.2f} updates/s  (x{figures['speedup'][name]:.2f}, "
            f"compiled in {figures['compile_s'][name]:.1f} s)"
        )
    return figures


def _compiled_functions(trainer: Trainer) -> list[CompiledFunction]:
    """The device functions a run with the trainer's balancers compiles: the targets, the
    per-task-gradient path (every balancer's, at gradient-statistics updates) and, for a
    loss-only balancer that torch.compile can trace, its loss step."""
    update = trainer.update
    used = [update.fns.critic_targets]
    for loss, fns in ((update.critic, update.fns.critic), (update.actor, update.fns.actor)):
        balancer = update.balancers[loss.name]
        used += [fns.task_gradients, fns.apply_direction]
        if not balancer.needs_grads and balancer.traceable:
            used.append(fns.weighted_gradients)
    return used


def _snapshot(trainer: Trainer) -> dict:
    """The parameters and optimizer states that every balancer's timing starts from."""
    optimizers = [loss.optimizer.state_dict() for loss in trainer.update.losses]
    return copy.deepcopy({"agent": trainer.agent.state_dict(), "optimizers": optimizers})


def _restore(trainer: Trainer, state: dict) -> None:
    trainer.agent.load_state_dict(state["agent"])
    for loss, saved in zip(trainer.update.losses, state["optimizers"], strict=True):
        loss.optimizer.load_state_dict(saved)


class CountOps(TorchDispatchMode):
    """Counts, inside the ``with`` block, the aten operations dispatched on the training device's
    tensors (one per kernel launch) and the host synchronisations: reads of a tensor value
    (``aten._local_scalar_dense``), device-to-host copies, and the explicit crossings of the
    host solvers (``HOST.syncs``). Operations inside a host solve are host work and not counted."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self.syncs = 0

    def __enter__(self):
        self._host_syncs = HOST.syncs
        return super().__enter__()

    def __exit__(self, *exc):
        self.syncs += HOST.syncs - self._host_syncs
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if HOST.depth == 0:
            self.count += 1
            if func is torch.ops.aten._local_scalar_dense.default or _device_to_host(func, args, kwargs):
                self.syncs += 1
        return func(*args, **kwargs)


def _device_to_host(func, args, kwargs) -> bool:
    if func is torch.ops.aten._to_copy.default:
        target = kwargs.get("device")
        return target is not None and torch.device(target).type == "cpu" and args[0].device.type != "cpu"
    if func is torch.ops.aten.copy_.default:
        return args[0].device.type == "cpu" and args[1].device.type != "cpu"
    return False


def balance_costs(trainer: Trainer, balancers: list[str], plan: BenchPlan) -> dict[str, dict[str, float]]:
    """The balance() call alone on the critic's per-task gradients of one batch, as the trainer
    passes them: seconds per call (median), operations and host synchronisations per call, and the
    host-side solve time (median); then the operations and synchronisations of one whole update
    (critic and actor, no gradient statistics) with that balancer on both losses."""
    agent = trainer.agent
    batch = trainer.buffer.sample(trainer.cfg.batch_size)
    update = trainer.update
    target = update.fns.critic_targets(batch, agent.noise(batch.next_obs))
    ok = torch.ones((), dtype=torch.bool, device=trainer.device)
    # the trainer's own step, so the gradients are those of the shared parameters, detached: taken
    # over the shared ones alone, a multi-head critic's heads would stay in the autograd graph, and
    # a host solver cannot read a tensor that requires grad
    grads, _, losses, _, _ = update.fns.critic.task_gradients(
        update.critic.params, update.critic.heads, (batch.obs, batch.actions, target), ok
    )
    start_state = _snapshot(trainer)
    costs = {}
    for name in balancers:
        balancer = make_loss_balancers(BalancerConfig(critic=name, actor=name), trainer.task_names)["critic"]
        g = grads if balancer.needs_grads else None
        balancer.balance(g, losses)  # first call: lazy state, allocations
        with CountOps() as ops:
            balancer.balance(g, losses)
        seconds, host = [], []
        for _ in range(plan.rounds * plan.updates):
            solve_before = HOST.solve_s
            seconds.append(_timed(lambda: balancer.balance(g, losses), 1, trainer.device))  # noqa: B023
            host.append(HOST.solve_s - solve_before)
        update.balancers = make_loss_balancers(BalancerConfig(critic=name, actor=name), trainer.task_names)
        trainer.counters.updates = 1  # not a gradient-statistics update
        trainer.update_once()  # first update: lazy state
        with CountOps() as update_ops:
            trainer.update_once()
        _restore(trainer, start_state)
        costs[name] = {
            "seconds": float(np.median(seconds)),
            "ops": ops.count,
            "host_syncs": ops.syncs,
            "host_s": float(np.median(host)),
            "update_ops": update_ops.count,
            "update_host_syncs": update_ops.syncs,
        }
    return costs


def pertask_grad_times(trainer: Trainer, plan: BenchPlan) -> dict[str, float]:
    """Seconds for all K per-task gradients of both losses on one stratified batch: the batched
    pass (mtrl.update.per_task_grads) against K ``autograd.grad`` calls through one whole-batch graph, as the
    reference codebases do. Also the largest difference between the two (they must agree)."""
    agent, K = trainer.agent, trainer.num_tasks
    batch = trainer.buffer.sample(trainer.cfg.batch_size)
    target = agent.critic_targets(batch)
    eps, alpha = agent.noise(batch.obs), agent.alpha()
    # over the parameters the trainer's pass takes them of: with the heads of a multi-head network
    # left out, their gradient would stay in the autograd graph
    params = {loss.name: {**loss.params, **loss.heads} for loss in trainer.update.losses}
    critic_loss = lambda p, o, a, y: (agent.critic_loss(p, o, a, y), ())  # noqa: E731
    cases = {
        "critic": (critic_loss, params["critic"], (batch.obs, batch.actions, target)),
        "actor": (agent.actor_loss, params["actor"], (batch.obs, eps, alpha)),
    }

    def batched(loss_fn, params, args):
        return per_task_grads(loss_fn, params, *args)[0]

    def loop(loss_fn, params, args):
        losses = loss_fn(params, *args)[0]
        rows = []
        for t in range(K):
            g = torch.autograd.grad(losses[t], list(params.values()), retain_graph=t < K - 1)
            rows.append(torch.cat([x.reshape(-1) for x in g]))
        return torch.stack(rows)

    out = {"batched_s": 0.0, "loop_s": 0.0, "max_abs_diff": 0.0}
    for loss_fn, loss_params, args in cases.values():
        diff = (batched(loss_fn, loss_params, args) - loop(loss_fn, loss_params, args)).abs().max()
        out["max_abs_diff"] = max(out["max_abs_diff"], float(diff))
        out["batched_s"] += _timed(lambda: batched(loss_fn, loss_params, args), plan.grad_repeats, trainer.device)  # noqa: B023
        out["loop_s"] += _timed(lambda: loop(loss_fn, loss_params, args), plan.grad_repeats, trainer.device)  # noqa: B023
    return out


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_bench(cfg: Config, quick: bool, balancers: list[str] | None = None, log=None) -> dict:
    """All four measurements; returns the figures (the JSON that ``--json`` writes)."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    plan = QUICK if quick else FULL
    balancers = balancers or available_balancers()
    balancers = ["ew", *[b for b in balancers if b != "ew"]]  # every ratio is to EW
    figures: dict = {"env_steps_per_s_raw": {}, "env_steps_per_s_collect": {}, "env_steps_per_s_train": {}}
    with tempfile.TemporaryDirectory(prefix="mtrl-bench-") as tmp:
        # the configured strategy last: its trainer (replay filled by collection) is reused below
        strategies = sorted(VECTOR_STRATEGIES, key=lambda s: s == cfg.vector_strategy)
        for strategy in strategies:
            log(f"env stepping ({strategy}) on {cfg.taskset} ...")
            trainer = bench_trainer(cfg, strategy, Path(tmp) / strategy)
            rates = env_rates(trainer, plan)
            for kind, rate in rates.items():
                figures[f"env_steps_per_s_{kind}"][strategy] = rate
            log(
                f"  raw {rates['raw']:.0f}  collect {rates['collect']:.0f}  train (EW) {rates['train']:.0f} env steps/s"
            )
            if strategy != cfg.vector_strategy:
                trainer.close()
        log("raw stepping CPU per transition, the strategies side by side ...")
        figures["cpu_us_per_transition_raw"] = stepping_cpu(cfg, trainer.taskset, plan)
        log("  " + "  ".join(f"{s} {us:.0f} us" for s, us in figures["cpu_us_per_transition_raw"].items()))
        if trainer.taskset.kind == "metaworld":
            counts = ", ".join(map(str, worker_counts(trainer.num_tasks)))
            log(f"fast-path vector step over {counts} env worker processes ...")
            workers = worker_step_times(cfg, trainer.taskset, lambda o: trainer.agent.act(o, deterministic=True), plan)
            for w in workers["raw_ms"]:
                log(
                    f"  {w} workers: raw {workers['raw_ms'][w]:.2f} ms, "
                    f"after a policy pass {workers['policy_ms'][w]:.2f} ms "
                    f"per vector step; {workers['cpu_us_per_transition'][w]:.0f} CPU-us per transition"
                )
            figures["env_workers"] = workers
        log(f"one evaluation ({plan.eval_episodes or cfg.eval_episodes} episodes per task) ...")
        evaluation = eval_times(trainer, plan, log)
        log("per-task gradients: batched pass vs K backward passes ...")
        grads = pertask_grad_times(trainer, plan)
        log(f"  batched {grads['batched_s'] * 1e3:.1f} ms  loop {grads['loop_s'] * 1e3:.1f} ms")
        log(f"update steps, {len(balancers)} balancers ...")
        updates = update_rates(trainer, balancers, plan, log)
        log("balance() alone ...")
        balance = balance_costs(trainer, balancers, plan)
        compiled = None
        why_not = compile_unavailable(trainer.device)
        if cfg.compile == "false" or why_not:
            log(f"compile on and off: not measured ({'compile=false' if not why_not else why_not})")
        else:
            log("compile on and off (the first compiled updates compile: seconds to minutes) ...")
            compiled = compile_rates(trainer, balancers, plan, log)
        trainer.close()

    K = trainer.num_tasks
    collect = figures["env_steps_per_s_collect"][cfg.vector_strategy]
    total_updates = max(cfg.total_env_steps - cfg.warmup_env_steps, 0) / K * cfg.updates_per_vector_step
    figures.update(
        {
            "device": device_name(trainer.device),
            "date": datetime.date.today().isoformat(),
            "torch": torch.__version__,
            "quick": quick,
            "taskset": cfg.taskset,
            "num_tasks": K,
            "batch_size": cfg.batch_size,
            "hidden_sizes": list(cfg.sac.hidden_sizes),
            "vector_strategy": cfg.vector_strategy,
            "collect_vs_raw": {
                s: figures["env_steps_per_s_collect"][s] / figures["env_steps_per_s_raw"][s] for s in strategies
            },
            "updates_per_s": updates,
            "update_ratio_vs_ew": {name: updates["ew"] / rate for name, rate in updates.items()},
            "balance_s": {name: c["seconds"] for name, c in balance.items()},
            "balance_ops": {name: c["ops"] for name, c in balance.items()},
            "balance_host_syncs": {name: c["host_syncs"] for name, c in balance.items()},
            "balance_host_s": {name: c["host_s"] for name, c in balance.items()},
            "update_ops": {name: c["update_ops"] for name, c in balance.items()},
            "update_host_syncs": {name: c["update_host_syncs"] for name, c in balance.items()},
            "compile": compiled,  # None when not measured
            "pertask_grad_s": {"batched": grads["batched_s"], "loop": grads["loop_s"]},
            "pertask_grad_max_abs_diff": grads["max_abs_diff"],
            "pertask_grad_speedup": grads["loop_s"] / grads["batched_s"],
            "peak_memory_mb": peak_memory_mb(trainer.device),
            # collection and updates in sequence (sync); evaluation not included
            "projected_full_run_hours": {
                name: (cfg.total_env_steps / collect + total_updates / rate) / 3600 for name, rate in updates.items()
            },
            "projected_phase_hours": projected_phases(
                cfg, K, collect, figures["env_steps_per_s_raw"][cfg.vector_strategy], updates["ew"]
            ),
            "eval_s": evaluation,
            "cpu_vs_sync": {
                s: figures["cpu_us_per_transition_raw"]["sync"] / figures["cpu_us_per_transition_raw"][s]
                for s in strategies
            },
        }
    )
    return figures


def projected_phases(cfg: Config, num_tasks: int, collect_rate: float, raw_rate: float, ew_update_rate: float) -> dict:
    """Hours of a full run of ``cfg`` by phase, from the measured rates: collection (env steps at
    the collection rate), EW updates, and evaluation as an upper bound: every evaluation of the
    schedule runs ``eval_episodes`` episodes per task at full length (an untrained policy never
    succeeds early), stepped at the raw stepping rate (the policy's own forward passes not
    counted)."""
    evaluations = cfg.total_env_steps // cfg.eval_every
    eval_transitions = evaluations * cfg.eval_episodes * num_tasks * cfg.max_episode_steps
    total_updates = max(cfg.total_env_steps - cfg.warmup_env_steps, 0) / num_tasks * cfg.updates_per_vector_step
    return {
        "collection": cfg.total_env_steps / collect_rate / 3600,
        "updates": total_updates / ew_update_rate / 3600,
        "evaluation": eval_transitions / raw_rate / 3600,
        "evaluations": evaluations,
        "eval_transitions": eval_transitions,
    }


def format_table(f: dict) -> str:
    lines = [
        f"device: {f['device']}   torch {f['torch']}   {f['taskset']} (K={f['num_tasks']}), batch {f['batch_size']}, "
        f"hidden {f['hidden_sizes']}, {'quick' if f['quick'] else 'full'} plan",
        "",
        f"{'env steps/s':<22}{'raw':>10}{'collect':>10}{'collect/raw':>13}{'train (EW)':>12}{'raw CPU-us/tr':>15}"
        f"{'CPU vs sync':>13}",
    ]
    for s in f["env_steps_per_s_raw"]:
        lines.append(
            f"{s:<22}{f['env_steps_per_s_raw'][s]:>10.0f}{f['env_steps_per_s_collect'][s]:>10.0f}"
            f"{f['collect_vs_raw'][s]:>13.2f}{f['env_steps_per_s_train'][s]:>12.0f}"
            f"{f['cpu_us_per_transition_raw'][s]:>15.0f}{f['cpu_vs_sync'][s]:>12.2f}x"
        )
    if f.get("env_workers"):
        w = f["env_workers"]
        lines.append(
            "fast-path vector step over env worker processes (ms raw / after a policy pass, CPU-us per "
            "transition): "
            + ", ".join(
                f"{n} workers {w['raw_ms'][n]:.2f} / {w['policy_ms'][n]:.2f}, {w['cpu_us_per_transition'][n]:.0f}"
                for n in w["raw_ms"]
            )
        )
    e = f["eval_s"]
    lines.append(
        f"one evaluation, {e['episodes_per_task']} episodes per task, untrained policy: "
        + ", ".join(f"{name} {sec:.1f} s" for name, sec in e["seconds"].items())
    )
    p = f["projected_phase_hours"]
    lines += [
        f"full run of this config ({f['vector_strategy']}, EW): collection {p['collection']:.2f} h + updates "
        f"{p['updates']:.2f} h + evaluation <= {p['evaluation']:.2f} h ({p['evaluations']} evaluations, "
        f"{p['eval_transitions']:,} transitions at full episode length, at the raw stepping rate)",
    ]
    lines += [
        "",
        f"{'balancer':<20}{'updates/s':>10}{'x EW time':>11}{'full run (h)':>14}{'balance ms':>12}{'ops':>7}"
        f"{'syncs':>7}{'host ms':>9}{'update ops':>12}{'upd syncs':>11}",
    ]
    for name, rate in f["updates_per_s"].items():
        lines.append(
            f"{name:<20}{rate:>10.2f}{f['update_ratio_vs_ew'][name]:>11.2f}{f['projected_full_run_hours'][name]:>14.1f}"
            f"{f['balance_s'][name] * 1e3:>12.2f}{f['balance_ops'][name]:>7d}{f['balance_host_syncs'][name]:>7d}"
            f"{f['balance_host_s'][name] * 1e3:>9.3f}{f['update_ops'][name]:>12d}{f['update_host_syncs'][name]:>11d}"
        )
    g = f["pertask_grad_s"]
    lines += [
        "",
        f"per-task gradients (critic + actor): batched {g['batched'] * 1e3:.1f} ms, K backward passes "
        f"{g['loop'] * 1e3:.1f} ms, speedup {f['pertask_grad_speedup']:.2f}x "
        f"(max |diff| {f['pertask_grad_max_abs_diff']:.1e})",
        f"peak memory: {f['peak_memory_mb']:.0f} MB ({'device' if 'cpu' not in f['device'] else 'process RSS'})",
    ]
    c = f["compile"]
    if c:
        lines += [
            "",
            f"{'compile on/off':<20}{'eager upd/s':>12}{'compiled':>10}{'speedup':>9}"
            f"{'compile s':>11}{'upd syncs':>11}",
        ]
        for name in c["speedup"]:
            lines.append(
                f"{name:<20}{c['updates_per_s_eager'][name]:>12.2f}{c['updates_per_s_compiled'][name]:>10.2f}"
                f"{c['speedup'][name]:>9.2f}{c['compile_s'][name]:>11.1f}{c['update_host_syncs'][name]:>11d}"
            )
    return "\n".join(lines)
