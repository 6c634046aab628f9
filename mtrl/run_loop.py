"""The run loop every agent trains in: schedule, evaluation, logging, checkpoints, stop signals.

:class:`RunLoop.train` is the loop: the agent advances some env steps (:meth:`RunLoop.advance`:
MT-SAC one vector step with its updates, the single-task SB3 baseline its models up to the next
mark), then whatever the schedule says is due runs: the evaluation (every ``eval_every`` env
steps), the log (``log_every``), the checkpoint (``checkpoint_every``). An agent is a subclass
that says how to advance, how to act in an evaluation (:meth:`RunLoop.eval_policy`), what it
logs, and what its checkpoint holds (:meth:`RunLoop.agent_state` and
:meth:`RunLoop.load_agent_state`); the run directory, its TensorBoard tags, ``eval.jsonl``,
``summary.json`` and the atomic checkpoints (:mod:`mtrl.checkpoint`) are the loop's, the same for
every agent, so ``mtrl report`` reads every run alike.

SIGINT and SIGTERM stop a run cleanly: the loop finishes the current advance, skips or abandons
an evaluation, checkpoints and returns; ``mtrl train --resume`` continues it.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from envs.evaluation import EvalResult, evaluate
from envs.forked_workers import default_workers
from envs.tasksets import TaskSet, get_taskset
from envs.vector import MultiTaskVectorEnv, make_vector_env
from mtrl.checkpoint import load_latest_checkpoint, save_checkpoint
from mtrl.config import Config, ConfigError, save_config, to_dict
from mtrl.logger import RunLogger, truncate_eval_log, write_summary
from mtrl.progress import TrainProgress

CHECKPOINT_VERSION = 1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was asked for but torch sees no CUDA device; use device=cpu or auto")
    return torch.device(name)


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


def make_eval_envs(cfg: Config, taskset: TaskSet) -> MultiTaskVectorEnv:
    """The evaluation envs of a run: episodes end at the first success, and on the fast path
    ``eval_envs_per_task`` copies of each task share its episodes (``envs.evaluation.evaluate``)."""
    return make_vector_env(
        taskset,
        cfg.seed,
        cfg.vector_strategy,
        cfg.max_episode_steps,
        terminate_on_success=True,
        num_goals=cfg.num_goals,
        copies=cfg.eval_envs_per_task,
        workers=resolve_env_workers(cfg),
    )


def space_dims(envs: gym.vector.VectorEnv) -> tuple[int, int]:
    """(observation size, action size) of one sub-env's flat Box spaces."""
    obs_shape, action_shape = envs.single_observation_space.shape, envs.single_action_space.shape
    assert obs_shape is not None and action_shape is not None
    return obs_shape[0], action_shape[0]


def next_mark(mark: int, every: int, step: int) -> int:
    """The first point of the schedule mark, mark + every, ... that lies after ``step``: a
    schedule stays on its grid even when an advance (K env steps or more) jumps over a point."""
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
    nonfinite_skipped: int = 0  # MT-SAC's updates skipped for a non-finite loss, gradient or direction
    nonfinite_in_row: int = 0  # (both as of the last read of the device-side counts)


class RunLoop:
    """The loop and the run directory; a subclass is one agent (see the module docstring)."""

    envs: MultiTaskVectorEnv  # the agent's training envs, built by its __init__
    critic_loss = "mean"  # summary.json's ``critic_loss``: how the agent reduces over its twin critics

    def __init__(self, cfg: Config, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.taskset = get_taskset(cfg.taskset)
        self.task_names = self.taskset.tasks
        self.num_tasks = self.taskset.num_tasks
        self.device = resolve_device(cfg.device)
        self.counters = Counters(next_eval=cfg.eval_every, next_checkpoint=cfg.checkpoint_every, next_log=cfg.log_every)
        self.eval_envs: MultiTaskVectorEnv | None = None  # built at the first evaluation
        self.last_eval: EvalResult | None = None
        self.resumed = False
        # (env steps, last evaluation's step) of the state the last checkpoint holds, written or
        # loaded: a stop there needs no checkpoint of its own
        self.checkpointed: tuple[int, int] | None = None
        # open while train() runs: the run directory is written only then
        self.logger: RunLogger | None = None
        self.progress: TrainProgress | None = None
        self.stop_signal: int | None = None

    # --- what an agent implements --------------------------------------------------------------
    def begin(self) -> None:
        """Before the first advance of this process (MT-SAC resets its envs)."""

    def advance(self) -> None:
        """Train on: add the env steps taken to ``counters.env_steps`` (and the updates to
        ``counters.updates``) and to the progress bar."""
        raise NotImplementedError

    def can_checkpoint(self) -> bool:
        """Whether a checkpoint due now may be written (MT-SAC: between two episodes)."""
        return True

    def eval_policy(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions for the evaluation envs' observations (row i: task i % K)."""
        raise NotImplementedError

    def log_agent(self, log: RunLogger, step: int) -> None:
        """The agent's own TensorBoard scalars at log time (losses, temperatures, ...)."""

    def agent_state(self) -> dict:
        """What a checkpoint holds for the agent, besides the loop's counters and evaluation."""
        raise NotImplementedError

    def load_agent_state(self, state: dict) -> None:
        raise NotImplementedError

    def balancer_label(self) -> str:
        return self.cfg.balancer.label

    # --- the loop --------------------------------------------------------------------------------
    def announce(self, line: str) -> None:
        """A line of its own in the progress output (stderr before training starts)."""
        if self.progress is not None:
            self.progress.message(line)
        else:
            print(line, file=sys.stderr, flush=True)

    @property
    def log(self) -> RunLogger:
        if self.logger is None:
            raise RuntimeError("the run's logger is open only while train() runs")
        return self.logger

    def train(self) -> dict:
        cfg, c = self.cfg, self.counters
        # the events at the checkpoint's own step (its evaluation, its log) came before it: keep them
        self.logger = RunLogger(self.run_dir, self.task_names, purge_step=c.env_steps + 1 if self.resumed else None)
        self.begin()
        wall_mark = time.time()  # wall time up to here is already counted in c.wall_time_s
        last_log_time, last_log_steps, last_log_updates = wall_mark, c.env_steps, c.updates
        self.stop_signal = None
        handlers = self._catch_stop_signals()
        self.progress = TrainProgress(cfg.total_env_steps, c.env_steps, cfg.warmup_env_steps)
        try:
            # a stop checkpoint can stand before the evaluation due at its step (a stop skips or
            # abandons one): it runs first, at that step, on the parameters it was due for
            if c.next_eval <= c.env_steps < cfg.total_env_steps:
                self._due_evaluation()
            while self.stop_signal is None and c.env_steps < cfg.total_env_steps:
                self.advance()
                # An evaluation takes as long as thousands of updates: a stop signal skips the one
                # due, or abandons it, and the resume runs it. The log (milliseconds) still runs.
                if c.env_steps >= c.next_eval and self.stop_signal is None:
                    self._due_evaluation()
                if c.env_steps >= c.next_log:
                    now = time.time()
                    seconds = max(now - last_log_time, 1e-9)
                    env_rate = (c.env_steps - last_log_steps) / seconds
                    update_rate = (c.updates - last_log_updates) / seconds
                    self.log_agent(self.log, c.env_steps)
                    self.log.scalar("perf/env_steps_per_s", env_rate, c.env_steps)
                    self.log.scalar("perf/updates_per_s", update_rate, c.env_steps)
                    success = None if self.last_eval is None else self.last_eval.success_mean
                    self.progress.interval(c.env_steps, env_rate, update_rate, success)
                    last_log_time, last_log_steps, last_log_updates = now, c.env_steps, c.updates
                    c.next_log = next_mark(c.next_log, cfg.log_every, c.env_steps)
                if self.can_checkpoint() and c.next_checkpoint <= c.env_steps < cfg.total_env_steps:
                    self._checkpoint(time.time() - wall_mark)
                    wall_mark = time.time()
                    c.next_checkpoint = next_mark(c.next_checkpoint, cfg.checkpoint_every, c.env_steps)
            if self.stop_signal is None and c.last_eval_step != c.env_steps:
                self._evaluate()
        except BaseException:
            self.close()  # TensorBoard events so far are flushed; the checkpoints stay as they are
            _restore_signals(handlers)
            raise
        finally:
            self.progress.close()
        try:
            # after the final evaluation, finishing costs what stopping would (a checkpoint): finish
            if self.stop_signal is not None and (c.env_steps < cfg.total_env_steps or c.last_eval_step != c.env_steps):
                # A signal during a checkpoint write finds the state written already. Otherwise the
                # stop checkpoint stands mid-episode, possibly: a resume keeps the collected
                # transitions and starts fresh episodes.
                if self.checkpointed != (c.env_steps, c.last_eval_step):
                    self._checkpoint(time.time() - wall_mark)
                self.close()
                return {"stopped_by": signal.Signals(self.stop_signal).name, "env_steps": c.env_steps}
            self._checkpoint(time.time() - wall_mark)
            assert self.last_eval is not None  # the final evaluation ran, in this process or before the checkpoint
            summary = write_summary(
                self.run_dir,
                cfg,
                self.balancer_label(),
                c.env_steps,
                c.updates,
                c.wall_time_s,
                self.last_eval,
                c.best_success_mean,
                self.critic_loss,
            )
            self.close()
            return summary
        finally:
            _restore_signals(handlers)  # only now: a signal during the final checkpoint or summary is ignored

    def _catch_stop_signals(self) -> dict:
        """SIGINT/SIGTERM set ``stop_signal``. Only the main thread can install handlers;
        elsewhere signals act as usual."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signum, frame):
            self.stop_signal = signum

        return {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def close(self) -> None:
        """Flush the logger, close the envs; ``train`` calls it on every way out, a caller that
        builds a loop without training (``mtrl bench``) calls it itself."""
        self.log.close()
        self.envs.close()
        if self.eval_envs is not None:
            self.eval_envs.close()

    # --- evaluation and checkpoints ---------------------------------------------------------------
    def _due_evaluation(self) -> None:
        """The evaluation of the schedule point that this step reached; the point moves on only
        once it has run, so that one a stop abandoned stays due."""
        c = self.counters
        if self._evaluate():
            c.next_eval = next_mark(c.next_eval, self.cfg.eval_every, c.env_steps)

    def _evaluate(self) -> bool:
        """The evaluation at this env step; False, with nothing of it logged or kept, when a stop
        signal cut it short (checked before every vector step of it)."""
        assert self.progress is not None
        if self.eval_envs is None:
            self.eval_envs = make_eval_envs(self.cfg, self.taskset)
        c = self.counters
        shown = self.progress.evaluation(c.env_steps)
        result = evaluate(
            self.eval_policy,
            self.eval_envs,
            self.task_names,
            self.cfg.eval_episodes,
            seed=self.cfg.seed,
            progress=shown,
            stop=lambda: self.stop_signal is not None,
        )
        if result is None:
            shown.abandon()
            return False
        shown.finish(result.success_mean)
        self.last_eval = result
        c.best_success_mean = max(c.best_success_mean, result.success_mean)
        c.last_eval_step = c.env_steps
        self.log.eval(c.env_steps, result)
        return True

    def _checkpoint(self, wall_since_start: float) -> None:
        state = self.agent_state()  # first: MT-SAC reads its device-side counts into the counters here
        self.counters.wall_time_s += wall_since_start
        self.log.flush()
        state.update(
            version=CHECKPOINT_VERSION,
            config=to_dict(self.cfg),
            counters=vars(self.counters).copy(),
            last_eval=None if self.last_eval is None else vars(self.last_eval),
        )
        save_checkpoint(self.run_dir, self.counters.env_steps, state, keep=self.cfg.keep_checkpoints)
        self.checkpointed = (self.counters.env_steps, self.counters.last_eval_step)

    def load_state(self, state: dict) -> None:
        """Continue from a checkpoint (:func:`resume_run`)."""
        self.counters = Counters(**state["counters"])
        self.load_agent_state(state)
        self.last_eval = None if state["last_eval"] is None else EvalResult(**state["last_eval"])
        truncate_eval_log(self.run_dir, self.counters.env_steps)
        self.checkpointed = (self.counters.env_steps, self.counters.last_eval_step)
        self.resumed = True


def _restore_signals(handlers: dict) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def start_run(cfg: Config, run_dir: Path, trainer_class: type[RunLoop]) -> RunLoop:
    """A new run of ``trainer_class`` (an agent's RunLoop): the directory must not hold one already."""
    run_dir = Path(run_dir)
    if (run_dir / "config.yaml").exists():
        raise FileExistsError(f"{run_dir} already holds a run; continue it with `mtrl train --resume {run_dir}`")
    trainer = trainer_class(cfg, run_dir)  # builds everything before the directory is written
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    return trainer


def resume_run(run_dir: Path, cfg: Config, trainer_class: type[RunLoop]) -> RunLoop:
    """Continue from the last checkpoint; a run stopped before its first checkpoint restarts
    from step 0 (its TensorBoard events and evaluations are dropped)."""
    state = load_latest_checkpoint(run_dir)
    trainer = trainer_class(cfg, run_dir)
    if state is None:
        trainer.resumed = True
        truncate_eval_log(run_dir, -1)
    else:
        trainer.load_state(state)
    return trainer
