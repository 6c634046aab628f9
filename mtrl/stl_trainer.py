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

It trains in the run loop every agent shares (:class:`mtrl.run_loop.RunLoop`): schedule,
evaluation, logging, stop signals and checkpoints are MT-SAC's. A checkpoint
(``checkpoints/ckpt_<env_steps>.pt``, :mod:`mtrl.checkpoint`) holds every model (networks,
optimizers, temperature, as SB3 saves them) and its replay buffer. ``--resume`` continues from
the last one with fresh episodes; it is not bit-identical to an uninterrupted run (SB3's RNG
streams and the envs' mid-episode states are not restored).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger

from envs.vector import make_vector_env
from mtrl.config import Config
from mtrl.logger import RunLogger
from mtrl.run_loop import RunLoop


class _EpisodeLog(BaseCallback):
    """train/success_rate/<task> (success at any step) and train/return/<task> per finished
    training episode, at env step K x the model's per-task step."""

    def __init__(self, trainer: STLTrainer, task: str):
        super().__init__()
        self.trainer, self.task = trainer, task
        self.ep_return, self.ep_success = 0.0, False

    def _on_step(self) -> bool:
        self.ep_return += float(self.locals["rewards"][0])
        self.ep_success |= float(self.locals["infos"][0].get("success", 0.0)) > 0
        if self.locals["dones"][0]:
            step = self.trainer.num_tasks * self.num_timesteps
            self.trainer.log.scalar(f"train/success_rate/{self.task}", float(self.ep_success), step)
            self.trainer.log.scalar(f"train/return/{self.task}", self.ep_return, step)
            self.ep_return, self.ep_success = 0.0, False
        return True


class STLTrainer(RunLoop):
    def __init__(self, cfg: Config, run_dir: Path):
        super().__init__(cfg, run_dir)
        # sync: SB3 steps each sub-env on its own, so it needs the env objects in this process
        envs = make_vector_env(self.taskset, cfg.seed, "sync", cfg.max_episode_steps, num_goals=cfg.num_goals)
        assert isinstance(envs, gym.vector.SyncVectorEnv)
        self.envs = envs
        self.sub_envs = envs.envs
        self.models = [self._new_model(t) for t in range(self.num_tasks)]
        self.callbacks = [_EpisodeLog(self, task) for task in self.task_names]

    def _new_model(self, t: int) -> SAC:
        cfg, K = self.cfg, self.num_tasks
        model = SAC(
            "MlpPolicy",
            self.sub_envs[t],
            learning_rate=cfg.sac.actor_lr,
            buffer_size=max(cfg.buffer_size // K, 1),
            learning_starts=cfg.warmup_env_steps // K,
            batch_size=cfg.batch_size // K,
            tau=cfg.sac.tau,
            gamma=cfg.sac.gamma,
            train_freq=1,
            gradient_steps=cfg.updates_per_vector_step,
            ent_coef=f"auto_{math.exp(cfg.sac.init_log_alpha)}",
            target_entropy="auto",
            policy_kwargs={"net_arch": list(cfg.sac.hidden_sizes)},
            seed=cfg.seed + t,
            device=str(self.device),
            verbose=0,
        )
        model.set_logger(Logger(folder=None, output_formats=[]))  # read back, never printed
        return model

    def advance(self) -> None:
        """Every model, in turn, up to the next mark of the schedule (in per-task steps)."""
        cfg, c, K = self.cfg, self.counters, self.num_tasks
        mark = min(c.next_eval, c.next_checkpoint, c.next_log, cfg.total_env_steps)
        target = min(math.ceil(mark / K), math.ceil(cfg.total_env_steps / K))
        for model, callback in zip(self.models, self.callbacks, strict=True):
            # log_interval=None: SB3 prints nothing (its stub types it int)
            steps = target - model.num_timesteps
            model.learn(steps, callback=callback, log_interval=None, reset_num_timesteps=False)  # type: ignore[arg-type]
        assert self.progress is not None
        self.progress.advance(K * target - c.env_steps)
        c.env_steps = K * target
        c.updates = sum(model._n_updates for model in self.models)

    def eval_policy(self, obs: np.ndarray) -> np.ndarray:
        K = self.num_tasks  # row i is task i % K (eval_envs_per_task copies)
        return np.stack([self.models[i % K].predict(o, deterministic=True)[0] for i, o in enumerate(obs)])

    def log_agent(self, log: RunLogger, step: int) -> None:
        keys = {"loss/critic": "train/critic_loss", "loss/actor": "train/actor_loss", "alpha": "train/ent_coef"}
        for task, model in zip(self.task_names, self.models, strict=True):
            for tag, key in keys.items():
                if key in model.logger.name_to_value:  # only once the model has updated
                    log.scalar(f"{tag}/{task}", float(model.logger.name_to_value[key]), step)

    def balancer_label(self) -> str:
        # summary.json's critic_loss stays "mean": SB3's own loss is 0.5 * sum over its critics of
        # the MSE (SAC.train), with the two critics it builds by default the mean, as MT-SAC's
        return "none"

    def agent_state(self) -> dict:
        models, replays = [], []
        for model in self.models:
            buffer = io.BytesIO()
            model.save(buffer)
            models.append(buffer.getvalue())
            buffer = io.BytesIO()
            model.save_replay_buffer(buffer)
            replays.append(buffer.getvalue())
        return {"sb3_models": models, "sb3_replay_buffers": replays}

    def load_agent_state(self, state: dict) -> None:
        for t, (saved, replay) in enumerate(zip(state["sb3_models"], state["sb3_replay_buffers"], strict=True)):
            model = SAC.load(io.BytesIO(saved), env=self.sub_envs[t], device=str(self.device))
            model.load_replay_buffer(io.BytesIO(replay))
            model.set_logger(Logger(folder=None, output_formats=[]))
            self.models[t] = model
