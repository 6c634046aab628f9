"""Typed run configuration: YAML presets plus ``key=value`` overrides with dotted keys.

Every value, from a file or the command line, goes through one path (``apply_overrides``), so
an unknown key, a wrong type or an out-of-range value is rejected the same way: a ConfigError
whose message is one line naming the key and what is valid (the CLI prints it and exits 2).
Step counts are environment steps, i.e. transitions summed over tasks (one vector step of
MT10 is 10 env steps).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mtrl.balancers.base import Balancer

import yaml

from envs.strategies import VectorStrategy

# The keys with a fixed set of values (and vector_strategy's, envs.strategies): each set is written
# once, and validate() names it.
Agent = Literal["mtsac", "stl_sac"]  # stl_sac: one stable-baselines3 SAC per task (the upper bound)
Device = Literal["auto", "cpu", "cuda"]
CompileSetting = Literal["auto", "true", "false"]  # mtrl/compile.py says what each does
Init = Literal["he_uniform", "torch_default"]  # agents.networks.init_network says what each does
INITS: tuple[Init, ...] = typing.get_args(Init)


class ConfigError(ValueError):
    """Bad configuration input; the message is one line meant for the user."""


def did_you_mean(word: str, valid) -> str:
    """``"did you mean 'x'? "`` for the closest valid spelling of a mistyped name, else ``""``."""
    close = difflib.get_close_matches(word, list(valid), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


@dataclass
class SACConfig:
    """Multi-task SAC's settings (agents/mtsac.py); here so that reading a config needs no torch."""

    hidden_sizes: list[int]
    gamma: float
    tau: float
    actor_lr: float
    critic_lr: float
    alpha_lr: float
    init_log_alpha: float
    log_std_min: float
    log_std_max: float
    multi_head: bool = False  # one output layer per task in the actor and both critics
    # The reference MT-SAC code (metaworld-algorithms, config/optim.py and rl/networks.py):
    max_grad_norm: float = 1.0  # global norm of what reaches Adam, per network; 0 disables
    adam_eps: float = 1e-5  # every optimizer of the agent (actor, critic, temperatures)
    init: Init = "he_uniform"


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
class BalancerChoice:
    """Which balancer serves each loss. ``balancer=NAME`` sets both. ``kwargs`` go to every
    instance whose method has that hyperparameter; ``critic_kwargs``/``actor_kwargs`` to one."""

    critic: str = "ew"
    actor: str = "ew"
    kwargs: dict[str, Any] = field(default_factory=dict)
    critic_kwargs: dict[str, Any] = field(default_factory=dict)
    actor_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The name used in run directories and summaries: ``cagrad``, or ``cagrad+nash_mtl``
        when the critic and the actor differ."""
        return self.critic if self.critic == self.actor else f"{self.critic}+{self.actor}"


@dataclass
class BalancerStage(BalancerChoice):
    """One phase of staged balancing: its balancers make the updates while the run's env-step
    count is below ``until``; the last stage has no ``until`` and runs to the end."""

    until: int | None = None


@dataclass
class BalancerConfig(BalancerChoice):
    """The run's balancers: the top-level choice, or ``stages`` (a balancer per phase of
    training), never both."""

    stages: list[BalancerStage] = field(default_factory=list)

    @property
    def label(self) -> str:
        """Staged: each stage's label, the later ones tagged with the env step they start at,
        joined by ``-``: ``loss_norm-stall_boost@200k-gradnorm@1M`` (no character a shell or a
        file system treats specially)."""
        if not self.stages:
            return super().label
        # validate() has checked that every stage but the last ends (until is set)
        starts = [f"@{_short_steps(typing.cast(int, prev.until))}" for prev in self.stages[:-1]]
        return "-".join([self.stages[0].label] + [s.label + at for s, at in zip(self.stages[1:], starts, strict=True)])


def _short_steps(n: int) -> str:
    for div, unit in ((1_000_000, "M"), (1000, "k")):
        if n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def balancer_stages(bcfg: BalancerConfig) -> list[BalancerStage]:
    """The stages of a run: ``bcfg.stages``, or one open-ended stage of the top-level choice."""
    if bcfg.stages:
        return bcfg.stages
    return [BalancerStage(**{f.name: getattr(bcfg, f.name) for f in dataclasses.fields(BalancerChoice)})]


@dataclass
class Config:
    taskset: str = "MT10"  # a name, MT1:<env>, a .yaml file, gym:<id>,..., module:attr (docs/tasksets.md)
    agent: Agent = "mtsac"
    seed: int = 1
    device: Device = "auto"
    compile: CompileSetting = "auto"  # torch.compile of the update
    total_env_steps: int = 20_000_000
    warmup_env_steps: int = 40_000  # random actions for the first 4000 vector steps of MT10
    updates_per_vector_step: int = 1
    batch_size: int = 1280  # split equally over tasks: 128 per task on MT10
    buffer_size: int = 1_000_000  # split equally over tasks
    eval_every: int = 200_000
    eval_episodes: int = 50  # per task
    eval_envs_per_task: int = 1  # copies of each task's eval env sharing its episodes (fast path only)
    checkpoint_every: int = 200_000
    keep_checkpoints: int = 2
    log_every: int = 10_000  # losses, temperatures, throughput
    vector_strategy: VectorStrategy = "auto"  # auto: Meta-World's fast path, gymnasium's sync
    # processes stepping the fast path's envs, this one included; 0: chosen (trainer.resolve_env_workers)
    env_workers: int = 0
    max_episode_steps: int = 500
    num_goals: int = 50  # goals per Meta-World task; 1 = one fixed goal (the legacy protocol)
    torch_threads: int = 0  # 0: torch's default
    grad_stats_every: int = 1000  # updates between gradient statistics (norms, cosines, weights)
    max_nonfinite_in_row: int = 100  # stop after this many consecutive non-finite updates
    balancer: BalancerConfig = field(default_factory=BalancerConfig)
    sac: SACConfig = field(default_factory=default_sac)


# ---------------------------------------------------------------------------------------------
def _fields(cls) -> dict[str, tuple[type, bool]]:
    """name -> (type, is_nested_dataclass) for a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], dataclasses.is_dataclass(hints[f.name])) for f in dataclasses.fields(cls)}


def valid_keys(cls=Config, prefix: str = "") -> list[str]:
    keys = []
    for name, (tp, nested) in _fields(cls).items():
        if nested:
            keys += valid_keys(tp, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}.<hparam>" if typing.get_origin(tp) is dict else f"{prefix}{name}")
    return keys


def _type_name(tp) -> str:
    return str(getattr(tp, "__name__", tp)) if typing.get_origin(tp) is None else str(tp).replace("typing.", "")


def _coerce(key: str, value, tp):
    """Convert a YAML or command-line value to the field type, or raise ConfigError."""

    if typing.get_origin(tp) is Literal:
        tp = str  # which strings are valid: validate() says, naming them

    def bad() -> ConfigError:
        return ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}")

    if typing.get_origin(tp) is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                pass  # stays a string: rejected below
        if item_tp is BalancerStage and not isinstance(value, list):
            raise ConfigError(
                f"config key {key!r} expects a list of stages such as "
                f"[{{until: 200000, balancer: loss_norm}}, {{balancer: gradnorm}}], got {value!r}"
            )
        if not isinstance(value, list):
            raise bad()
        if item_tp is BalancerStage:
            return [_stage(f"{key}[{i}]", v) for i, v in enumerate(value)]
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
        return str(value).lower() if isinstance(value, bool) else str(value)  # YAML's true -> "true" (compile)
    raise bad()


def _stage(key: str, value) -> BalancerStage:
    """One entry of ``balancer.stages``: a mapping of ``until`` and the keys of the top-level
    balancer config, with the same shorthand (``balancer: NAME`` sets the critic's and the actor's)."""
    fields = _fields(BalancerStage)
    if not isinstance(value, dict):
        raise ConfigError(
            f"config key {key!r} expects a mapping such as {{until: 200000, balancer: loss_norm}}, got {value!r}"
        )
    stage = BalancerStage()
    for name, v in value.items():
        sub = f"{key}.{name}"
        if name == "balancer":
            stage.critic = stage.actor = _coerce(sub, v, str)
        elif name not in fields:
            raise ConfigError(f"unknown config key {sub!r}; a stage has: balancer, {', '.join(fields)}")
        elif name == "until":
            stage.until = None if v is None else _coerce(sub, v, int)
        elif typing.get_origin(fields[name][0]) is dict:
            if not isinstance(v, dict):
                raise ConfigError(f"config key {sub!r} expects a mapping of hyperparameters, got {v!r}")
            setattr(stage, name, dict(v))
        else:
            setattr(stage, name, _coerce(sub, v, fields[name][0]))
    return stage


def apply_overrides(cfg: Config, overrides: Mapping[str, object]) -> Config:
    """Return a copy of ``cfg`` with dotted-key overrides applied and validated."""
    cfg = _copy(cfg)
    for key, value in overrides.items():
        if key == "balancer" and not isinstance(value, dict):  # the shorthand: one method for both losses
            cfg.balancer.critic = cfg.balancer.actor = _coerce(key, value, str)
            continue
        if key == "sac.max_grad_norm" and (value is None or str(value).lower() in ("none", "null")):
            value = 0.0  # "none" reads as "no clipping", the same as 0
        obj, parts = cfg, key.split(".")
        for i, part in enumerate(parts):
            fields = _fields(type(obj))
            if part not in fields:
                raise ConfigError(
                    f"unknown config key {key!r}; {did_you_mean(key, valid_keys())}valid: {', '.join(valid_keys())}"
                )
            tp, nested = fields[part]
            last = i == len(parts) - 1
            if typing.get_origin(tp) is dict and i == len(parts) - 2:  # balancer.kwargs.<hparam>
                getattr(obj, part)[parts[-1]] = yaml.safe_load(value) if isinstance(value, str) else value
                break
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


def flatten_config(d: dict, cls=Config, prefix: str = "") -> dict[str, object]:
    """A config mapping as dotted keys (``sac.gamma``), following the dataclasses: a hyperparameter
    mapping (``balancer.kwargs``) is flattened one level, so that a hyperparameter whose value is
    itself a mapping (``static``'s weights by task name) stays whole. Keys that are no field are
    flattened all the way (``apply_overrides`` then names them in its error)."""
    fields = _fields(cls) if cls is not None else {}
    out = {}
    for k, v in d.items():
        tp, nested = fields.get(k, (None, False))
        if isinstance(v, dict) and typing.get_origin(tp) is dict:  # balancer.kwargs.<hparam>: values whole
            out.update({f"{prefix}{k}.{h}": hv for h, hv in v.items()})
        elif isinstance(v, dict):  # an empty mapping sets nothing
            out.update(flatten_config(v, tp if nested else None, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_config(path: str | Path, overrides: Mapping[str, object] | None = None) -> Config:
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
    cfg = apply_overrides(Config(), flatten_config(data))
    cfg = apply_overrides(cfg, overrides or {})
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Semantic checks beyond types; raises ConfigError with one line."""
    from envs.tasksets import get_taskset

    try:
        taskset = get_taskset(cfg.taskset)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    task_names = list(taskset.tasks)
    num_tasks = len(task_names)
    positive = [
        "total_env_steps",
        "updates_per_vector_step",
        "batch_size",
        "buffer_size",
        "eval_every",
        "eval_episodes",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
        "max_episode_steps",
        "grad_stats_every",
        "max_nonfinite_in_row",
        "num_goals",
        "eval_envs_per_task",
    ]
    for key in positive:
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"config key {key!r} must be > 0, got {getattr(cfg, key)}")
    for key in ["warmup_env_steps", "torch_threads", "env_workers"]:
        if getattr(cfg, key) < 0:
            raise ConfigError(f"config key {key!r} must be >= 0, got {getattr(cfg, key)}")
    if cfg.batch_size % num_tasks:
        raise ConfigError(
            f"batch_size {cfg.batch_size} is not divisible by the {num_tasks} tasks of {cfg.taskset}; "
            f"use a multiple of {num_tasks}"
        )
    if cfg.buffer_size < num_tasks:
        raise ConfigError(f"buffer_size {cfg.buffer_size} is smaller than the {num_tasks} tasks of {cfg.taskset}")
    _check_choices(cfg)
    if cfg.eval_envs_per_task > 1 and (cfg.vector_strategy != "auto" or taskset.kind != "metaworld"):
        raise ConfigError(
            f"eval_envs_per_task {cfg.eval_envs_per_task} needs the fast path (vector_strategy auto on a "
            f"Meta-World task set); {cfg.taskset} with {cfg.vector_strategy} takes eval_envs_per_task 1"
        )
    if cfg.env_workers > 1 and (cfg.vector_strategy != "auto" or taskset.kind != "metaworld"):
        raise ConfigError(
            f"env_workers {cfg.env_workers} needs the fast path (vector_strategy auto on a Meta-World "
            f"task set); {cfg.taskset} with {cfg.vector_strategy} takes env_workers 0 or 1"
        )
    _validate_balancers(cfg.balancer, task_names)
    if cfg.agent == "stl_sac":
        _validate_stl(cfg)
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
    if sac.max_grad_norm < 0:
        raise ConfigError(
            f"config key 'sac.max_grad_norm' must be >= 0 (0 or none: no clipping), got {sac.max_grad_norm}"
        )
    if sac.adam_eps <= 0:
        raise ConfigError(f"config key 'sac.adam_eps' must be > 0, got {sac.adam_eps}")
    _check_choices(sac, "sac.")


def _check_choices(obj: Config | SACConfig, prefix: str = "") -> None:
    """Each key typed ``Literal[...]`` holds one of its values (the values YAML and the command line
    can give are any string: _coerce leaves the choice to this check, which names them)."""
    for name, (tp, _) in _fields(type(obj)).items():
        valid = typing.get_args(tp) if typing.get_origin(tp) is Literal else None
        if valid and getattr(obj, name) not in valid:
            raise ConfigError(f"config key {prefix + name!r} is {getattr(obj, name)!r}; valid: {', '.join(valid)}")


def _validate_balancers(b: BalancerConfig, task_names: list[str]) -> None:
    """Every stage's balancers can be built, and the stages partition training: increasing
    ``until``, only the last one open-ended."""
    if b.stages and b != BalancerConfig(stages=b.stages):
        raise ConfigError(
            "balancer.stages names every stage's balancers and hyperparameters; the top-level "
            "balancer, balancer.critic/actor and balancer.*kwargs cannot be set beside it: put them in a stage"
        )
    from mtrl.balancers import available_balancers

    valid = available_balancers()
    stages = balancer_stages(b)
    for i, stage in enumerate(stages):
        where = f"balancer.stages[{i}]" if b.stages else "balancer"
        for name in (stage.critic, stage.actor):
            if name not in valid:
                prefix = f"{where}: " if b.stages else ""
                raise ConfigError(
                    f"{prefix}unknown balancer {name!r}; {did_you_mean(name, valid)}valid: {', '.join(valid)}"
                )
        try:
            make_loss_balancers(stage, task_names, where)
        except ValueError as e:
            raise ConfigError(str(e) if str(e).startswith(where) else f"{where}: {e}") from None
        last = i == len(stages) - 1
        if stage.until is None and not last:
            raise ConfigError(
                f"{where} has no 'until' but balancer.stages[{i + 1}] follows it; only the last stage "
                f"runs to the end of training, every other one needs until: <env step where it ends>"
            )
        if stage.until is not None and last:
            raise ConfigError(
                f"{where} is the last stage and runs to the end of training; drop its until ({stage.until})"
            )
        if stage.until is not None and stage.until <= 0:
            raise ConfigError(f"{where}.until must be > 0 (an env step), got {stage.until}")
        previous = stages[i - 1].until if i else None  # set: stage i - 1 passed the check above
        if previous is not None and stage.until is not None and stage.until <= previous:
            raise ConfigError(
                f"{where}.until is {stage.until}, not after balancer.stages[{i - 1}].until "
                f"({stages[i - 1].until}); the stages must end in increasing order"
            )


def _validate_stl(cfg: Config) -> None:
    """stl_sac trains one independent SAC per task: there is nothing to balance or share."""
    b = cfg.balancer
    if b.critic != "ew" or b.actor != "ew" or b.kwargs or b.critic_kwargs or b.actor_kwargs or b.stages:
        raise ConfigError(
            f"agent 'stl_sac' trains one SAC per task and has no balancer; drop the balancer options (got {b.label!r})"
        )
    if not cfg.sac.actor_lr == cfg.sac.critic_lr == cfg.sac.alpha_lr:
        raise ConfigError(
            "agent 'stl_sac' (stable-baselines3) has one learning rate: set sac.actor_lr, "
            "sac.critic_lr and sac.alpha_lr equal"
        )
    if cfg.sac.multi_head:
        raise ConfigError("agent 'stl_sac' has one network per task; sac.multi_head applies to agent 'mtsac' only")
    import importlib.util

    if importlib.util.find_spec("stable_baselines3") is None:
        raise ConfigError("agent 'stl_sac' needs stable-baselines3: pip install 'mtrl[sb3]'")


def method_label(cfg: Config) -> str:
    """What a run is, for reports: the balancer label (``cagrad``), ``mh_sac+<label>`` for
    multi-head SAC, or ``stl_sac``."""
    if cfg.agent == "stl_sac":
        return "stl_sac"
    return f"mh_sac+{cfg.balancer.label}" if cfg.sac.multi_head else cfg.balancer.label


def _copy(cfg: Config) -> Config:
    b = cfg.balancer
    balancer = dataclasses.replace(
        b,
        kwargs=dict(b.kwargs),
        critic_kwargs=dict(b.critic_kwargs),
        actor_kwargs=dict(b.actor_kwargs),
        stages=copy.deepcopy(b.stages),
    )
    return dataclasses.replace(
        cfg, sac=dataclasses.replace(cfg.sac, hidden_sizes=list(cfg.sac.hidden_sizes)), balancer=balancer
    )


def _hparam(method: str, key: str, value, hparams: dict):
    """Type-check a balancer hyperparameter against its default's type."""
    if key not in hparams:
        raise ValueError(f"balancer {method!r} has no hyperparameter {key!r}; valid: {', '.join(sorted(hparams))}")
    default = hparams[key]
    if (
        default is None
        or isinstance(value, type(default))
        and not (isinstance(value, bool) and not isinstance(default, bool))
    ):
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"balancer {method!r} hyperparameter {key!r} expects {type(default).__name__}, got {value!r}")


def make_loss_balancers(
    bcfg: BalancerChoice, task_names: Sequence[str], where: str = "balancer"
) -> dict[str, Balancer]:
    """One balancer instance per loss ({"critic": ..., "actor": ...}), never shared, for the tasks
    ``task_names`` (in task order). Raises
    ValueError naming the valid choices for an unknown method or hyperparameter (``where``: the
    config key of ``bcfg``, for the message)."""
    from mtrl.balancers import balancer_hparams, make_balancer

    methods = {"critic": bcfg.critic, "actor": bcfg.actor}
    hparams = {loss: balancer_hparams(name) for loss, name in methods.items()}  # raises for unknown names
    for key in bcfg.kwargs:
        if not any(key in hp for hp in hparams.values()):
            valid = sorted(set(hparams["critic"]) | set(hparams["actor"]))
            names = " or ".join(sorted({repr(n) for n in methods.values()}))
            raise ValueError(f"{where}.kwargs.{key}: no hyperparameter of {names}; valid: {', '.join(valid)}")
    own = {"critic": bcfg.critic_kwargs, "actor": bcfg.actor_kwargs}
    out = {}
    for loss, name in methods.items():
        given = {**{k: v for k, v in bcfg.kwargs.items() if k in hparams[loss]}, **own[loss]}
        typed = {k: _hparam(name, k, v, hparams[loss]) for k, v in given.items()}
        out[loss] = make_balancer(name, num_tasks=len(task_names), task_names=list(task_names), **typed)
    return out


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: Path) -> None:
    """Written to a temporary file and renamed into place: a reader sees the old or the new config."""
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    os.replace(tmp, path)
