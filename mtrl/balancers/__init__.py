"""Gradient balancers: one file per method, registered here by name.

from mtrl.balancers import make_balancer, available_balancers
b = make_balancer("cagrad", num_tasks=10, c=0.9)
out = b.balance(grads, losses)   # grads [K, P], losses [K] -> out.direction [P], out.weights [K]
"""

from __future__ import annotations

import inspect

from mtrl.balancers.base import Balancer, BalanceResult

_REGISTRY: dict[str, type[Balancer]] = {}


def register(cls: type[Balancer]) -> type[Balancer]:
    """Class decorator: makes ``cls`` available under ``cls.name``."""
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"balancer name {cls.name!r} is empty or already registered")
    _REGISTRY[cls.name] = cls
    return cls


def available_balancers() -> list[str]:
    return sorted(_REGISTRY)


def balancer_hparams(name: str) -> dict:
    """Hyperparameter name -> default of a method (including the base ``log_losses``)."""
    cls = _get(name)
    params = {}
    for klass in reversed(cls.__mro__):
        if klass is object or "__init__" not in vars(klass):
            continue
        for p in inspect.signature(vars(klass)["__init__"]).parameters.values():
            if p.name not in ("self", "num_tasks", "task_names") and p.kind in (
                p.POSITIONAL_OR_KEYWORD,
                p.KEYWORD_ONLY,
            ):
                params[p.name] = p.default
    return params


def make_balancer(name: str, num_tasks: int, task_names: list[str] | None = None, **hparams) -> Balancer:
    """Build a balancer; an unknown name or hyperparameter raises ValueError naming the valid ones.
    ``task_names`` (in task order) are needed by hyperparameters given per task by name."""
    cls = _get(name)
    valid = balancer_hparams(name)
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {', '.join(unknown)} for balancer {name!r}; "
            f"valid: {', '.join(sorted(valid)) or '(none)'}"
        )
    return cls(num_tasks=num_tasks, task_names=task_names, **hparams)


def _get(name: str) -> type[Balancer]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown balancer {name!r}; valid: {', '.join(available_balancers())}")
    return _REGISTRY[name]


def _import_methods() -> None:
    """Import every method module of this package, which registers it: adding a method is
    adding a file."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if module.name != "base" and not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_methods()

__all__ = ["BalanceResult", "Balancer", "available_balancers", "balancer_hparams", "make_balancer", "register"]
