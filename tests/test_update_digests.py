"""Training is unchanged by a refactoring: the smoke preset trained from one seed with EW (the
loss path), with Nash-MTL (a host-solver balancer on the gradient path) and with a staged recipe
(FAMO's loss weighting, then CAGrad's host solve) ends with the parameters, optimizer states and
balancer states whose digests ``tests/data/update_digests.json`` holds.

The digests were recorded on the code before the redesign of the trainer and the update
(2026-12-05) and are asserted on the code after it. They are bit-level, so they hold only on the
platform they were recorded on (torch and numpy versions, CPU model, thread count and the
OpenBLAS kernels numpy runs: two "AMD EPYC" machines that pick different kernels give the same
network parameters but Nash-MTL weights that differ in the last bits); the file holds one
recording per platform, and on a platform it lacks the test skips and says so. To add a
platform, run this file on the pre-redesign code (03c3046) with ``MTRL_RECORD_DIGESTS=1``: it
adds or replaces this platform's recording."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from mtrl.checkpoint import list_checkpoints
from mtrl.cli import main
from tests.conftest import REPO, SMOKE

DIGESTS = REPO / "tests" / "data" / "update_digests.json"
SHORT = ["total_env_steps=2000", "eval_every=2000", "checkpoint_every=2000", "log_every=500"]
RUNS = {
    "ew": ["--balancer", "ew"],
    "nash_mtl": ["--balancer", "nash_mtl"],
    "staged_famo_cagrad": ["balancer.stages=[{until: 1505, balancer: famo}, {balancer: cagrad}]"],
}


# torch's thread count of this process as it started (read at collection, before any test runs):
# tests that train with torch_threads=1 leave torch at 1 for the rest of the session, so each run
# here sets it back to this for its duration
DEFAULT_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def default_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(DEFAULT_THREADS)
    yield
    torch.set_num_threads(before)


def _platform() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    import scipy.linalg  # noqa: F401  (its OpenBLAS too)
    from threadpoolctl import threadpool_info

    # numpy's and scipy's OpenBLAS (the solves use them), not others loaded later (cvxpy's scs
    # bundles one at 1 thread): the key must not depend on which tests ran first
    blas = sorted(
        {
            f"{i.get('architecture')} x{i['num_threads']}"
            for i in threadpool_info()
            if i["internal_api"] == "openblas" and Path(i["filepath"]).parent.name.split(".")[0] in ("numpy", "scipy")
        }
    )
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu": cpu,
        "threads": DEFAULT_THREADS,
        "openblas": blas,
    }


def _recordings() -> list[dict]:
    return json.loads(DIGESTS.read_text())["recordings"] if DIGESTS.exists() else []


def _feed(h, value) -> None:
    """A canonical byte stream of a checkpoint's nested state: dict keys sorted, tensors and arrays
    by dtype, shape and bytes, everything else by repr."""
    if isinstance(value, dict):
        for key in sorted(value, key=repr):
            h.update(repr(key).encode())
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__}{len(value)}".encode())
        for item in value:
            _feed(h, item)
    elif isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    else:
        h.update(repr(value).encode())


def _digests(run_dir) -> dict[str, str]:
    state = torch.load(list_checkpoints(run_dir)[-1], weights_only=False)
    out = {}
    for part in ("agent", "optimizers", "balancers", "alpha_opt", "replay"):
        h = hashlib.sha256()
        _feed(h, state[part])
        out[part] = h.hexdigest()
    out["counters"] = json.dumps({k: v for k, v in state["counters"].items() if k != "wall_time_s"}, sort_keys=True)
    return out


@pytest.fixture(scope="module")
def recorded() -> dict:
    if os.environ.get("MTRL_RECORD_DIGESTS"):
        return {}
    here = _platform()
    for recording in _recordings():
        if recording["platform"] == here:
            return recording["runs"]
    seen = "; ".join(str(r["platform"]) for r in _recordings()) or "none"
    pytest.skip(f"digests recorded on {seen}; this is {here}: bit-level results differ")


@pytest.mark.parametrize("name", list(RUNS))
def test_training_ends_with_the_recorded_states(name, recorded, tmp_path):
    run = tmp_path / name
    assert main(["train", "--config", str(SMOKE), "--run-dir", str(run), *SHORT, *RUNS[name]]) == 0
    digests = _digests(run)
    if os.environ.get("MTRL_RECORD_DIGESTS"):
        here = _platform()
        recordings = _recordings()
        mine = next((r for r in recordings if r["platform"] == here), None)
        if mine is None:
            mine = {"platform": here, "runs": {}}
            recordings.append(mine)
        mine["runs"][name] = digests
        DIGESTS.write_text(json.dumps({"recordings": recordings}, indent=1, sort_keys=True) + "\n")
        return
    assert digests == recorded[name]
