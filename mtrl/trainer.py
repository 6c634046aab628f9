"""Multi-task SAC in the run loop: collect -> store -> update, with staged balancing.

:class:`Trainer` is one agent of :class:`mtrl.run_loop.RunLoop` (which evaluates, logs and
checkpoints on its schedule). Its :meth:`Trainer.advance` is one vector step: reset the finished
sub-envs, act, step every task's env, store the K transitions, then ``updates_per_vector_step``
updates, each :class:`mtrl.update.SACUpdate` (the whole update, in that one module).
"""

from __future__ import annotations

import random
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from agents.mtsac import CRITIC_LOSS, MTSAC
from envs.metaworld_fast import MetaWorldVectorEnv
from envs.vector import env_rng_state, load_env_rng_state, make_vector_env, reset_done
from mtrl.compile import resolve_compile
from mtrl.config import Config, balancer_stages, make_loss_balancers
from mtrl.gradients import gradient_statistics
from mtrl.logger import RunLogger
from mtrl.replay import ReplayBuffer
from mtrl.run_loop import RunLoop, resolve_env_workers, space_dims
from mtrl.update import GradStats, NonFiniteCount, SACUpdate

SUCCESS_MEMORY = 10  # training episodes behind each task's recent success (``task_success``)


class NonFiniteError(RuntimeError):
    """Too many updates in a row had non-finite values; the run stops, its checkpoints intact."""


class Trainer(RunLoop):
    critic_loss = CRITIC_LOSS

    def __init__(self, cfg: Config, run_dir: Path):
        super().__init__(cfg, run_dir)
        K = self.num_tasks
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.action_rng = np.random.default_rng(cfg.seed)  # warm-up random actions

        self.envs = envs = make_vector_env(
            self.taskset,
            cfg.seed,
            cfg.vector_strategy,
            cfg.max_episode_steps,
            num_goals=cfg.num_goals,
            workers=resolve_env_workers(cfg),
        )
        if isinstance(envs, MetaWorldVectorEnv) and envs.uncovered:
            self.announce(f"fast path: {', '.join(envs.uncovered)} run Meta-World's own reward code (exact, slower)")
        if isinstance(envs, MetaWorldVectorEnv) and len(envs.workers.shares) > 1:
            self.announce(f"fast path: the {K} sub-envs stepped by {len(envs.workers.shares)} processes")
        obs_dim, self.action_dim = space_dims(envs)
        self.agent = MTSAC(obs_dim, self.action_dim, K, cfg.sac).to(self.device)
        # staged balancing: stage i's balancers make the updates while env_steps < its until;
        # each stage's are built when it starts, so no state passes from one stage to the next
        self.stages = balancer_stages(cfg.balancer)
        self.stage = 0
        self.stage_logged_at = -1
        compiled = resolve_compile(cfg.compile, self.device, warn=self.announce)
        balancers = make_loss_balancers(self.stages[0], self.task_names)
        self.update = SACUpdate(self.agent, cfg, balancers, self.device, compiled, self.announce, self._compiled_in)
        # each task's recent training success, for the balancers driven by it (on the device,
        # so that passing it costs no transfer per update); updated at every episode end
        self.episodes = np.zeros(K, dtype=np.int64)
        self.success_avg = np.zeros(K)
        self.task_success = torch.zeros(K, device=self.device)
        self.buffer = ReplayBuffer(K, cfg.buffer_size, obs_dim, self.action_dim, self.device, cfg.seed)
        self.last_losses: dict[str, torch.Tensor] = {}
        # the episodes under way
        self.obs = np.zeros((K, obs_dim), dtype=np.float32)  # set by begin(): the envs' reset
        self.done = np.zeros(K, dtype=bool)
        self.ep_return = np.zeros(K)
        self.ep_success = np.zeros(K, dtype=bool)

    def _compiled_in(self, seconds: float) -> None:
        """Compile time is one-off: out of the progress estimate."""
        if self.progress is not None:
            self.progress.exclude(seconds)

    def begin(self) -> None:
        self.obs, _ = self.envs.reset()  # on resume: the reset that the checkpoint stood before

    def advance(self) -> None:
        K = self.num_tasks
        self.obs, reward, terminated, truncated, info = self.vector_step(self.obs, self.done)
        self.ep_return += reward
        self.ep_success |= np.asarray(info["success"], dtype=float) > 0
        assert self.progress is not None
        self.progress.advance(K)
        self.done = terminated | truncated
        if self.done.any():
            ended = [int(t) for t in np.flatnonzero(self.done)]
            step = self.counters.env_steps
            self.log.per_task("train/success_rate", self.ep_success.astype(float), step, ended)
            self._record_success(ended, self.ep_success)
            self.log.per_task("train/return", self.ep_return, step, ended)
            self.ep_return[self.done], self.ep_success[self.done] = 0.0, False

    def can_checkpoint(self) -> bool:
        """Checkpoints stand between two episodes (every sub-env finished, none reset yet), so a
        resume restores the envs' RNGs, resets, and samples the same next goals. Task sets whose
        episodes end at different times (gymnasium envs) may never get there: they checkpoint
        when due, mid-episode, and a resume starts fresh episodes."""
        return bool(self.done.all()) or not self.taskset.synchronized_episodes

    def vector_step(self, obs: np.ndarray, done: np.ndarray) -> tuple:
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
            assert isinstance(self.envs, gym.vector.AsyncVectorEnv)
            self.envs.step_async(actions)
            c.env_steps += K
            if learn:
                self._updates()
            next_obs, reward, terminated, truncated, info = self.envs.step_wait()
            self.buffer.add(*_tensors(obs, actions, reward, terminated, next_obs))
        else:
            next_obs, reward, terminated, truncated, info = self.envs.step(actions)
            # autoreset is off: next_obs is the true final observation also when truncated
            self.buffer.add(*_tensors(obs, actions, reward, terminated, next_obs))
            c.env_steps += K
            if learn:
                self._updates()
        return next_obs, reward, terminated, truncated, info

    def _updates(self) -> None:
        self._enter_due_stage()
        for _ in range(self.cfg.updates_per_vector_step):
            self.update_once()

    def update_once(self) -> None:
        """One update (:class:`mtrl.update.SACUpdate`) on a batch from the buffer; every
        ``grad_stats_every`` updates it also logs the per-task gradient statistics."""
        c = self.counters
        stats = c.updates % self.cfg.grad_stats_every == 0
        self.last_losses, grad_stats = self.update(self.buffer.sample(self.cfg.batch_size), self.task_success, stats)
        for loss, s in grad_stats.items():
            self._log_grad_stats(loss, s)
        c.updates += 1

    def _enter_due_stage(self) -> None:
        """Switch to the stage that the env-step count has reached, with fresh balancers."""
        c, stage = self.counters, self.stage
        while (until := self.stages[stage].until) is not None and c.env_steps >= until:
            stage += 1  # a stage that ended before any update (inside the warm-up) is skipped
        if stage != self.stage:
            self.stage = stage
            self.update.use_balancers(make_loss_balancers(self.stages[stage], self.task_names))
            self._log_stage()
            label = f"{stage + 1}/{len(self.stages)} ({self.stages[stage].label})"
            self.announce(f"mtrl: env step {c.env_steps}: balancer stage {label}")

    def _record_success(self, ended: list[int], ep_success: np.ndarray) -> None:
        """task_success_t <- task_success_t + (x - task_success_t) / min(n_t, SUCCESS_MEMORY) for
        each task t whose episode ended with success x (0 or 1), its n_t-th."""
        self.episodes[ended] += 1
        step = 1.0 / np.minimum(self.episodes[ended], SUCCESS_MEMORY)
        self.success_avg[ended] += (ep_success[ended].astype(float) - self.success_avg[ended]) * step
        self.task_success = torch.as_tensor(self.success_avg, dtype=torch.float32).to(self.device)

    def _read_nonfinite(self) -> None:
        """Bring the device-side counts of skipped updates to the host (one read, at log and
        checkpoint time) and stop the run if ``max_nonfinite_in_row`` updates in a row were
        skipped since the last read: up to ``log_every`` env steps after the limit was reached."""
        c = self.counters
        c.nonfinite_skipped, c.nonfinite_in_row, longest = self.update.nonfinite.read()
        if longest >= self.cfg.max_nonfinite_in_row:
            raise NonFiniteError(
                f"{longest} updates in a row had non-finite losses or gradients (limit "
                f"max_nonfinite_in_row={self.cfg.max_nonfinite_in_row}, seen at env step {c.env_steps}); stopped. "
                f"The last checkpoint in {self.run_dir / 'checkpoints'} is intact"
            )

    # --- what the run loop asks of an agent ---------------------------------------------------------
    def eval_policy(self, obs: np.ndarray) -> np.ndarray:
        return self.agent.act(obs, deterministic=True)

    def log_agent(self, log: RunLogger, step: int) -> None:
        if self.last_losses:
            log.per_task("loss/critic", self.last_losses["critic"].cpu().tolist(), step)
            log.per_task("loss/actor", self.last_losses["actor"].cpu().tolist(), step)
        log.per_task("alpha", self.agent.log_alpha.detach().exp().cpu().tolist(), step)
        for loss, b in self.update.balancers.items():
            log.scalar(f"balancer/{loss}/solver_failures", int(b.solver_failures), step)
            for name, values in b.task_scalars().items():
                log.per_task(f"balancer/{loss}/{name}", values.cpu().tolist(), step)
        self._log_stage()
        self._read_nonfinite()
        log.scalar("train/nonfinite_skipped", self.counters.nonfinite_skipped, step)

    def _log_stage(self) -> None:
        """``balancer/stage`` (the stage index) of a staged run: at each switch and at log time,
        once per step."""
        if len(self.stages) > 1 and self.stage_logged_at != self.counters.env_steps:
            self.log.scalar("balancer/stage", self.stage, self.counters.env_steps)
            self.stage_logged_at = self.counters.env_steps

    def _log_grad_stats(self, loss: str, s: GradStats) -> None:
        """Per-task gradient norms, norm shares, projections on and cosines with the applied
        update, mean pairwise cosine, conflict fraction (pairs with negative cosine), max/min
        norm ratio, and the balancer's weights. Read on the host here, once every
        ``grad_stats_every`` updates."""
        step, log = self.counters.env_steps, self.log
        stats = gradient_statistics(s.grads, s.direction)
        log.per_task(f"grad/{loss}/norm", stats["norms"].cpu().tolist(), step)
        for key in ("norm_share", "proj", "cos_update"):
            log.per_task(f"grad/{loss}/{key}", stats[key].cpu().tolist(), step)
        log.per_task(f"balancer/{loss}/weight", s.weights.detach().cpu().tolist(), step)
        if self.num_tasks > 1:
            for key in ("cos_mean", "conflict_frac", "norm_ratio"):
                log.scalar(f"grad/{loss}/{key}", float(stats[key]), step)

    def agent_state(self) -> dict:
        self._read_nonfinite()
        return {
            "agent": self.agent.state_dict(),
            **self.update.state_dict(),
            "balancer_stage": self.stage,
            "task_success": {"episodes": self.episodes.copy(), "average": self.success_avg.copy()},
            "replay": self.buffer.state_dict(),
            "envs": env_rng_state(self.envs),
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
                "actions": self.action_rng.bit_generator.state,
            },
        }

    def load_agent_state(self, state: dict) -> None:
        c = self.counters
        self.agent.load_state_dict(state["agent"])
        # checkpoints written before staged balancing and task_success have neither: stage 0, no episodes
        self.stage = state.get("balancer_stage", 0)
        self.update.use_balancers(make_loss_balancers(self.stages[self.stage], self.task_names))
        self.update.nonfinite = NonFiniteCount(c.nonfinite_skipped, c.nonfinite_in_row, self.device)
        self.update.load_state_dict(state)
        if "task_success" in state:
            self.episodes = state["task_success"]["episodes"].copy()
            self.success_avg = state["task_success"]["average"].copy()
            self.task_success = torch.as_tensor(self.success_avg, dtype=torch.float32).to(self.device)
        self.buffer.load_state_dict(state["replay"])
        load_env_rng_state(self.envs, state["envs"])
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.action_rng.bit_generator.state = rng["actions"]


def _tensors(*arrays) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(np.asarray(x, dtype=np.float32)) for x in arrays)
