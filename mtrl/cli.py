"""The ``mtrl`` command line. Bad input exits 2 with one line on stderr, never a traceback.

torch, Meta-World and gymnasium are imported inside the commands that need them, so that
``--help``, ``mtrl list`` and most bad input answer at once (a test keeps ``import mtrl.cli``
free of them)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mtrl.config import (
    Config,
    ConfigError,
    apply_overrides,
    load_config,
    method_label,
    parse_override_args,
    save_config,
    validate,
)

if TYPE_CHECKING:
    from mtrl.run_loop import RunLoop

# what ``--resume`` may change: the run's length, and how this machine steps its envs (which
# changes no transition)
RESUME_OVERRIDES = ("total_env_steps", "env_workers")


class UsageError(Exception):
    """Bad input detected by a command; printed as one line, exit code 2."""


class RunStopped(Exception):
    """A run stopped on a checkpoint write or on non-finite updates; what it saved is intact (exit 1)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtrl", description="Multi-task SAC on Meta-World with gradient balancers.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a run (or continue one with --resume)")
    t.add_argument("--config", help="YAML preset, e.g. configs/mt10.yaml")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    t.add_argument("--balancer", help="balancer for the critic and the actor (config key 'balancer')")
    t.add_argument(
        "--agent", help="mtsac (default) or stl_sac: one stable-baselines3 SAC per task (config key 'agent')"
    )
    t.add_argument("--seed", type=int, help="config key 'seed'")
    t.add_argument("--run-dir", help="where the run is written (default runs/<taskset>_<balancer>_s<seed>_<time>)")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides with dotted keys")

    e = sub.add_parser("eval", help="evaluate the last checkpoint of a run")
    e.add_argument("run_dir")
    e.add_argument("--episodes", type=int, help="episodes per task (default: the run's eval_episodes)")

    c = sub.add_parser(
        "compare", help="train a grid of balancers x seeds (skips finished runs, resumes interrupted ones)"
    )
    c.add_argument("--config", required=True, help="YAML preset every run starts from")
    c.add_argument(
        "--balancers", help="comma-separated, e.g. ew,cagrad,nash_mtl (omitted when --set sweeps balancer.stages)"
    )
    c.add_argument("--seeds", type=int, required=True, help="seeds per grid point: the config's seed + 0 .. N-1")
    c.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="key=v1,v2",
        help="sweep a config key over values, YAML as typed: commas inside [], {} or quotes do not split "
        "(repeatable; grid = product)",
    )
    c.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    c.add_argument("--backend", choices=["local", "ray"], default="local")
    c.add_argument("--address", help="Ray cluster to join (default: start a local Ray)")
    c.add_argument("--out", required=True, help="compare directory: <out>/<balancer>/seed<s>/ per run")
    c.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every run")

    r = sub.add_parser("report", help="tables and plots (rliable IQM with 95%% CIs) from runs or compare dirs")
    r.add_argument("paths", nargs="+", metavar="RUN_DIR_OR_COMPARE_DIR")
    r.add_argument("--out", required=True, help="where report.md, CSVs, PNGs and report.json go")
    r.add_argument("--reps", type=int, default=2000, help="bootstrap resamples per interval (default 2000)")
    r.add_argument(
        "--allow-mixed",
        action="store_true",
        help="put runs of different task sets or episode protocols (max_episode_steps, num_goals, "
        "eval_episodes) side by side",
    )

    b = sub.add_parser("bench", help="throughput: env stepping, updates per balancer, per-task gradients, memory")
    b.add_argument("--config", help="YAML preset (default: the protocol defaults of configs/mt10.yaml)")
    b.add_argument("--quick", action="store_true", help="fewer repetitions: about a minute or two on a CPU")
    b.add_argument("--balancers", help="comma-separated balancers to time (default: all; EW is always included)")
    b.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    b.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides with dotted keys")

    ls = sub.add_parser("list", help="list what is available")
    ls.add_argument("what", choices=["tasksets", "balancers"])
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # argparse already prints one usage line and exits 2 on malformed arguments
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "compare":
            return _compare(args)
        if args.command == "report":
            from mtrl.report import report

            return report(args.paths, args.out, reps=args.reps, allow_mixed=args.allow_mixed)
        if args.command == "bench":
            return _bench(args)
        if args.command == "list":
            return _list(args.what)
    except (ConfigError, UsageError) as e:
        print(f"mtrl: error: {e}", file=sys.stderr)
        return 2
    except RunStopped as e:
        print(f"mtrl: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mtrl: interrupted", file=sys.stderr)
        return 130
    return 0


def _train(args) -> int:
    overrides = parse_override_args(args.overrides)
    if args.resume:
        if args.config or args.balancer or args.agent or args.seed is not None or args.run_dir:
            raise UsageError(
                "--resume takes only the run directory (and total_env_steps=N to extend the run, "
                "env_workers=N for this machine)"
            )
        run_dir = Path(args.resume)
        saved = _load_run_config(run_dir)
        extra = set(overrides) - set(RESUME_OVERRIDES)
        if extra:
            raise UsageError(
                f"cannot change {', '.join(sorted(extra))} when resuming; only "
                f"{' and '.join(f'{key}=N' for key in RESUME_OVERRIDES)}"
            )
        cfg = apply_overrides(saved, overrides)
        finished = _finished_env_steps(run_dir)
        if finished is not None and cfg.total_env_steps <= finished:
            extend = f"extend it with `mtrl train --resume {run_dir} total_env_steps=M` (M > {finished})"
            if "total_env_steps" in overrides:  # asked for something that cannot be done: bad input
                raise UsageError(
                    f"total_env_steps={cfg.total_env_steps} is not beyond the {finished} env steps "
                    f"{run_dir} finished at; {extend}"
                )
            print(
                f"mtrl: {run_dir} finished at {finished} env steps; nothing to do. To train on, {extend}",
                file=sys.stderr,
            )
            return 0
        validate(cfg)
        from mtrl.checkpoint import CheckpointError
        from mtrl.run_loop import resume_run

        try:
            trainer = resume_run(run_dir, cfg, _agent_trainer(cfg))
        except CheckpointError as e:
            raise UsageError(str(e)) from None
        if cfg.total_env_steps != saved.total_env_steps:
            # an extension: config.yaml keeps saying what the run is, so rerunning it reproduces the run
            # (env_workers is this machine's, not the run's: it changes no transition)
            save_config(dataclasses.replace(saved, total_env_steps=cfg.total_env_steps), run_dir / "config.yaml")
            print(
                f"mtrl: total_env_steps {saved.total_env_steps} -> {cfg.total_env_steps}, recorded in "
                f"{run_dir / 'config.yaml'}",
                file=sys.stderr,
            )
        print(f"mtrl: resuming {run_dir} at env step {trainer.counters.env_steps}", file=sys.stderr)
    else:
        if not args.config:
            raise UsageError("train needs --config FILE (e.g. configs/mt10_quick.yaml) or --resume RUN_DIR")
        if args.balancer is not None:
            overrides["balancer"] = args.balancer
        if args.agent is not None:
            overrides["agent"] = args.agent
        if args.seed is not None:
            overrides["seed"] = args.seed
        cfg = load_config(args.config, overrides)
        taskset_label = Path(cfg.taskset).stem if cfg.taskset.endswith((".yaml", ".yml")) else cfg.taskset
        taskset_label = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in taskset_label)
        method = method_label(cfg)
        run_dir = Path(args.run_dir or f"runs/{taskset_label}_{method}_s{cfg.seed}_{time.strftime('%Y%m%d-%H%M%S')}")
        from mtrl.run_loop import start_run

        try:
            trainer = start_run(cfg, run_dir, _agent_trainer(cfg))
        except FileExistsError as e:
            raise UsageError(str(e)) from None
        print(f"mtrl: training {cfg.taskset} with {method}, seed {cfg.seed}, into {run_dir}", file=sys.stderr)
    from mtrl.checkpoint import CheckpointError
    from mtrl.trainer import NonFiniteError

    try:
        summary = trainer.train()
    except (CheckpointError, NonFiniteError) as e:
        raise RunStopped(str(e)) from None
    if "stopped_by" in summary:
        print(
            f"mtrl: stopped by {summary['stopped_by']} at env step {summary['env_steps']}, checkpoint written; "
            f"continue with: mtrl train --resume {trainer.run_dir}",
            file=sys.stderr,
        )
        return 0
    print(format_summary(summary, trainer.run_dir))
    return 0


def _agent_trainer(cfg: Config) -> type[RunLoop]:
    """The run loop of ``cfg.agent`` (imported here: stable-baselines3 loads only for its baseline)."""
    if cfg.agent == "stl_sac":
        from mtrl.stl_trainer import STLTrainer

        return STLTrainer
    from mtrl.trainer import Trainer

    return Trainer


def _finished_env_steps(run_dir: Path) -> int | None:
    """The env steps of a finished run (its summary.json), None for one still under way."""
    try:
        return int(json.loads((run_dir / "summary.json").read_text())["env_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def format_summary(summary: dict, run_dir: Path) -> str:
    """The end of a run: where it is, final and best mean success, the per-task table (final
    success and success at the best evaluation), wall time and the TensorBoard command."""
    from mtrl.logger import read_eval_log
    from mtrl.progress import format_duration

    evals = read_eval_log(run_dir)
    best = max(evals, key=lambda e: e["success_mean"]) if evals else None  # the first of ties
    tasks = list(summary["final_success"])
    width = max(len("mean"), *map(len, tasks))
    best_at = f" (at {best['step']} env steps)" if best else ""
    lines = [
        f"run        {run_dir}",
        f"trained    {summary['env_steps']} env steps, {summary['updates']} updates, wall time "
        f"{format_duration(summary['wall_time_s'])} ({summary['env_steps_per_s']:.0f} env steps/s)",
        f"success    final {summary['final_success_mean']:.2f}, best {summary['best_success_mean']:.2f}{best_at}",
        "",
        f"{'task':<{width}}  final  at best",
    ]
    for t in tasks:
        at_best = f"{best['success'][t]:7.2f}" if best and t in best["success"] else ""
        lines.append(f"{t:<{width}}  {summary['final_success'][t]:5.2f}  {at_best}")
    at_best = f"{best['success_mean']:7.2f}" if best else ""
    lines += [
        f"{'mean':<{width}}  {summary['final_success_mean']:5.2f}  {at_best}",
        "",
        f"tensorboard --logdir {run_dir / 'tb'}",
    ]
    return "\n".join(lines)


def _compare(args) -> int:
    from mtrl.sweep import compare, parse_sweeps

    return compare(
        args.config,
        [] if args.balancers is None else [b.strip() for b in args.balancers.split(",")],
        args.seeds,
        parse_sweeps(args.set),
        parse_override_args(args.overrides),
        args.out,
        jobs=args.jobs,
        backend=args.backend,
        address=args.address,
    )


def _load_run_config(run_dir: Path) -> Config:
    path = run_dir / "config.yaml"
    if not run_dir.exists():
        raise UsageError(f"{run_dir} does not exist")
    if not path.is_file():
        raise UsageError(f"{run_dir} is not a run directory (no config.yaml)")
    return load_config(path)


def _eval(args) -> int:
    from agents.mtsac import MTSAC
    from envs.evaluation import evaluate
    from envs.tasksets import get_taskset
    from mtrl.checkpoint import CheckpointError, load_latest_checkpoint
    from mtrl.progress import EvalProgress
    from mtrl.run_loop import make_eval_envs, resolve_device, space_dims

    run_dir = Path(args.run_dir)
    cfg = _load_run_config(run_dir)
    if args.episodes is not None and args.episodes <= 0:
        raise UsageError(f"--episodes must be > 0, got {args.episodes}")
    try:
        state = load_latest_checkpoint(run_dir)
    except CheckpointError as e:
        raise UsageError(str(e)) from None
    if state is None:
        raise UsageError(f"{run_dir} has no checkpoint to evaluate")
    taskset = get_taskset(cfg.taskset)
    if cfg.agent != "mtsac":
        raise UsageError(
            f"mtrl eval reads MT-SAC checkpoints; {run_dir} is an {cfg.agent} run (its eval.jsonl has its evaluations)"
        )
    envs = make_eval_envs(cfg, taskset)
    obs_dim, action_dim = space_dims(envs)
    agent = MTSAC(obs_dim, action_dim, taskset.num_tasks, cfg.sac).to(resolve_device(cfg.device))
    agent.load_state_dict(state["agent"])
    episodes = args.episodes or cfg.eval_episodes
    shown = EvalProgress(f"evaluating {run_dir}")
    result = evaluate(
        lambda o: agent.act(o, deterministic=True), envs, taskset.tasks, episodes, seed=cfg.seed, progress=shown
    )
    assert result is not None  # no stop callback: the evaluation runs whole
    shown.finish(result.success_mean)
    envs.close()
    width = max(len(t) for t in taskset.tasks)
    print(
        f"{'task':<{width}}  success  return   "
        f"(checkpoint at env step {state['counters']['env_steps']}, {episodes} episodes per task)"
    )
    for t in taskset.tasks:
        print(f"{t:<{width}}  {result.success[t]:7.2f}  {result.returns[t]:8.1f}")
    print(f"{'mean':<{width}}  {result.success_mean:7.2f}")
    return 0


def _bench(args) -> int:
    from mtrl.balancers import available_balancers
    from mtrl.bench import format_table, run_bench

    overrides = parse_override_args(args.overrides)
    cfg = load_config(args.config, overrides) if args.config else apply_overrides(Config(), overrides)
    validate(cfg)
    balancers = None
    if args.balancers:
        balancers = [name.strip() for name in args.balancers.split(",") if name.strip()]
        unknown = [name for name in balancers if name not in available_balancers()]
        if unknown:
            raise UsageError(f"unknown balancer {', '.join(unknown)}; valid: {', '.join(available_balancers())}")
    if args.json and not Path(args.json).parent.is_dir():
        raise UsageError(f"--json {args.json}: directory {Path(args.json).parent} does not exist")
    figures = run_bench(cfg, quick=args.quick, balancers=balancers)
    print(format_table(figures))
    if args.json:
        tmp = Path(args.json + ".tmp")
        tmp.write_text(json.dumps(figures, indent=2) + "\n")
        tmp.replace(args.json)
    return 0


def _list(what: str) -> int:
    if what == "tasksets":
        from envs.tasksets import available_tasksets

        for name in available_tasksets():
            print(name)
    else:
        from mtrl.balancers import available_balancers, balancer_hparams

        for name in available_balancers():
            hp = ", ".join(f"{k}={v!r}" for k, v in balancer_hparams(name).items())
            print(f"{name:<20} {hp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
