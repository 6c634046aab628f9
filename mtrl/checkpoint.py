"""Atomic checkpoints in ``<run>/checkpoints/``.

A checkpoint is written to a temporary file, fsynced and renamed into place, so a crash at any
moment leaves either the previous checkpoint or the new one, never a torn file. The newest
``keep`` checkpoints are kept.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message is one line for the user."""


def save_checkpoint(run_dir: Path, env_steps: int, state: dict, keep: int) -> Path:
    d = checkpoint_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    for stale in d.glob(".*.tmp"):  # left by a process killed while writing
        stale.unlink()
    final = d / f"ckpt_{env_steps:012d}.pt"
    tmp = d / f".{final.name}.tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        tmp.unlink(missing_ok=True)
        previous = list_checkpoints(run_dir)
        kept = f"the last complete checkpoint {previous[-1].name} is intact" if previous else "no earlier checkpoint"
        raise CheckpointError(f"could not write checkpoint {final} ({e.strerror or e}); {kept}") from None
    os.replace(tmp, final)
    dir_fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink()
    return final


def load_latest_checkpoint(run_dir: Path) -> dict | None:
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        return None
    try:
        state = torch.load(ckpts[-1], map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or "counters" not in state:
            raise ValueError("not an mtrl checkpoint")
    except Exception as e:  # a file damaged outside mtrl: its writes are atomic
        fallback = f"resume from {ckpts[-2].name}" if len(ckpts) > 1 else "restart the run"
        raise CheckpointError(
            f"checkpoint {ckpts[-1]} cannot be read ({type(e).__name__}); delete it to {fallback}"
        ) from None
    return state
