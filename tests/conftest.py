"""Shared, expensive fixtures: built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from envs.tasksets import get_taskset
from envs.vector import make_vector_env

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"
# two gymnasium tasks sharing a 1-d action space, built in milliseconds (MT10: 10-15 s)
CHEAP_TASKS = "gym:MountainCarContinuous-v0,InvertedDoublePendulum-v5"


@pytest.fixture(scope="session")
def mt10_eval_envs():
    """MT10 eval envs (terminate on success), built once: building MT10 takes ~7-15 s."""
    envs = make_vector_env(get_taskset("MT10"), seed=1, terminate_on_success=True)
    yield envs
    envs.close()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """One finished smoke-preset run, trained through the CLI."""
    from mtrl.cli import main

    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    assert main(["train", "--config", str(SMOKE), "--run-dir", str(run_dir)]) == 0
    return run_dir
