"""The single-task upper bound: one stable-baselines3 SAC per task (``agent: stl_sac``).

Each task t gets its own SAC model, trained on sub-env t of the same vector env MT-SAC uses
(same seed, goals, episode length, one-hot in the observation: a constant for a single-task
model), with the same per-task budget and the hyperparameters that map:

    transitions per task   ceil(total_env_steps / K)      (MT-SAC: one per task per vector step)
    warm-up per task       warmup_env_steps // K random actions, then updates
    updates                updates_per_vector_step per env step (SB3 gradient_steps, train_freq 1)
    batch, replay          batch_size // K and buffer_size // K per task (MT-SAC's stratified split)
    networks               sac.hidden_sizes for actor and critics; gamma, tau; target entropy -|A|;
                           initial temperature exp(sac.init_log_alpha); one learning rate (SB3 has
                           one for actor, critic and temperature, so they must be equal)

The models train in turn, in chunks between the evaluation, log and checkpoint marks, so the
curves share MT-SAC's x-axis (env steps summed over tasks = K x per-task steps). Evaluation is
``envs.evaluation.evaluate`` on the multi-task eval env, each task's model acting
deterministically for its own task. The run directory has the layout, TensorBoard tags and
summary keys of MT-SAC runs (plus ``method``/``agent`` = "stl_sac", ``balancer`` = "none"), so
``mtrl report`` puts it beside the balancers.

Checkpoints (``checkpoints/stl_<env_steps>/``) hold every model (networks, optimizers,
temperature), its replay buffer and the counters. ``--resume`` continues from the last one
with fresh episodes; it is not bit-identical to an uninterrupted run (SB3's RNG streams and
the envs' mid-episode states are not restored).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger

from envs.evaluation import EvalResult, evaluate
from envs.tasksets import get_taskset
from envs.vector import make_vector_env
from mtrl.config import Config
from mtrl.logger import RunLogger, truncate_eval_log, write_summary
from mtrl.progress import TrainProgress


@dataclass
class STLCounters:
    env_steps: int = 0  # K x per-task transitions
    next_eval: int = 0
    next_checkpoint: int = 0
    next_log: int = 0
    wall_time_s: float = 0.0
    best_success_mean: float = -1.0
    last_eval_step: int = -1


def _next_mark(mark: int, every: int, step: int) -> int:
    while mark <= step:
        mark += every
    return mark


class _EpisodeLog(BaseCallback):
    """train/success_rate/<task> (success at any step) and train/return/<task> per finished
    training episode, at env step K x the model's per-task step."""

    def __init__(self, run_logger: RunLogger, task: str, num_tasks: int):
        super().__init__()
        self.run_logger, self.task, self.num_tasks = run_logger, task, num_tasks
        self.ep_return, self.ep_success = 0.0, False

    def _on_step(self) -> bool:
        self.ep_return += float(self.locals["rewards"][0])
        self.ep_success |= float(self.locals["infos"][0].get("success", 0.0)) > 0
        if self.locals["dones"][0]:
            step = self.num_tasks * self.num_timesteps
            self.run_logger.scalar(f"train/success_rate/{self.task}", float(self.ep_success), step)
            self.run_logger.scalar(f"train/return/{self.task}", self.ep_return, step)
            self.ep_return, self.ep_success = 0.0, False
        return True


class STLTrainer:
    def __init__(self, cfg: Config, run_dir: Path, checkpoint: Path | None = None):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.taskset = get_taskset(cfg.taskset)
        self.task_names, K = self.taskset.tasks, self.taskset.num_tasks
        self.num_tasks = K
        # sync: SB3 steps each sub-env on its own, so it needs the env objects in this process
        self.envs = make_vector_env(self.taskset, cfg.seed, "sync", cfg.max_episode_steps, num_goals=cfg.num_goals)
        self.eval_envs = None
        self.counters = STLCounters(next_eval=cfg.eval_every, next_checkpoint=cfg.checkpoint_every, next_log=cfg.log_every)
        self.models = [self._model(t, checkpoint) for t in range(K)]
        self.resumed = checkpoint is not None
        if checkpoint is not None:
            self.counters = STLCounters(**json.loads((checkpoint / "counters.json").read_text()))
            truncate_eval_log(self.run_dir, self.counters.env_steps)
        self.last_eval: EvalResult | None = None

    def _model(self, t: int, checkpoint: Path | None) -> SAC:
        cfg, K, env = self.cfg, self.num_tasks, self.envs.envs[t]
        if checkpoint is not None:
            model = SAC.load(checkpoint / f"task_{t}.zip", env=env, device=_device(cfg.device))
            model.load_replay_buffer(checkpoint / f"replay_{t}.pkl")
        else:
            model = SAC(
                "MlpPolicy", env, learning_rate=cfg.sac.actor_lr, buffer_size=max(cfg.buffer_size // K, 1),
                learning_starts=cfg.warmup_env_steps // K, batch_size=cfg.batch_size // K, tau=cfg.sac.tau,
                gamma=cfg.sac.gamma, train_freq=1, gradient_steps=cfg.updates_per_vector_step,
                ent_coef=f"auto_{math.exp(cfg.sac.init_log_alpha)}", target_entropy="auto",
                policy_kwargs={"net_arch": list(cfg.sac.hidden_sizes)}, seed=cfg.seed + t,
                device=_device(cfg.device), verbose=0,
            )  # fmt: skip
        model.set_logger(Logger(folder=None, output_formats=[]))  # read back, never printed
        return model

    def train(self) -> dict:
        cfg, c, K = self.cfg, self.counters, self.num_tasks
        self.logger = RunLogger(self.run_dir, self.task_names, purge_step=c.env_steps + 1 if self.resumed else None)
        callbacks = [_EpisodeLog(self.logger, task, K) for task in self.task_names]
        per_task_total = math.ceil(cfg.total_env_steps / K)
        wall_mark = last_time = time.time()
        last_steps, last_updates = c.env_steps, self.updates()
        self.progress = TrainProgress(cfg.total_env_steps, c.env_steps, cfg.warmup_env_steps)
        try:
            while c.env_steps < K * per_task_total:
                mark = min(c.next_eval, c.next_checkpoint, c.next_log, cfg.total_env_steps)
                target = min(math.ceil(mark / K), per_task_total)
                for model, callback in zip(self.models, callbacks):
                    model.learn(target - model.num_timesteps, callback=callback, log_interval=None,
                                reset_num_timesteps=False)  # fmt: skip
                self.progress.advance(K * target - c.env_steps)
                c.env_steps = K * target
                if c.env_steps >= c.next_log:
                    now = time.time()
                    seconds = max(now - last_time, 1e-9)
                    updates = self.updates()
                    env_rate, update_rate = (c.env_steps - last_steps) / seconds, (updates - last_updates) / seconds
                    self._log_train(env_rate, update_rate)
                    self.progress.interval(c.env_steps, env_rate, update_rate,
                                           None if self.last_eval is None else self.last_eval.success_mean)  # fmt: skip
                    last_time, last_steps, last_updates = now, c.env_steps, updates
                    c.next_log = _next_mark(c.next_log, cfg.log_every, c.env_steps)
                if c.env_steps >= c.next_eval:
                    self._evaluate()
                    c.next_eval = _next_mark(c.next_eval, cfg.eval_every, c.env_steps)
                if c.env_steps >= c.next_checkpoint and c.env_steps < K * per_task_total:
                    c.next_checkpoint = _next_mark(c.next_checkpoint, cfg.checkpoint_every, c.env_steps)
                    self._checkpoint(time.time() - wall_mark)
                    wall_mark = time.time()
            if c.last_eval_step != c.env_steps:
                self._evaluate()
            self._checkpoint(time.time() - wall_mark)
            return self._write_summary()
        finally:
            self.progress.close()
            self.logger.close()
            self.envs.close()
            if self.eval_envs is not None:
                self.eval_envs.close()

    def updates(self) -> int:
        return sum(model._n_updates for model in self.models)

    def _log_train(self, env_rate: float, update_rate: float) -> None:
        step = self.counters.env_steps
        keys = {"loss/critic": "train/critic_loss", "loss/actor": "train/actor_loss", "alpha": "train/ent_coef"}
        for task, model in zip(self.task_names, self.models):
            for tag, key in keys.items():
                if key in model.logger.name_to_value:  # only once the model has updated
                    self.logger.scalar(f"{tag}/{task}", float(model.logger.name_to_value[key]), step)
        self.logger.scalar("perf/env_steps_per_s", env_rate, step)
        self.logger.scalar("perf/updates_per_s", update_rate, step)

    def _evaluate(self) -> None:
        cfg = self.cfg
        if self.eval_envs is None:
            from mtrl.trainer import make_eval_envs  # the trainer imports agents: imported at use

            self.eval_envs = make_eval_envs(cfg, self.taskset)

        def policy(obs: np.ndarray) -> np.ndarray:  # row i is task i % K (eval_envs_per_task copies)
            K = len(self.models)
            return np.stack([self.models[i % K].predict(o, deterministic=True)[0] for i, o in enumerate(obs)])

        shown = self.progress.evaluation(self.counters.env_steps)
        result = evaluate(policy, self.eval_envs, self.task_names, cfg.eval_episodes, seed=cfg.seed, progress=shown)
        shown.finish(result.success_mean)
        self.last_eval = result
        c = self.counters
        c.best_success_mean = max(c.best_success_mean, result.success_mean)
        c.last_eval_step = c.env_steps
        self.logger.eval(c.env_steps, result)

    def _checkpoint(self, wall_since_start: float) -> None:
        """Written to a hidden directory and renamed into place: a crash leaves whole checkpoints."""
        c = self.counters
        c.wall_time_s += wall_since_start
        self.logger.flush()
        root = self.run_dir / "checkpoints"
        final, tmp = root / f"stl_{c.env_steps:012d}", root / f".stl_{c.env_steps:012d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for t, model in enumerate(self.models):
            model.save(tmp / f"task_{t}.zip")
            model.save_replay_buffer(tmp / f"replay_{t}.pkl")
        (tmp / "counters.json").write_text(json.dumps(vars(c)))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in stl_checkpoints(self.run_dir)[: -self.cfg.keep_checkpoints]:
            shutil.rmtree(old)

    def _write_summary(self) -> dict:
        c = self.counters
        # SB3's own loss, 0.5 * sum over its critics of the MSE (SAC.train): with the two critics it
        # builds by default, the mean, as MT-SAC's; runs without the key had the same loss
        return write_summary(self.run_dir, self.cfg, "none", c.env_steps, self.updates(), c.wall_time_s, self.last_eval,
                             c.best_success_mean, critic_loss="mean")  # fmt: skip


def _device(name: str) -> str:
    from mtrl.trainer import resolve_device

    return str(resolve_device(name))


def stl_checkpoints(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    return sorted(root.glob("stl_*")) if root.is_dir() else []


def start_stl(cfg: Config, run_dir: Path) -> STLTrainer:
    from mtrl.trainer import start_run

    return start_run(cfg, run_dir, STLTrainer)


def resume_stl(run_dir: Path, cfg: Config) -> STLTrainer:
    """From the last checkpoint (fresh episodes, not bit-identical), or from scratch if none."""
    found = stl_checkpoints(run_dir)
    if not found:
        truncate_eval_log(run_dir, -1)
    trainer = STLTrainer(cfg, run_dir, checkpoint=found[-1] if found else None)
    trainer.resumed = True
    return trainer
