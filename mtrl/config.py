"""Typed run configuration: YAML presets plus ``key=value`` overrides with dotted keys.

Every value, from a file or the command line, goes through one path (``apply_overrides``), so
an unknown key, a wrong type or an out-of-range value is rejected the same way: a ConfigError
whose message is one line naming the key and what is valid (the CLI prints it and exits 2).
Step counts are environment steps, i.e. transitions summed over tasks (one vector step of
MT10 is 10 env steps).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from agents.mtsac import SACConfig


class ConfigError(ValueError):
    """Bad configuration input; the message is one line meant for the user."""


def default_sac() -> SACConfig:
    return SACConfig(
        hidden_sizes=[400, 400, 400],
        gamma=0.99,
        tau=0.005,
        actor_lr=3e-4,
        critic_lr=3e-4,
        alpha_lr=3e-4,
        init_log_alpha=0.0,
        log_std_min=-20.0,
        log_std_max=2.0,
    )


@dataclass
class Config:
    taskset: str = "MT10"
    seed: int = 1
    device: str = "auto"  # auto | cpu | cuda
    total_env_steps: int = 20_000_000
    warmup_env_steps: int = 40_000  # random actions for the first 4000 vector steps of MT10
    updates_per_vector_step: int = 1
    batch_size: int = 1280  # split equally over tasks: 128 per task on MT10
    buffer_size: int = 1_000_000  # split equally over tasks
    eval_every: int = 200_000
    eval_episodes: int = 50  # per task
    checkpoint_every: int = 200_000
    keep_checkpoints: int = 2
    log_every: int = 10_000  # losses, temperatures, throughput
    vector_strategy: str = "sync"  # sync | async
    max_episode_steps: int = 500
    torch_threads: int = 0  # 0: torch's default
    balancer: str = "ew"
    sac: SACConfig = field(default_factory=default_sac)


# ---------------------------------------------------------------------------------------------
def _fields(cls) -> dict[str, tuple[type, bool]]:
    """name -> (type, is_nested_dataclass) for a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], dataclasses.is_dataclass(hints[f.name])) for f in dataclasses.fields(cls)}


def valid_keys(cls=Config, prefix: str = "") -> list[str]:
    keys = []
    for name, (tp, nested) in _fields(cls).items():
        keys += valid_keys(tp, f"{prefix}{name}.") if nested else [f"{prefix}{name}"]
    return keys


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) if typing.get_origin(tp) is None else str(tp).replace("typing.", "")


def _coerce(key: str, value, tp):
    """Convert a YAML or command-line value to the field type, or raise ConfigError."""

    def bad() -> ConfigError:
        return ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}")

    if typing.get_origin(tp) is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, list):
            raise bad()
        return [_coerce(key, v, item_tp) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise bad()
    if tp is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return value
        try:  # "1e6" and 1e6 are accepted when integral
            as_float = float(value)
        except (TypeError, ValueError):
            raise bad() from None
        if not as_float.is_integer():
            raise bad()
        return int(as_float)
    if tp is float:
        if isinstance(value, bool):
            raise bad()
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad() from None
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise bad()
        return str(value)
    raise bad()


def apply_overrides(cfg: Config, overrides: dict[str, object]) -> Config:
    """Return a copy of ``cfg`` with dotted-key overrides applied and validated."""
    cfg = _copy(cfg)
    for key, value in overrides.items():
        obj, parts = cfg, key.split(".")
        for i, part in enumerate(parts):
            fields = _fields(type(obj))
            if part not in fields:
                raise ConfigError(f"unknown config key {key!r}; valid: {', '.join(valid_keys())}")
            tp, nested = fields[part]
            last = i == len(parts) - 1
            if nested and not last:
                obj = getattr(obj, part)
            elif nested or not last:
                raise ConfigError(f"config key {key!r} is not a value; valid: {', '.join(valid_keys())}")
            else:
                setattr(obj, part, _coerce(key, value, tp))
    return cfg


def parse_override_args(args: list[str]) -> dict[str, str]:
    out = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {arg!r} is not key=value (e.g. seed=3 or sac.gamma=0.98)")
        out[key.strip()] = value.strip()
    return out


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_config(path: str | Path, overrides: dict[str, object] | None = None) -> Config:
    """Defaults <- YAML file <- overrides, then validated."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys to values")
    cfg = apply_overrides(Config(), _flatten(data))
    cfg = apply_overrides(cfg, overrides or {})
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Semantic checks beyond types; raises ConfigError with one line."""
    from envs.tasksets import get_taskset
    from mtrl.balancers import available_balancers

    try:
        num_tasks = get_taskset(cfg.taskset).num_tasks
    except ValueError as e:
        raise ConfigError(str(e)) from None
    positive = [
        "total_env_steps", "updates_per_vector_step", "batch_size", "buffer_size", "eval_every",
        "eval_episodes", "checkpoint_every", "keep_checkpoints", "log_every", "max_episode_steps",
    ]  # fmt: skip
    for key in positive:
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"config key {key!r} must be > 0, got {getattr(cfg, key)}")
    for key in ["warmup_env_steps", "torch_threads"]:
        if getattr(cfg, key) < 0:
            raise ConfigError(f"config key {key!r} must be >= 0, got {getattr(cfg, key)}")
    if cfg.batch_size % num_tasks:
        raise ConfigError(
            f"batch_size {cfg.batch_size} is not divisible by the {num_tasks} tasks of {cfg.taskset}; "
            f"use a multiple of {num_tasks}"
        )
    if cfg.buffer_size < num_tasks:
        raise ConfigError(f"buffer_size {cfg.buffer_size} is smaller than the {num_tasks} tasks of {cfg.taskset}")
    choices = {"device": ("auto", "cpu", "cuda"), "vector_strategy": ("sync", "async")}
    for key, valid in choices.items():
        if getattr(cfg, key) not in valid:
            raise ConfigError(f"config key {key!r} is {getattr(cfg, key)!r}; valid: {', '.join(valid)}")
    if cfg.balancer not in available_balancers():
        raise ConfigError(f"unknown balancer {cfg.balancer!r}; valid: {', '.join(available_balancers())}")
    sac = cfg.sac
    if not sac.hidden_sizes or min(sac.hidden_sizes) <= 0:
        raise ConfigError(f"config key 'sac.hidden_sizes' needs positive layer sizes, got {sac.hidden_sizes}")
    for key in ["actor_lr", "critic_lr", "alpha_lr"]:
        if getattr(sac, key) <= 0:
            raise ConfigError(f"config key 'sac.{key}' must be > 0, got {getattr(sac, key)}")
    if not 0 < sac.gamma <= 1 or not 0 < sac.tau <= 1:
        raise ConfigError(f"sac.gamma and sac.tau must lie in (0, 1], got {sac.gamma} and {sac.tau}")
    if sac.log_std_min >= sac.log_std_max:
        raise ConfigError(f"sac.log_std_min {sac.log_std_min} must be below sac.log_std_max {sac.log_std_max}")


def _copy(cfg: Config) -> Config:
    return dataclasses.replace(cfg, sac=dataclasses.replace(cfg.sac, hidden_sizes=list(cfg.sac.hidden_sizes)))


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
