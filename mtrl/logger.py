"""Run logging: TensorBoard scalars (the tags README.md's "A run directory" lists) and ``eval.jsonl``.

The TensorBoard step of every scalar is the env-step count (transitions over all tasks).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from envs.evaluation import EvalResult
from mtrl.config import Config, method_label

# Custom-scalars layout: one chart per group with every task's curve in it.
_LAYOUT_GROUPS = {
    "success": ["eval/success_rate", "train/success_rate"],
    "return": ["eval/return", "train/return"],
    "losses": ["loss/critic", "loss/actor", "alpha"],
    "gradients": ["grad/critic/norm", "grad/actor/norm"],
    "share of the update": [
        "grad/critic/norm_share",
        "grad/actor/norm_share",
        "grad/critic/proj",
        "grad/actor/proj",
        "grad/critic/cos_update",
        "grad/actor/cos_update",
    ],
    "balancer weights": ["balancer/critic/weight", "balancer/actor/weight"],
}


class RunLogger:
    def __init__(self, run_dir: Path, task_names: tuple[str, ...], purge_step: int | None = None):
        """``purge_step`` (on resume): TensorBoard drops events at or after this step that an
        interrupted process wrote after its last checkpoint, so no series has duplicates."""
        self.run_dir = Path(run_dir)
        self.task_names = task_names
        self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)
        if purge_step is None:
            self.writer.add_custom_scalars(
                {
                    group: {prefix: ["Multiline", [rf"^{prefix}/[^/]+$"]] for prefix in prefixes}
                    for group, prefixes in _LAYOUT_GROUPS.items()
                }
            )

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def per_task(self, prefix: str, values, step: int, tasks: list[int] | None = None) -> None:
        """``prefix/<task>`` for each task index in ``tasks`` (all by default); values[t] per task."""
        for t in range(len(self.task_names)) if tasks is None else tasks:
            self.writer.add_scalar(f"{prefix}/{self.task_names[t]}", float(values[t]), step)

    def eval(self, step: int, result: EvalResult) -> None:
        for task in self.task_names:
            self.writer.add_scalar(f"eval/success_rate/{task}", result.success[task], step)
            self.writer.add_scalar(f"eval/return/{task}", result.returns[task], step)
        self.writer.add_scalar("eval/success_rate_mean", result.success_mean, step)
        self.writer.flush()
        line = {"step": step, "success_mean": result.success_mean, "success": result.success, "return": result.returns}
        with open(self.run_dir / "eval.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def write_summary(
    run_dir: Path,
    cfg: Config,
    balancer: str,
    env_steps: int,
    updates: int,
    wall_time_s: float,
    final: EvalResult,
    best_success_mean: float,
    critic_loss: str,
) -> dict:
    """``summary.json`` (README.md, "A run directory"), with ``method``, ``agent`` and ``critic_loss``, written
    atomically. ``balancer`` is the config's balancer label, or "none" for an agent without one;
    ``critic_loss`` how the agent's critic loss reduces over its twin critics ("mean"; runs
    without the key summed them)."""
    wall = max(wall_time_s, 1e-9)
    summary = {
        "taskset": cfg.taskset,
        "balancer": balancer,
        "method": method_label(cfg),
        "agent": cfg.agent,
        "seed": cfg.seed,
        "env_steps": env_steps,
        "updates": updates,
        "wall_time_s": wall_time_s,
        "final_success_mean": final.success_mean,
        "best_success_mean": best_success_mean,
        "final_success": final.success,
        "env_steps_per_s": env_steps / wall,
        "updates_per_s": updates / wall,
        "critic_loss": critic_loss,
    }
    tmp = Path(run_dir) / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, Path(run_dir) / "summary.json")
    return summary


def read_eval_log(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "eval.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_eval_log(run_dir: Path, last_step: int) -> None:
    """Drop evaluations after ``last_step`` (written after the checkpoint being resumed)."""
    path = Path(run_dir) / "eval.jsonl"
    if not path.exists():
        return
    keep = [line for line in read_eval_log(run_dir) if line["step"] <= last_step]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(line) + "\n" for line in keep))
    os.replace(tmp, path)
