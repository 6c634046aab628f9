"""Task-set registry: a name -> the ordered list of Meta-World v3 tasks it trains on.

    MT10, MT25, MT50        the Meta-World benchmarks (task order as Meta-World defines it)
    MT1:<env-name>          one task, e.g. MT1:reach-v3

Task index t is sub-env t of the vector env, row t of every [K, ...] tensor and position t of
the one-hot task id.
"""

from __future__ import annotations

from dataclasses import dataclass

from metaworld import env_dict as _mw

_BENCHMARKS = {
    "MT10": _mw.MT10_V3,
    "MT25": _mw.MT25_V3,
    "MT50": _mw.MT50_V3,
}


@dataclass(frozen=True)
class TaskSet:
    name: str
    tasks: tuple[str, ...]

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)


def available_tasksets() -> list[str]:
    return [*_BENCHMARKS, "MT1:<env-name>"]


def get_taskset(name: str) -> TaskSet:
    """Resolve a task-set name; an unknown one raises ValueError listing the valid choices."""
    if name in _BENCHMARKS:
        return TaskSet(name, tuple(_BENCHMARKS[name]))
    if name.startswith("MT1:"):
        env_name = name[len("MT1:") :]
        if env_name not in _mw.ALL_V3_ENVIRONMENTS:
            raise ValueError(
                f"unknown Meta-World task {env_name!r} in {name!r}; "
                f"valid: {', '.join(sorted(_mw.ALL_V3_ENVIRONMENTS))}"
            )
        return TaskSet(name, (env_name,))
    raise ValueError(f"unknown taskset {name!r}; valid: {', '.join(available_tasksets())}")
