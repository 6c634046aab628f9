"""Task-set registry: a name -> the ordered list of tasks a run trains on.

    MT10, MT25, MT50             the Meta-World benchmarks (task order as Meta-World defines it)
    MT1:<env-name>               one Meta-World task, e.g. MT1:reach-v3
    path/to/tasks.yaml           a YAML file: ``name:``, ``tasks: [reach-v3, push-v3, ...]`` and
                                 optionally ``kind: gymnasium`` (the tasks are then gymnasium ids)
    gym:<id>,<id>,...            gymnasium env ids sharing one action space (a user's own robots);
                                 an id registered by a package is <package>:<id>, as in gym.make
    <entry-point name>           a task set installed under the ``mtrl.tasksets`` entry-point group
    my_pkg.tasks:my_set          a module attribute: a TaskSet, or a callable returning one

Task index t is sub-env t of the vector env, row t of every [K, ...] tensor and position t of
the one-hot task id. Every resolution error is a ``TaskSetError`` (a ValueError) whose message
is one line naming what is valid; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import yaml
from metaworld import env_dict as _mw

_BENCHMARKS = {
    "MT10": _mw.MT10_V3,
    "MT25": _mw.MT25_V3,
    "MT50": _mw.MT50_V3,
}
KINDS = ("metaworld", "gymnasium")
ENTRY_POINT_GROUP = "mtrl.tasksets"


class TaskSetError(ValueError):
    """A task set that cannot be resolved or built; the message is one line for the user."""


@dataclass(frozen=True)
class TaskSet:
    """``tasks`` are Meta-World v3 env names (kind "metaworld") or gymnasium env ids (kind
    "gymnasium"); they name the per-task TensorBoard tags, so they must be distinct."""

    name: str
    tasks: tuple[str, ...]
    kind: str = "metaworld"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise TaskSetError(f"task set {self.name!r} has kind {self.kind!r}; valid: {', '.join(KINDS)}")
        if not self.tasks or not all(isinstance(t, str) for t in self.tasks):
            raise TaskSetError(f"task set {self.name!r} needs a non-empty list of task names")
        if len(set(self.tasks)) != len(self.tasks):
            raise TaskSetError(f"task set {self.name!r} lists a task twice: {', '.join(self.tasks)}")
        if self.kind == "metaworld":
            unknown = [t for t in self.tasks if t not in _mw.ALL_V3_ENVIRONMENTS]
            if unknown:
                raise TaskSetError(
                    f"unknown Meta-World task {unknown[0]!r} in task set {self.name!r}; "
                    f"{_did_you_mean(unknown[0], _mw.ALL_V3_ENVIRONMENTS)}"
                    f"valid: {', '.join(sorted(_mw.ALL_V3_ENVIRONMENTS))}"
                )

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def synchronized_episodes(self) -> bool:
        """Whether every sub-env ends its training episodes at the same step. Meta-World
        episodes never terminate in training and are truncated at max_episode_steps, so they
        do; gymnasium envs may terminate early (a pendulum falls), so in general they do not."""
        return self.kind == "metaworld"


def gymnasium_taskset(name: str, env_ids: list[str] | tuple[str, ...]) -> TaskSet:
    """A task set of gymnasium env ids; they are built once here to check that they exist, that
    their observations have a flat vector form and that they share one action space (same shape
    and bounds), so a bad set fails before a run starts."""
    taskset = TaskSet(name, tuple(env_ids), kind="gymnasium")
    check_spaces(taskset)
    return taskset


def has_flat_form(space: gym.spaces.Space) -> bool:
    """Whether ``gymnasium.spaces.flatten`` maps the space's points to one fixed-length vector
    that means something to a network: Box (raveled), Discrete, MultiBinary and MultiDiscrete
    (one-hot or 0/1 entries), and Dict and Tuple of those, nested to any depth. Text, Sequence,
    Graph and OneOf have none (variable length, or characters as numbers)."""
    if isinstance(space, (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiBinary, gym.spaces.MultiDiscrete)):
        return True
    if isinstance(space, gym.spaces.Dict):
        return all(has_flat_form(s) for s in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return all(has_flat_form(s) for s in space.spaces)
    return False


def flat_observation_space(taskset: TaskSet, env_id: str, space: gym.spaces.Space) -> gym.spaces.Box:
    """The Box that ``gymnasium.spaces.flatten`` maps ``space``'s observations into, or one
    clear error when the space has no flat vector form (:func:`has_flat_form`)."""
    flat = gym.spaces.flatten_space(space) if has_flat_form(space) else None
    if not isinstance(flat, gym.spaces.Box):
        raise TaskSetError(
            f"task set {taskset.name!r}: {env_id!r} observes {_one_line(str(space))}, which has no "
            "flat vector form; mtrl takes Box, Discrete, MultiBinary, MultiDiscrete and Dict/Tuple of them"
        )
    return flat


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _make_env(taskset: TaskSet, env_id: str) -> gym.Env:
    try:
        return gym.make(env_id, disable_env_checker=True)
    except (gym.error.Error, ImportError) as e:
        hint = ""
        if ":" not in env_id and isinstance(e, gym.error.UnregisteredEnv):
            hint = (
                "; an id that a package registers needs the package imported first: "
                f"name it <package>:{env_id} (gym:<package>:{env_id}, or <package>:{env_id} in a YAML task list)"
            )
        raise TaskSetError(
            f"task set {taskset.name!r}: cannot make gymnasium env {env_id!r} ({_one_line(str(e))}){hint}"
        ) from None


def check_spaces(taskset: TaskSet) -> None:
    """Every env of a gymnasium task set builds, observes a space with a flat vector form
    (:func:`has_flat_form`) and acts in the one Box action space they all share."""
    spaces: dict[str, gym.spaces.Box] = {}
    for env_id in taskset.tasks:
        env = _make_env(taskset, env_id)
        space, observations = env.action_space, env.observation_space
        env.close()
        flat_observation_space(taskset, env_id, observations)
        if not isinstance(space, gym.spaces.Box):
            raise TaskSetError(
                f"task set {taskset.name!r}: {env_id!r} acts in {_one_line(str(space))}, a "
                f"{type(space).__name__} action space; SAC needs a continuous (Box) one"
            )
        spaces[env_id] = space
    first, *rest = taskset.tasks
    a = spaces[first]
    for other in rest:
        b = spaces[other]
        if a.shape != b.shape or not (np.array_equal(a.low, b.low) and np.array_equal(a.high, b.high)):
            raise TaskSetError(
                f"task set {taskset.name!r}: action spaces differ between {first!r} "
                f"(shape {a.shape}, low {a.low.tolist()}, high {a.high.tolist()}) and {other!r} "
                f"(shape {b.shape}, low {b.low.tolist()}, high {b.high.tolist()}); all tasks must share one"
            )


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_tasksets() -> list[str]:
    """One line per task set or form, for ``mtrl list tasksets``."""
    lines = [f"{name:<28} {len(tasks)} Meta-World tasks" for name, tasks in _BENCHMARKS.items()]
    lines += [
        f"{'MT1:<env-name>':<28} one Meta-World task, e.g. MT1:reach-v3",
        f"{'path/to/tasks.yaml':<28} a YAML list (name, tasks, optional kind: gymnasium); docs/tasksets.md",
        f"{'gym:<id>,<id>,...':<28} gymnasium env ids sharing one action space (<package>:<id> for a package's)",
        f"{'my_pkg.module:attribute':<28} a TaskSet (or a callable returning one) in your own module",
    ]
    lines += [f"{name:<28} entry point {ep.value}" for name, ep in sorted(_entry_points().items())]
    return lines


def _did_you_mean(word: str, valid) -> str:
    """As mtrl.config.did_you_mean; envs do not import mtrl."""
    close = difflib.get_close_matches(word, list(valid), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _valid() -> str:
    return ", ".join(
        [*_BENCHMARKS, "MT1:<env-name>", "a .yaml file", "gym:<id>,...", "module:attribute", *sorted(_entry_points())]
    )


def get_taskset(name: str) -> TaskSet:
    """Resolve a task-set name (see the module docstring for the forms, tried in that order)."""
    if name in _BENCHMARKS:
        return TaskSet(name, tuple(_BENCHMARKS[name]))
    if name.startswith("MT1:"):
        env_name = name[len("MT1:") :]
        if env_name not in _mw.ALL_V3_ENVIRONMENTS:
            raise TaskSetError(
                f"unknown Meta-World task {env_name!r} in {name!r}; "
                f"{_did_you_mean(env_name, _mw.ALL_V3_ENVIRONMENTS)}valid: {', '.join(sorted(_mw.ALL_V3_ENVIRONMENTS))}"
            )
        return TaskSet(name, (env_name,))
    if name.startswith("gym:"):
        return gymnasium_taskset(name, [i.strip() for i in name[len("gym:") :].split(",") if i.strip()])
    if name.endswith((".yaml", ".yml")):
        return _from_yaml(Path(name))
    entry_points = _entry_points()
    if name in entry_points:
        return _from_object(name, lambda: entry_points[name].load())
    if ":" in name:
        module, _, attr = name.partition(":")
        return _from_object(name, lambda: getattr(importlib.import_module(module), attr))
    raise TaskSetError(
        f"unknown taskset {name!r}; {_did_you_mean(name, [*_BENCHMARKS, *_entry_points()])}valid: {_valid()}"
    )


def _from_yaml(path: Path) -> TaskSet:
    if not path.is_file():
        raise TaskSetError(f"task-set file {str(path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise TaskSetError(f"task-set file {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list) or set(data) - {"name", "tasks", "kind"}:
        raise TaskSetError(f"task-set file {str(path)!r} must hold 'tasks: [...]' and optionally 'name:' and 'kind:'")
    name, kind = str(data.get("name", path.stem)), data.get("kind", "metaworld")
    if kind == "gymnasium":
        return gymnasium_taskset(name, data["tasks"])
    return TaskSet(name, tuple(data["tasks"]), kind=kind)


def _from_object(name: str, load) -> TaskSet:
    """A module attribute or entry point: a TaskSet, or a callable returning one."""
    try:
        obj = load()
    except (ImportError, AttributeError) as e:
        raise TaskSetError(f"cannot load taskset {name!r} ({type(e).__name__}: {e}); valid: {_valid()}") from None
    if callable(obj) and not isinstance(obj, TaskSet):
        try:
            obj = obj()
        except Exception as e:  # noqa: BLE001  (the user's code: its failure is bad input, one line)
            raise TaskSetError(f"taskset {name!r}: calling it raised {type(e).__name__}: {e}") from None
    if not isinstance(obj, TaskSet):
        raise TaskSetError(f"taskset {name!r} is a {type(obj).__name__}, not an envs.tasksets.TaskSet")
    if obj.kind == "gymnasium":
        check_spaces(obj)
    return obj
