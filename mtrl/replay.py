"""One replay buffer shared by all tasks, stratified by task.

Storage is one packed tensor ``[K, C, D]`` on the training device, C = capacity // K slots per
task and D = obs | action | reward | terminated | next_obs. Sub-env t writes row t, so every
task owns exactly C slots (a ring buffer each), and a stratified sample of B/K transitions per
task is a single gather: ``data[task_index, slot_index]`` -> ``[K, B/K, D]``, then split into
views. ``terminated`` is 1 only for true terminal states; a time-limit truncation is stored as
0 with the true final observation as ``next_obs``, so the critic bootstraps through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Batch:
    """Transitions shaped [K, n, ...]: row t holds n samples of task t."""

    obs: Tensor
    actions: Tensor
    rewards: Tensor  # [K, n]
    terminated: Tensor  # [K, n], float 0/1
    next_obs: Tensor


class ReplayBuffer:
    def __init__(self, num_tasks: int, capacity: int, obs_dim: int, action_dim: int, device: torch.device, seed: int):
        if capacity < num_tasks:
            raise ValueError(f"replay capacity {capacity} is smaller than the number of tasks {num_tasks}")
        self.num_tasks = num_tasks
        self.capacity_per_task = capacity // num_tasks
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.device = torch.device(device)
        width = 2 * obs_dim + action_dim + 2
        self.data = torch.zeros(num_tasks, self.capacity_per_task, width, device=self.device)
        self.pos = 0  # next slot to write, the same for every task (all sub-envs step together)
        self.size = 0  # filled slots per task
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self._task_index = torch.arange(num_tasks, device=self.device).unsqueeze(1)

    def add(self, obs: Tensor, actions: Tensor, rewards: Tensor, terminated: Tensor, next_obs: Tensor) -> None:
        """Store one vector step: every argument has a leading [K] axis (row t = task t)."""
        row = torch.cat([obs, actions, rewards.unsqueeze(1), terminated.unsqueeze(1), next_obs], dim=1).to(
            self.device, torch.float32
        )
        self.data[:, self.pos] = row
        self.pos = (self.pos + 1) % self.capacity_per_task
        self.size = min(self.size + 1, self.capacity_per_task)

    def sample(self, batch_size: int) -> Batch:
        """batch_size / K transitions per task, uniformly from that task's filled slots."""
        if batch_size % self.num_tasks:
            raise ValueError(f"batch size {batch_size} is not divisible by the number of tasks {self.num_tasks}")
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        n = batch_size // self.num_tasks
        slots = torch.randint(0, self.size, (self.num_tasks, n), device=self.device, generator=self.generator)
        return self._split(self.data[self._task_index, slots])

    def _split(self, rows: Tensor) -> Batch:
        o, a = self.obs_dim, self.action_dim
        return Batch(
            obs=rows[..., :o],
            actions=rows[..., o : o + a],
            rewards=rows[..., o + a],
            terminated=rows[..., o + a + 1],
            next_obs=rows[..., o + a + 2 :],
        )

    # --- checkpoints: only the filled part is saved --------------------------------------------
    def state_dict(self) -> dict:
        return {
            "data": self.data[:, : self.size].cpu().clone(),
            "pos": self.pos,
            "size": self.size,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        size = state["size"]
        if state["data"].shape[0] != self.num_tasks or size > self.capacity_per_task:
            raise ValueError(
                f"replay state holds {state['data'].shape[0]} tasks x {size} slots; this buffer has "
                f"{self.num_tasks} tasks x {self.capacity_per_task} slots"
            )
        self.data.zero_()
        self.data[:, :size] = state["data"].to(self.device)
        self.pos, self.size = state["pos"], size
        self.generator.set_state(state["generator"])
