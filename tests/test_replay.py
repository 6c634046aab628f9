import numpy as np
import pytest
import torch

from mtrl.replay import ReplayBuffer

K, OBS, ACT = 3, 5, 2


def _add(buf: ReplayBuffer, step: int) -> None:
    """One vector step whose every field encodes (task, step): task t's obs is filled with
    100 t + step, so a sampled row tells which task and which step it came from."""
    task = torch.arange(K, dtype=torch.float32).unsqueeze(1)
    obs = (100 * task + step).expand(K, OBS)
    buf.add(obs, torch.full((K, ACT), float(step)), torch.full((K,), float(step)),
            torch.zeros(K), obs + 0.5)  # fmt: skip


def test_stratified_sample_has_equal_count_per_task_and_only_own_task_rows():
    buf = ReplayBuffer(K, capacity=30, obs_dim=OBS, action_dim=ACT, device="cpu", seed=0)
    for step in range(7):
        _add(buf, step)
    batch = buf.sample(12)
    assert batch.obs.shape == (K, 4, OBS) and batch.actions.shape == (K, 4, ACT)
    assert batch.rewards.shape == (K, 4) and batch.terminated.shape == (K, 4)
    task_of_row = torch.div(batch.obs[..., 0], 100, rounding_mode="floor")
    assert torch.equal(task_of_row, torch.arange(K, dtype=torch.float32).unsqueeze(1).expand(K, 4))
    step_of_row = batch.obs[..., 0] - 100 * task_of_row
    # fields of one sampled row belong to the same stored transition
    assert torch.equal(batch.rewards, step_of_row)
    assert torch.equal(batch.actions[..., 0], step_of_row)
    assert torch.equal(batch.next_obs, batch.obs + 0.5)


def test_batch_not_divisible_by_tasks_is_rejected():
    buf = ReplayBuffer(K, capacity=30, obs_dim=OBS, action_dim=ACT, device="cpu", seed=0)
    _add(buf, 0)
    with pytest.raises(ValueError, match="not divisible"):
        buf.sample(10)


def test_wrap_around_overwrites_oldest_and_samples_only_live_slots():
    buf = ReplayBuffer(K, capacity=3 * K, obs_dim=OBS, action_dim=ACT, device="cpu", seed=0)  # 3 slots per task
    for step in range(8):  # steps 0..7: slots hold 6, 7, 5 after wrapping twice
        _add(buf, step)
    assert buf.size == 3 and buf.pos == 8 % 3
    stored_steps = sorted(buf.data[0, :, 0].tolist())
    assert stored_steps == [5.0, 6.0, 7.0]
    seen = set(buf.sample(K * 300).rewards.flatten().tolist())
    assert seen == {5.0, 6.0, 7.0}  # all live slots are drawn, none of the overwritten ones


def test_partially_filled_buffer_samples_only_filled_slots():
    buf = ReplayBuffer(K, capacity=100 * K, obs_dim=OBS, action_dim=ACT, device="cpu", seed=0)
    for step in range(4):
        _add(buf, step)
    assert set(buf.sample(K * 200).rewards.flatten().tolist()) == {0.0, 1.0, 2.0, 3.0}


def test_state_dict_round_trip_continues_identically():
    a = ReplayBuffer(K, capacity=5 * K, obs_dim=OBS, action_dim=ACT, device="cpu", seed=3)
    for step in range(7):
        _add(a, step)
    b = ReplayBuffer(K, capacity=5 * K, obs_dim=OBS, action_dim=ACT, device="cpu", seed=99)
    b.load_state_dict(a.state_dict())
    for buf in (a, b):
        _add(buf, 7)
    assert torch.equal(a.data, b.data)
    assert torch.equal(a.sample(30).obs, b.sample(30).obs)


def test_truncation_stores_true_final_obs_and_is_not_terminal(smoke_run):
    """In the smoke run every episode is truncated at 50 steps. The last transition of an
    episode must hold the true successor observation, not the next episode's reset obs, and
    terminated = 0 so the critic bootstraps through the time limit."""
    from mtrl.checkpoint import load_latest_checkpoint

    data = load_latest_checkpoint(smoke_run)["replay"]["data"]  # [K, steps, D]: slot i = vector step i
    obs_dim, act_dim = 49, 4
    obs, next_obs = data[..., :obs_dim], data[..., obs_dim + act_dim + 2 :]
    terminated = data[..., obs_dim + act_dim + 1]
    assert torch.count_nonzero(terminated) == 0
    last = torch.arange(49, data.shape[1] - 1, 50)  # final step of each 50-step episode
    inner = torch.tensor([i for i in range(data.shape[1] - 1) if i % 50 != 49])
    # within an episode the next obs is the following transition's obs
    assert torch.equal(next_obs[:, inner], obs[:, inner + 1])
    # at truncation it is not: the following obs is a fresh reset of the next episode...
    assert not torch.equal(next_obs[:, last], obs[:, last + 1])
    # ...and the stored next obs is the true successor: Meta-World stacks the previous frame
    # in obs[18:36], which must be the current frame obs[0:18] of the truncated step
    np.testing.assert_array_equal(next_obs[:, last, 18:36].numpy(), obs[:, last, 0:18].numpy())
