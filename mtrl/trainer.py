"""The training loop: collect -> store -> update -> evaluate -> log -> checkpoint.

Read top to bottom: ``Trainer.train`` is the loop, ``_update`` one SAC update, and
``_optimizer_step`` the one place where per-task losses become a parameter update.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from agents.mtsac import CRITIC_LOSS, MTSAC
from envs.evaluation import EvalResult, evaluate
from envs.forked_workers import default_workers
from envs.metaworld_fast import MetaWorldVectorEnv
from envs.tasksets import TaskSet, get_taskset
from envs.vector import env_rng_state, load_env_rng_state, make_vector_env, reset_done
from mtrl.checkpoint import load_latest_checkpoint, save_checkpoint
from mtrl.compile import CompiledFunction, resolve_compile
from mtrl.config import Config, ConfigError, balancer_stages, make_loss_balancers, save_config, to_dict
from mtrl.gradients import gradient_statistics
from mtrl.logger import RunLogger, truncate_eval_log, write_summary
from mtrl.progress import TrainProgress
from mtrl.replay import ReplayBuffer
from mtrl.update_steps import apply_direction, task_gradients, weighted_gradients

CHECKPOINT_VERSION = 1
SUCCESS_MEMORY = 10  # training episodes behind each task's recent success (``task_success``)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was asked for but torch sees no CUDA device; use device=cpu or auto")
    return torch.device(name)


class NonFiniteError(RuntimeError):
    """Too many updates in a row had non-finite values; the run stops, its checkpoints intact."""


def _catch_stop_signals(trainer: "Trainer") -> dict:
    """SIGINT/SIGTERM set ``trainer.stop_signal``; the loop finishes its vector step's updates,
    skips or abandons an evaluation, checkpoints and returns. Only the main thread can install
    handlers; elsewhere signals act as usual."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def request_stop(signum, frame):
        trainer.stop_signal = signum

    return {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(handlers: dict) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def resolve_env_workers(cfg: Config) -> int:
    """The processes that step a run's envs (``env_workers``; 0 chooses). On the fast path with
    the networks on a GPU: one per core this process may use, at most one per sub-env. With the
    networks on the CPU: 1, since torch's own threads use the cores between the steps and spin
    on them for a while after each parallel region; on the 2-core CPU a collection step (policy
    pass + MT10 step) took 1.9 ms with 2 workers beside torch's 2 threads against 1.6 ms with 1
    (docs/benchmarks.md). Off the fast path: 1."""
    if cfg.env_workers:
        return cfg.env_workers
    if cfg.vector_strategy != "auto" or get_taskset(cfg.taskset).kind != "metaworld":
        return 1
    return default_workers() if resolve_device(cfg.device).type == "cuda" else 1


def make_eval_envs(cfg: Config, taskset: TaskSet) -> gym.vector.VectorEnv:
    """The evaluation envs of a run: episodes end at the first success, and on the fast path
    ``eval_envs_per_task`` copies of each task share its episodes (``envs.evaluation.evaluate``)."""
    return make_vector_env(taskset, cfg.seed, cfg.vector_strategy, cfg.max_episode_steps, terminate_on_success=True,
                           num_goals=cfg.num_goals, copies=cfg.eval_envs_per_task, workers=resolve_env_workers(cfg))  # fmt: skip


def next_mark(mark: int, every: int, step: int) -> int:
    """The first point of the schedule mark, mark + every, ... that lies after ``step``: a
    schedule stays on its grid even when a vector step (K env steps) jumps over a point."""
    while mark <= step:
        mark += every
    return mark


@dataclass
class Counters:
    """Progress that a resume must restore exactly."""

    env_steps: int = 0  # transitions over all tasks
    updates: int = 0
    next_eval: int = 0
    next_checkpoint: int = 0
    next_log: int = 0
    wall_time_s: float = 0.0  # summed over all processes of this run
    best_success_mean: float = -1.0
    last_eval_step: int = -1
    nonfinite_skipped: int = 0  # updates skipped for a non-finite loss, gradient or direction
    nonfinite_in_row: int = 0  # (both as of the last read of the device-side counts)


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path, resume_state: dict | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.taskset = get_taskset(cfg.taskset)
        self.task_names = self.taskset.tasks
        self.num_tasks = self.taskset.num_tasks
        self.device = resolve_device(cfg.device)
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.action_rng = np.random.default_rng(cfg.seed)  # warm-up random actions

        self.envs = make_vector_env(self.taskset, cfg.seed, cfg.vector_strategy, cfg.max_episode_steps, num_goals=cfg.num_goals,
                                    workers=resolve_env_workers(cfg))  # fmt: skip
        if isinstance(self.envs, MetaWorldVectorEnv) and self.envs.uncovered:
            self._announce(f"fast path: {', '.join(self.envs.uncovered)} run Meta-World's own reward code (exact, slower)")
        if isinstance(self.envs, MetaWorldVectorEnv) and len(self.envs.workers.shares) > 1:
            self._announce(f"fast path: the {self.num_tasks} sub-envs stepped by {len(self.envs.workers.shares)} processes")
        self.eval_envs = None  # built at the first evaluation
        obs_dim = self.envs.single_observation_space.shape[0]
        self.action_dim = self.envs.single_action_space.shape[0]

        self.agent = MTSAC(obs_dim, self.action_dim, self.num_tasks, cfg.sac).to(self.device)
        # shared parameters per loss, balanced; the task-specific ones (multi-head SAC's output
        # layers, the per-task temperatures) each get only their own task's gradient
        self.params, self.head_params = {}, {}
        for loss in ("critic", "actor"):
            self.params[loss], self.head_params[loss] = self.agent.split_params(getattr(self.agent, loss))
        # fused Adam: one kernel over all parameters instead of several per tensor (CPU and CUDA)
        eps = cfg.sac.adam_eps
        self.optimizers = {
            loss: torch.optim.Adam([*self.params[loss].values(), *self.head_params[loss].values()], lr=lr, eps=eps, fused=True)
            for loss, lr in (("critic", cfg.sac.critic_lr), ("actor", cfg.sac.actor_lr))
        }
        # the update's device work (mtrl.update_steps), compiled or eager (config key compile)
        self.compiled = resolve_compile(cfg.compile, self.device, warn=self._announce)
        self.cudagraphs = self.compiled and self.device.type == "cuda"
        self.steps = self._step_functions()
        # staged balancing: stage i's balancers make the updates while env_steps < its until;
        # each stage's are built when it starts, so no state passes from one stage to the next
        self.stages = balancer_stages(cfg.balancer)
        self.stage = 0
        self.stage_logged_at = -1
        self.balancers = make_loss_balancers(self.stages[0], self.task_names)
        # each task's recent training success, for the balancers driven by it (on the device,
        # so that passing it costs no transfer per update); updated at every episode end
        self.episodes = np.zeros(self.num_tasks, dtype=np.int64)
        self.success_avg = np.zeros(self.num_tasks)
        self.task_success = torch.zeros(self.num_tasks, device=self.device)
        self.alpha_opt = torch.optim.Adam([self.agent.log_alpha], lr=cfg.sac.alpha_lr, eps=eps, fused=True)
        self.buffer = ReplayBuffer(self.num_tasks, cfg.buffer_size, obs_dim, self.action_dim, self.device, cfg.seed)

        self.counters = Counters(next_eval=cfg.eval_every, next_checkpoint=cfg.checkpoint_every, next_log=cfg.log_every)
        self.last_losses: dict[str, torch.Tensor] = {}
        self.last_eval: EvalResult | None = None
        self.stop_signal: int | None = None
        # (env steps, last evaluation's step) of the state the last checkpoint holds, written or loaded:
        # a stop there needs no checkpoint of its own
        self.checkpointed: tuple[int, int] | None = None
        self.resumed = resume_state is not None
        if resume_state is not None:
            self._load_state(resume_state)
        # [skipped, in a row, longest run in a row since the last read], counted on the device:
        # deciding to skip an update needs no host read (see _update)
        c = self.counters
        self.nonfinite = torch.tensor([c.nonfinite_skipped, c.nonfinite_in_row, c.nonfinite_in_row], device=self.device)
        self._nonfinite_keep = torch.tensor([1, 0, 1], device=self.device)  # after a good update
        self._nonfinite_add = torch.tensor([1, 1, 0], device=self.device)  # after a skipped one

    def _step_functions(self) -> dict:
        """The device functions of an update (mtrl.update_steps) with the losses bound, each
        wrapped to compile on its first call when ``self.compiled``."""
        if self.compiled:
            # a process trains one trainer at a time; the compiled code of an earlier one (guarded on
            # its modules) would only count toward torch.compile's recompilation limit
            torch._dynamo.reset()
        agent, strict = self.agent, self.cfg.compile == "true"

        def wrap(fn, name: str) -> CompiledFunction:
            return CompiledFunction(fn, name, self.compiled, self.device, strict, self._announce, self._compiled_in)

        def critic_loss(params, obs, actions, target):
            return agent.critic_loss(params, obs, actions, target), ()

        steps = {"critic_targets": wrap(agent.critic_targets, "the critic targets")}
        for loss, loss_fn in (("critic", critic_loss), ("actor", agent.actor_loss)):
            steps[loss, "task_gradients"] = wrap(
                lambda params, heads, task_args, ok, fn=loss_fn: task_gradients(fn, params, heads, task_args, ok),
                f"the {loss}'s per-task gradients")  # fmt: skip
            steps[loss, "apply_direction"] = wrap(apply_direction, f"the {loss}'s direction to gradients")
            steps[loss, "weighted_gradients"] = wrap(
                lambda *args, fn=loss_fn: weighted_gradients(fn, *args), f"the {loss}'s weighted loss step")
        return steps

    def _compiled_in(self, seconds: float) -> None:
        """Compile time is one-off: out of the progress estimate."""
        progress = getattr(self, "progress", None)
        if progress is not None:
            progress.exclude(seconds)

    def _announce(self, line: str) -> None:
        """A line of its own in the progress output (stderr before training starts)."""
        progress = getattr(self, "progress", None)
        if progress is not None:
            progress.message(line)
        else:
            print(line, file=sys.stderr, flush=True)

    # --- the loop -------------------------------------------------------------------------------
    def train(self) -> dict:
        cfg, c, K = self.cfg, self.counters, self.num_tasks
        # the events at the checkpoint's own step (its evaluation, its log) came before it: keep them
        self.logger = RunLogger(self.run_dir, self.task_names, purge_step=c.env_steps + 1 if self.resumed else None)
        obs, _ = self.envs.reset()  # on resume: the reset that the checkpoint stood before
        done = np.zeros(K, dtype=bool)
        ep_return = np.zeros(K)
        ep_success = np.zeros(K, dtype=bool)
        wall_mark = time.time()  # wall time up to here is already counted in c.wall_time_s
        last_log_time, last_log_steps, last_log_updates = wall_mark, c.env_steps, c.updates
        self.stop_signal = None
        handlers = _catch_stop_signals(self)
        self.progress = TrainProgress(cfg.total_env_steps, c.env_steps, cfg.warmup_env_steps)

        try:
            # a stop checkpoint can stand before the evaluation due at its step (a stop skips or
            # abandons one): it runs first, at that step, on the parameters it was due for
            if c.next_eval <= c.env_steps < cfg.total_env_steps:
                self._due_evaluation()
            while self.stop_signal is None and c.env_steps < cfg.total_env_steps:
                obs, reward, terminated, truncated, info = self._vector_step(obs, done)
                ep_return += reward
                ep_success |= np.asarray(info["success"], dtype=float) > 0
                self.progress.advance(K)

                done = terminated | truncated
                if done.any():
                    ended = list(np.flatnonzero(done))
                    self.logger.per_task("train/success_rate", ep_success.astype(float), c.env_steps, ended)
                    self._record_success(ended, ep_success)
                    self.logger.per_task("train/return", ep_return, c.env_steps, ended)
                    ep_return[done], ep_success[done] = 0.0, False
                # An evaluation takes as long as thousands of updates: a stop signal skips the one
                # due, or abandons it, and the resume runs it. The log (milliseconds) still runs.
                if c.env_steps >= c.next_eval and self.stop_signal is None:
                    self._due_evaluation()
                if c.env_steps >= c.next_log:
                    now = time.time()
                    seconds = max(now - last_log_time, 1e-9)
                    env_rate, update_rate = (c.env_steps - last_log_steps) / seconds, (c.updates - last_log_updates) / seconds
                    self._log_train(env_rate, update_rate)
                    success = None if self.last_eval is None else self.last_eval.success_mean
                    self.progress.interval(c.env_steps, env_rate, update_rate, success)
                    last_log_time, last_log_steps, last_log_updates = now, c.env_steps, c.updates
                    c.next_log = next_mark(c.next_log, cfg.log_every, c.env_steps)
                # Checkpoints stand between two episodes (every sub-env finished, none reset yet), so
                # a resume restores the envs' RNGs, resets, and samples the same next goals. Task sets
                # whose episodes end at different times (gymnasium envs) may never get there: they
                # checkpoint when due, mid-episode, and a resume starts fresh episodes.
                if (done.all() or not self.taskset.synchronized_episodes) and c.env_steps >= c.next_checkpoint and c.env_steps < cfg.total_env_steps:
                    self._checkpoint(time.time() - wall_mark)
                    wall_mark = time.time()
                    c.next_checkpoint = next_mark(c.next_checkpoint, cfg.checkpoint_every, c.env_steps)
            if self.stop_signal is None and c.last_eval_step != c.env_steps:
                self._evaluate()
        except BaseException:
            self._close()  # TensorBoard events so far are flushed; the checkpoints stay as they are
            _restore_signals(handlers)
            raise
        finally:
            self.progress.close()
        try:
            # after the final evaluation, finishing costs what stopping would (a checkpoint): finish
            if self.stop_signal is not None and (c.env_steps < cfg.total_env_steps or c.last_eval_step != c.env_steps):
                # A signal during a checkpoint write finds the state written already. Otherwise the stop
                # checkpoint stands mid-episode, possibly: a resume keeps the collected transitions
                # and starts fresh episodes.
                if self.checkpointed != (c.env_steps, c.last_eval_step):
                    self._checkpoint(time.time() - wall_mark)
                self._close()
                return {"stopped_by": signal.Signals(self.stop_signal).name, "env_steps": c.env_steps}
            self._checkpoint(time.time() - wall_mark)
            summary = self._write_summary()
            self._close()
            return summary
        finally:
            _restore_signals(handlers)  # only now: a signal during the final checkpoint or summary is ignored

    def _close(self) -> None:
        self.logger.close()
        self.envs.close()
        if self.eval_envs is not None:
            self.eval_envs.close()

    # --- one vector step ------------------------------------------------------------------------
    def _vector_step(self, obs: np.ndarray, done: np.ndarray) -> tuple:
        """Reset the finished sub-envs, act, step every task's env, store the K transitions and
        take ``updates_per_vector_step`` updates once the warm-up is over.

        With async envs (``vector_strategy: async``) the updates run while the worker processes
        simulate, so learning and simulation overlap; the updates then sample the buffer without
        this step's transitions, a one-step lag that does not matter to off-policy SAC. With sync
        envs the two alternate in one process, and the transitions are stored first.
        Returns what ``envs.step`` returns; ``c.env_steps`` counts the K transitions before the
        updates run, so everything they log carries this step."""
        c, cfg, K = self.counters, self.cfg, self.num_tasks
        obs = reset_done(self.envs, obs, done)
        if c.env_steps < cfg.warmup_env_steps:
            actions = self.action_rng.uniform(-1.0, 1.0, (K, self.action_dim)).astype(np.float32)
        else:
            actions = self.agent.act(obs, deterministic=False)
        overlap = cfg.vector_strategy == "async"
        stored = c.env_steps + (0 if overlap else K)  # transitions in the buffer when the updates sample
        learn = stored > cfg.warmup_env_steps
        if overlap:
            self.envs.step_async(actions)
            c.env_steps += K
            if learn:
                self._updates()
            next_obs, reward, terminated, truncated, info = self.envs.step_wait()
            self.buffer.add(*self._tensors(obs, actions, reward, terminated, next_obs))
        else:
            next_obs, reward, terminated, truncated, info = self.envs.step(actions)
            # autoreset is off: next_obs is the true final observation also when truncated
            self.buffer.add(*self._tensors(obs, actions, reward, terminated, next_obs))
            c.env_steps += K
            if learn:
                self._updates()
        return next_obs, reward, terminated, truncated, info

    def _updates(self) -> None:
        self._enter_due_stage()
        for _ in range(self.cfg.updates_per_vector_step):
            self._update()

    def _enter_due_stage(self) -> None:
        """Switch to the stage that the env-step count has reached, with fresh balancers."""
        c, stage = self.counters, self.stage
        while self.stages[stage].until is not None and c.env_steps >= self.stages[stage].until:
            stage += 1  # a stage that ended before any update (inside the warm-up) is skipped
        if stage != self.stage:
            self.stage = stage
            self.balancers = make_loss_balancers(self.stages[stage], self.task_names)
            for loss, balancer in self.balancers.items():
                if balancer.traceable and not balancer.needs_grads:  # compiled into the loss step: traced anew
                    self.steps[loss, "weighted_gradients"].expect_compile()
            self._log_stage()
            self.progress.message(f"mtrl: env step {c.env_steps}: balancer stage {stage + 1}/{len(self.stages)} "
                                  f"({self.stages[stage].label})")  # fmt: skip

    def _record_success(self, ended: list[int], ep_success: np.ndarray) -> None:
        """task_success_t <- task_success_t + (x - task_success_t) / min(n_t, SUCCESS_MEMORY) for
        each task t whose episode ended with success x (0 or 1), its n_t-th."""
        self.episodes[ended] += 1
        step = 1.0 / np.minimum(self.episodes[ended], SUCCESS_MEMORY)
        self.success_avg[ended] += (ep_success[ended].astype(float) - self.success_avg[ended]) * step
        self.task_success = torch.as_tensor(self.success_avg, dtype=torch.float32).to(self.device)

    # --- one update -----------------------------------------------------------------------------
    def _update(self) -> None:
        """One SAC update, decided on the device: when a loss, gradient or direction is not
        finite, the fused optimizers skip their step (``found_inf``), the balancers keep their
        state, the target networks stay, and the count goes up, all without a host read.
        The counts are read at log and checkpoint time (:meth:`_read_nonfinite`)."""
        agent, c = self.agent, self.counters
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()  # this update's graphs may reuse the last one's outputs
        batch = self.buffer.sample(self.cfg.batch_size)
        stats = c.updates % self.cfg.grad_stats_every == 0
        target = self.steps["critic_targets"](batch, agent.noise(batch.next_obs))
        critic_losses, _, ok = self._optimizer_step("critic", (batch.obs, batch.actions, target), stats)
        # a non-finite critic step skips the rest of the update too
        actor_losses, log_prob, ok = self._optimizer_step("actor", (batch.obs, agent.noise(batch.obs), agent.alpha()), stats, ok)
        # each task's temperature has its own loss and receives only its gradient: no balancing
        alpha_losses = agent.alpha_losses(log_prob)
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_losses.sum().backward()
        self.alpha_opt.found_inf = (~ok).float()
        self.alpha_opt.step()
        agent.update_targets(ok)
        counted = torch.where(ok, self.nonfinite * self._nonfinite_keep, self.nonfinite + self._nonfinite_add)
        counted[2] = torch.maximum(counted[2], counted[1])
        self.nonfinite = counted
        c.updates += 1
        self.last_losses = {"critic": critic_losses, "actor": actor_losses}

    def _read_nonfinite(self) -> None:
        """Bring the device-side counts of skipped updates to the host (one read, at log and
        checkpoint time) and stop the run if ``max_nonfinite_in_row`` updates in a row were
        skipped since the last read: up to ``log_every`` env steps after the limit was reached."""
        c = self.counters
        skipped, in_row, longest = (int(x) for x in self.nonfinite.tolist())
        c.nonfinite_skipped, c.nonfinite_in_row = skipped, in_row
        self.nonfinite[2] = in_row
        if longest >= self.cfg.max_nonfinite_in_row:
            raise NonFiniteError(
                f"{longest} updates in a row had non-finite losses or gradients (limit "
                f"max_nonfinite_in_row={self.cfg.max_nonfinite_in_row}, seen at env step {c.env_steps}); stopped. "
                f"The last checkpoint in {self.run_dir / 'checkpoints'} is intact"
            )

    def _optimizer_step(self, loss: str, task_args: tuple, stats: bool, ok: torch.Tensor | None = None) -> tuple:
        """The one place where per-task losses become a parameter update.

        The loss (``(params, *task_args) -> ([K] losses, aux)`` on the stratified [K, n, ...]
        batch, bound in ``self.steps``) goes one of two ways, each made of the device functions
        of :mod:`mtrl.update_steps` (compiled with the config key ``compile``). A gradient balancer gets the
        [K, P] per-task gradients of the shared parameters (one batched pass) and its direction
        is the update. A loss-only balancer (EW, FAMO, UW, ...) gets the losses, and its weights
        make one backward pass of sum_t w_t L_t; with EW that is exactly mean-loss SAC. Every
        ``grad_stats_every`` updates the per-task gradients are taken anyway, for the gradient
        statistics.

        Task-specific parameters (multi-head SAC's per-task output layers) are left out of
        balancing: head t gets the gradient of L_t alone, with weight 1 whatever the balancer
        (the gradient single-task SAC would give it; its scale matters to Adam through eps and to the
        clip of sac.max_grad_norm, which bounds the heads together with the shared direction).

        Returns (losses, aux, ok): ``ok`` is a 0-dim bool on the device, False when a loss,
        gradient or direction is not finite or ``ok`` came in False. Then the fused optimizer
        skips its step (``found_inf``: parameters and moments untouched) and the balancer,
        told through ``finite``, keeps its state. Nothing is read on the host.
        """
        params, heads, balancer = self.params[loss], self.head_params[loss], self.balancers[loss]
        like = [*params.values(), *heads.values()]
        ok = torch.ones((), dtype=torch.bool, device=self.device) if ok is None else ok
        # As the reference MT-SAC: the global norm of everything Adam is about to see (the
        # balanced direction plus the task heads' gradients) is clipped after balancing; Nash-MTL's
        # own max_norm scales the shared direction first
        max_norm = float(self.cfg.sac.max_grad_norm or 0.0)
        if balancer.needs_grads or stats:
            grads, head_grads, losses, aux, ok = self.steps[loss, "task_gradients"](params, heads, task_args, ok)
            out = balancer.balance(grads if balancer.needs_grads else None, losses, task_success=self.task_success, finite=ok)
            direction = out.direction if balancer.needs_grads else grads.T @ out.weights
            new_grads, ok = self.steps[loss, "apply_direction"](direction, head_grads, like, ok, max_norm)
            if stats:
                self._log_grad_stats(loss, grads, out.weights, direction)
        else:
            step = self.steps[loss, "weighted_gradients"]
            # a balancer that reads the device in balance() would split the compiled graph between
            # the forward and the backward pass: it runs the same function eagerly
            step = step if balancer.traceable else step.fn
            new_grads, losses, aux, _, ok = step(params, heads, task_args, ok, balancer, self.task_success, max_norm)
        for p, g in zip(like, new_grads):
            p.grad = g
        optimizer = self.optimizers[loss]
        optimizer.found_inf = (~ok).float()
        optimizer.step()
        return losses.clone(), aux, ok  # a clone: under CUDA graphs the next replay reuses the output's memory

    # --- evaluation, logging, checkpoints ---------------------------------------------------------
    def _due_evaluation(self) -> None:
        """The evaluation of the schedule point that this step reached; the point moves on only
        once it has run, so that one a stop abandoned stays due."""
        c = self.counters
        if self._evaluate():
            c.next_eval = next_mark(c.next_eval, self.cfg.eval_every, c.env_steps)

    def _evaluate(self) -> bool:
        """The evaluation at this env step; False, with nothing of it logged or kept, when a stop
        signal cut it short (checked before every vector step of it)."""
        if self.eval_envs is None:
            self.eval_envs = make_eval_envs(self.cfg, self.taskset)
        shown = self.progress.evaluation(self.counters.env_steps)
        result = evaluate(lambda o: self.agent.act(o, deterministic=True), self.eval_envs, self.task_names,
                          self.cfg.eval_episodes, seed=self.cfg.seed, progress=shown,
                          stop=lambda: self.stop_signal is not None)  # fmt: skip
        if result is None:
            shown.abandon()
            return False
        shown.finish(result.success_mean)
        self.last_eval = result
        self.counters.best_success_mean = max(self.counters.best_success_mean, result.success_mean)
        self.counters.last_eval_step = self.counters.env_steps
        self.logger.eval(self.counters.env_steps, result)
        return True

    def _log_train(self, env_rate: float, update_rate: float) -> None:
        step = self.counters.env_steps
        if self.last_losses:
            self.logger.per_task("loss/critic", self.last_losses["critic"].cpu().tolist(), step)
            self.logger.per_task("loss/actor", self.last_losses["actor"].cpu().tolist(), step)
        self.logger.per_task("alpha", self.agent.log_alpha.detach().exp().cpu().tolist(), step)
        for loss, b in self.balancers.items():
            self.logger.scalar(f"balancer/{loss}/solver_failures", int(b.solver_failures), step)
            for name, values in b.task_scalars().items():
                self.logger.per_task(f"balancer/{loss}/{name}", values.cpu().tolist(), step)
        self._log_stage()
        self._read_nonfinite()
        self.logger.scalar("train/nonfinite_skipped", self.counters.nonfinite_skipped, step)
        self.logger.scalar("perf/env_steps_per_s", env_rate, step)
        self.logger.scalar("perf/updates_per_s", update_rate, step)

    def _log_stage(self) -> None:
        """``balancer/stage`` (the stage index) of a staged run: at each switch and at log time,
        once per step."""
        if len(self.stages) > 1 and self.stage_logged_at != self.counters.env_steps:
            self.logger.scalar("balancer/stage", self.stage, self.counters.env_steps)
            self.stage_logged_at = self.counters.env_steps

    def _log_grad_stats(self, loss: str, grads: torch.Tensor, weights: torch.Tensor, direction: torch.Tensor) -> None:
        """Per-task gradient norms, norm shares, projections on and cosines with the applied
        update, mean pairwise cosine, conflict fraction (pairs with negative cosine), max/min
        norm ratio, and the balancer's weights. Read on the host here, once every
        ``grad_stats_every`` updates."""
        step, K = self.counters.env_steps, self.num_tasks
        stats = gradient_statistics(grads, direction)
        self.logger.per_task(f"grad/{loss}/norm", stats["norms"].cpu().tolist(), step)
        for key in ("norm_share", "proj", "cos_update"):
            self.logger.per_task(f"grad/{loss}/{key}", stats[key].cpu().tolist(), step)
        self.logger.per_task(f"balancer/{loss}/weight", weights.detach().cpu().tolist(), step)
        if K > 1:
            for key in ("cos_mean", "conflict_frac", "norm_ratio"):
                self.logger.scalar(f"grad/{loss}/{key}", float(stats[key]), step)

    def _tensors(self, obs, actions, reward, terminated, next_obs):
        as_t = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float32))  # noqa: E731
        return as_t(obs), as_t(actions), as_t(reward), as_t(terminated), as_t(next_obs)

    def _checkpoint(self, wall_since_start: float) -> None:
        self._read_nonfinite()
        self.counters.wall_time_s += wall_since_start
        self.logger.flush()
        save_checkpoint(self.run_dir, self.counters.env_steps, self._state(), keep=self.cfg.keep_checkpoints)
        self.checkpointed = (self.counters.env_steps, self.counters.last_eval_step)

    def _state(self) -> dict:
        return {
            "version": CHECKPOINT_VERSION,
            "config": to_dict(self.cfg),
            "counters": vars(self.counters).copy(),
            "agent": self.agent.state_dict(),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "balancers": {k: b.state_dict() for k, b in self.balancers.items()},
            "balancer_stage": self.stage,
            "task_success": {"episodes": self.episodes.copy(), "average": self.success_avg.copy()},
            "alpha_opt": self.alpha_opt.state_dict(),
            "replay": self.buffer.state_dict(),
            "envs": env_rng_state(self.envs),
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
                "actions": self.action_rng.bit_generator.state,
            },
            "last_eval": None if self.last_eval is None else vars(self.last_eval),
        }

    def _load_state(self, state: dict) -> None:
        self.counters = Counters(**state["counters"])
        self.agent.load_state_dict(state["agent"])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        # checkpoints written before staged balancing and task_success have neither: stage 0, no episodes
        self.stage = state.get("balancer_stage", 0)
        self.balancers = make_loss_balancers(self.stages[self.stage], self.task_names)
        for k, b in self.balancers.items():
            b.load_state_dict(state["balancers"][k])
        if "task_success" in state:
            self.episodes = state["task_success"]["episodes"].copy()
            self.success_avg = state["task_success"]["average"].copy()
            self.task_success = torch.as_tensor(self.success_avg, dtype=torch.float32).to(self.device)
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        self.buffer.load_state_dict(state["replay"])
        load_env_rng_state(self.envs, state["envs"])
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.action_rng.bit_generator.state = rng["actions"]
        self.last_eval = None if state["last_eval"] is None else EvalResult(**state["last_eval"])
        truncate_eval_log(self.run_dir, self.counters.env_steps)
        self.checkpointed = (self.counters.env_steps, self.counters.last_eval_step)

    def _write_summary(self) -> dict:
        c = self.counters
        return write_summary(self.run_dir, self.cfg, self.cfg.balancer.label, c.env_steps, c.updates, c.wall_time_s,
                             self.last_eval, c.best_success_mean, CRITIC_LOSS)  # fmt: skip


def start_run(cfg: Config, run_dir: Path, trainer_class=Trainer):
    """A new run: the directory must not hold one already. ``trainer_class(cfg, run_dir)`` is
    MT-SAC's Trainer, or another agent's trainer that writes the same run directory."""
    run_dir = Path(run_dir)
    if (run_dir / "config.yaml").exists():
        raise FileExistsError(f"{run_dir} already holds a run; continue it with `mtrl train --resume {run_dir}`")
    trainer = trainer_class(cfg, run_dir)  # builds everything before the directory is written
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    return trainer


def resume_run(run_dir: Path, cfg: Config) -> Trainer:
    """Continue from the last checkpoint; a run stopped before its first checkpoint restarts
    from step 0 (its TensorBoard events and evaluations are dropped)."""
    state = load_latest_checkpoint(run_dir)
    trainer = Trainer(cfg, run_dir, resume_state=state)
    if state is None:
        trainer.resumed = True
        truncate_eval_log(run_dir, -1)
    return trainer
