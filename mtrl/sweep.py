"""``mtrl compare``: a grid of runs (balancers x swept values x seeds), one run directory each.

    <out>/<balancer>[_<key><value>...]/seed<s>/    e.g. runs/cmp/cagrad_c0.9/seed2/,
                                                     runs/grid/static_weights1-1-4/seed1/

Swept values are YAML as typed (``--set 'balancer.kwargs.weights=[1,1,4],[4,1,1]'``: commas inside
brackets or quotes do not split) and name their directory in a short form (:func:`value_name`).

Seeds are the config's ``seed`` plus 0 .. N-1 (``seed=10`` on the command line moves the base),
and the directory is named by the seed value itself. Every run is a separate ``mtrl train``
process (its own CUDA context, so J runs share one GPU with ``device=auto``), its output in
``<run>/train.log``. The state of a run directory decides what a re-run does: ``summary.json``
-> finished, skipped; ``config.yaml`` -> interrupted, ``mtrl train --resume``; neither -> new.
An existing run whose config is not the one the grid asks for is an error, never reused.

Everything is validated before the first run starts: a bad balancer name, config key or
swept value raises ConfigError (the CLI prints one line and exits 2) and creates nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import yaml

from mtrl.config import Config, ConfigError, flatten_config, load_config, to_dict

# The repository root that holds this ``mtrl``: children import the same code as the parent,
# also from a checkout that is not installed.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


@dataclass(frozen=True)
class GridPoint:
    name: str  # relative to the compare directory, e.g. "cagrad_c0.9/seed2"
    run_dir: Path
    overrides: dict[str, str]  # given to `mtrl train --config CFG` after the user's overrides
    cfg: Config


@dataclass(frozen=True)
class RunResult:
    point: GridPoint
    action: str  # "new" | "resume"
    returncode: int
    seconds: float

    @property
    def finished(self) -> bool:
        return self.returncode == 0 and (self.point.run_dir / "summary.json").is_file()


def split_values(text: str) -> list[str]:
    """``v1,v2`` -> [v1, v2], keeping commas inside brackets and quotes: ``[32,32],[64,64]`` and
    ``{reach-v3: 4, push-v3: 2},[1,1,1]`` are two values each (YAML flow style, as typed)."""
    values, depth, start, quote = [], 0, 0, None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values


def parse_sweeps(items: list[str]) -> dict[str, list[str]]:
    """``--set key=v1,v2`` arguments -> {key: [v1, v2]}, in the order given."""
    sweeps: dict[str, list[str]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ConfigError(f"--set {item!r} is not key=v1,v2 (e.g. --set balancer.kwargs.c=0.5,0.9)")
        if key in ("balancer", "balancer.critic", "balancer.actor", "seed"):
            raise ConfigError(f"--set {key} is not swept with --set; use --balancers or --seeds")
        if key in sweeps:
            raise ConfigError(f"--set {key} is given twice; list all its values once: --set {key}=v1,v2")
        values = split_values(text)
        if "" in values or len(set(values)) != len(values):
            raise ConfigError(f"--set {key}: values must be non-empty and distinct, got {text!r}")
        sweeps[key] = values
    return sweeps


def _hparam_of(key: str) -> str | None:
    """The balancer hyperparameter a key sets (``balancer.kwargs.c`` -> ``c``), else None."""
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "balancer" and parts[1] in ("kwargs", "critic_kwargs", "actor_kwargs"):
        return parts[2]
    return None


def _short_names(keys: list[str]) -> dict[str, str]:
    """Name parts of swept keys: the last component (``c``, ``gamma``) unless two keys share it."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k.replace(".", "-") for k, s in zip(keys, last, strict=True)}


NAME_LIMIT = 40  # characters of a value's part of a directory name; longer ones end in a digest


def value_name(text: str) -> str:
    """A swept value as part of a directory name: short, readable, safe in a path and a shell.
    The value is read as YAML: ``0.5`` -> ``0.5``, ``[1, 1, 4]`` -> ``1-1-4``,
    ``{reach-v3: 4}`` -> ``reach-v3=4`` (entries joined by ``+``). A name longer than NAME_LIMIT
    is cut and ends in 6 hex digits of the value's digest, so two long values stay apart."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    name = _safe(_compact(value))
    if len(name) <= NAME_LIMIT:
        return name
    digest = hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{name[: NAME_LIMIT - 7].rstrip('-+=.')}-{digest}"


def _compact(value) -> str:
    if isinstance(value, dict):
        return "+".join(f"{k}={_compact(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "-".join(_compact(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+=-]+", "-", value).strip("-") or "x"


STAGES = "balancer.stages"  # swept without --balancers: each value names every stage's balancers


def build_grid(
    config: str | Path,
    balancers: list[str],
    seeds: int,
    sweeps: dict[str, list[str]],
    overrides: dict[str, str],
    out: Path,
) -> list[GridPoint]:
    """Every run of the comparison, each config loaded and validated (ConfigError otherwise).

    A swept balancer hyperparameter (``balancer.kwargs.c``) varies only the balancers that
    have it; the others get one run per seed. Any other swept key varies every balancer.
    A swept ``balancer.stages`` takes the place of ``balancers`` (then empty): each value is a
    method of its own, named by its stages (``loss_norm-gradnorm@1M``)."""
    from mtrl.balancers import available_balancers, balancer_hparams

    if STAGES in sweeps and balancers:
        raise ConfigError(f"--set {STAGES} names every stage's balancers; drop --balancers")
    if (not balancers and STAGES not in sweeps) or "" in balancers:
        raise ConfigError("--balancers needs a comma-separated list of names, e.g. ew,cagrad")
    unknown = [b for b in balancers if b not in available_balancers()]
    if unknown:
        raise ConfigError(f"unknown balancer {unknown[0]!r}; valid: {', '.join(available_balancers())}")
    if len(set(balancers)) != len(balancers):
        raise ConfigError(f"--balancers lists a name twice: {','.join(balancers)}")
    if seeds <= 0:
        raise ConfigError(f"--seeds must be > 0, got {seeds}")
    taken = {"balancer", "balancer.critic", "balancer.actor"} & set(overrides)
    if taken:
        raise ConfigError(f"{min(taken)}=... conflicts with --balancers; give the balancers there")
    for key in set(sweeps) & set(overrides):
        raise ConfigError(f"{key} is both swept with --set and fixed with {key}=...; give it once")
    for key in sweeps:
        h = _hparam_of(key)
        if h is not None and STAGES in sweeps:
            raise ConfigError(f"--set {key} beside --set {STAGES}: give the hyperparameters inside each stage")
        if h is not None and not any(h in balancer_hparams(b) for b in balancers):
            raise ConfigError(f"--set {key}: none of {', '.join(balancers)} has a hyperparameter {h!r}")

    base = load_config(config, overrides)
    names = _short_names(list(sweeps))
    points = []
    methods: list[str | None] = [*balancers] or [None]  # None: the config's own balancer
    for balancer in methods:
        # a hyperparameter sweep without balancers was refused above
        keys = [k for k in sweeps if (h := _hparam_of(k)) is None or (balancer and h in balancer_hparams(balancer))]
        for values in itertools.product(*(sweeps[k] for k in keys)):
            swept = dict(zip(keys, values, strict=True))
            method = {} if balancer is None else {"balancer": balancer}
            runs = [{**swept, **method, "seed": str(base.seed + k)} for k in range(seeds)]
            cfgs = [load_config(config, {**overrides, **run}) for run in runs]
            # a swept stages list is named by its label, which the loaded config knows
            parts = [cfgs[0].balancer.label if k == STAGES else f"{names[k]}{value_name(v)}" for k, v in swept.items()]
            group = "_".join([balancer, *parts] if balancer else parts)
            for run, cfg in zip(runs, cfgs, strict=True):
                points.append(GridPoint(f"{group}/seed{cfg.seed}", out / group / f"seed{cfg.seed}", run, cfg))
    dirs = [p.run_dir for p in points]
    if len(set(dirs)) != len(dirs):  # e.g. values [1,2] and [1, 2]: one value, one directory
        raise ConfigError("two grid points map to the same run directory; use distinct --set values")
    return points


def run_state(point: GridPoint) -> str:
    """The state of a run directory: "finished", "resume" or "new"; ConfigError when the directory
    holds a different run."""
    saved = point.run_dir / "config.yaml"
    if not saved.is_file():
        return "new"
    try:
        have = flatten_config(to_dict(load_config(saved)))
    except ConfigError as e:
        raise ConfigError(f"{point.run_dir} holds a run whose config cannot be read ({e})") from None
    want = flatten_config(to_dict(point.cfg))
    diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    if diff:
        shown = ", ".join(f"{k}={have.get(k)!r} (grid: {want.get(k)!r})" for k in diff[:3])
        raise ConfigError(f"{point.run_dir} holds a different run: {shown}; use another --out or remove it")
    return "finished" if (point.run_dir / "summary.json").is_file() else "resume"


def train_argv(point: GridPoint, action: str, config: Path, overrides: dict[str, str]) -> list[str]:
    """The ``mtrl train`` arguments of one run (without the interpreter)."""
    if action == "resume":
        return ["-m", "mtrl.cli", "train", "--resume", str(point.run_dir)]
    given = {**overrides, **point.overrides}
    return [
        "-m",
        "mtrl.cli",
        "train",
        "--config",
        str(config),
        "--run-dir",
        str(point.run_dir),
        *(f"{k}={v}" for k, v in given.items()),
    ]


def execute(argv: list[str], log: str, threads: int) -> int:
    """Run ``python argv`` with output appended to ``log``; the exit status. Module level so that
    Ray can ship it to a worker, where ``sys.executable`` is that worker's interpreter."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} python {' '.join(argv)}\n")
        f.flush()
        return subprocess.run(
            [sys.executable, *argv], stdout=f, stderr=subprocess.STDOUT, env=env, check=False
        ).returncode


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Progress:
    """One stderr line per run started and finished; threads print whole lines under a lock."""

    def __init__(self, total: int):
        self.total, self.done, self.lock = total, 0, threading.Lock()

    def say(self, line: str) -> None:
        with self.lock:
            print(f"mtrl: {line}", file=sys.stderr, flush=True)

    def started(self, point: GridPoint, action: str) -> None:
        self.say(
            f"start   {point.name} ({'resuming' if action == 'resume' else 'new'}), log {point.run_dir / 'train.log'}"
        )

    def finished(self, r: RunResult) -> None:
        with self.lock:
            self.done += 1
            n = self.done
        if r.finished:
            self.say(f"[{n}/{self.total}] done    {r.point.name} in {r.seconds:.0f} s")
        elif r.returncode == 0:  # stopped by a signal: checkpointed, not finished
            self.say(f"[{n}/{self.total}] stopped {r.point.name}; re-run the same command to resume it")
        else:
            self.say(
                f"[{n}/{self.total}] FAILED  {r.point.name} (exit {r.returncode}), log {r.point.run_dir / 'train.log'}"
            )


def _run_local(todo, jobs, argvs, progress) -> list[RunResult]:
    threads = max(1, _cores() // jobs)  # J processes share the cores instead of each taking all

    def one(point, action):
        progress.started(point, action)
        start = time.time()
        code = execute(argvs[point.name], str(point.run_dir / "train.log"), threads)
        result = RunResult(point, action, code, time.time() - start)
        progress.finished(result)
        return result

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = [pool.submit(one, p, a) for p, a in todo]
        results = [f.result() for f in as_completed(futures)]
    except KeyboardInterrupt:  # runs in progress checkpoint on the same Ctrl-C; start no others
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return results


def _run_ray(todo, jobs, argvs, progress, address: str | None) -> list[RunResult]:
    """The same runs as Ray core tasks, at most ``jobs`` at a time. Each task asks for
    cores/jobs CPUs and, when the cluster has GPUs, a 1/ceil(jobs/GPUs) share of one."""
    import ray  # present: compare() checked before any run directory was written

    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, log_to_driver=False, include_dashboard=False)
        except ConnectionError as e:
            raise ConfigError(f"cannot join the Ray cluster at {address!r}: {str(e).splitlines()[0]}") from None
    try:
        resources = ray.cluster_resources()
        cpus = max(1, int(resources.get("CPU", 1)) // jobs)
        gpus = resources.get("GPU", 0)
        gpu_share = 1.0 / math.ceil(jobs / gpus) if gpus else 0
        task = ray.remote(num_cpus=cpus, num_gpus=gpu_share, max_retries=0)(execute)
        pending: dict[object, tuple[GridPoint, str, float]] = {}  # Ray's task ref -> its run, since when
        waiting, results = list(todo), []
        while waiting or pending:
            while waiting and len(pending) < jobs:
                point, action = waiting.pop(0)
                progress.started(point, action)
                ref = task.remote(argvs[point.name], str(point.run_dir / "train.log"), cpus)
                pending[ref] = (point, action, time.time())
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            point, action, start = pending.pop(ref)
            try:
                code = ray.get(ref)
            except ray.exceptions.RayError as e:  # the worker died: report it like a failed run
                progress.say(f"{point.name}: Ray task failed: {str(e).splitlines()[0]}")
                code = -1
            result = RunResult(point, action, code, time.time() - start)
            progress.finished(result)
            results.append(result)
        return results
    finally:
        if started_here:
            ray.shutdown()


def compare(
    config: str | Path,
    balancers: list[str],
    seeds: int,
    sweeps: dict[str, list[str]],
    overrides: dict[str, str],
    out: str | Path,
    jobs: int = 1,
    backend: str = "local",
    address: str | None = None,
) -> int:
    """Run the grid; 0 when every run has finished, 1 when any failed or stopped."""
    if jobs <= 0:
        raise ConfigError(f"--jobs must be > 0, got {jobs}")
    if address and backend != "ray":
        raise ConfigError("--address joins a Ray cluster; it needs --backend ray")
    if backend == "ray":
        try:
            import ray  # noqa: F401  (checked before any run directory is written)
        except ImportError:
            raise ConfigError("--backend ray needs Ray: pip install 'mtrl[ray]'") from None
    config, out = Path(config).resolve(), Path(out).resolve()
    points = build_grid(config, balancers, seeds, sweeps, overrides, out)
    states = {p.name: run_state(p) for p in points}  # a foreign run in the way stops everything here
    todo = [(p, states[p.name]) for p in points if states[p.name] != "finished"]
    argvs = {p.name: train_argv(p, a, config, overrides) for p, a in todo}
    progress = _Progress(len(todo))
    for p in points:
        if states[p.name] == "finished":
            progress.say(f"skip    {p.name} (finished)")
    if todo:
        run = _run_ray if backend == "ray" else _run_local
        extra = (address,) if backend == "ray" else ()
        results = run(todo, min(jobs, len(todo)), argvs, progress, *extra)
    else:
        results = []
    failed = [r for r in results if not r.finished]
    skipped = len(points) - len(todo)
    progress.say(
        f"compare {out}: {len(results) - len(failed)} trained, {skipped} skipped (finished), "
        f"{len(failed)} failed or stopped"
    )
    for r in sorted(failed, key=lambda r: r.point.name):
        progress.say(f"  not finished: {r.point.name} (exit {r.returncode}), log {r.point.run_dir / 'train.log'}")
    if not failed:
        progress.say(f"report: mtrl report {out} --out {out / 'report'}")
    return 1 if failed else 0
