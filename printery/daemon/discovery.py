"""Which worker a name means (built-in, an entry point, or ``module:attribute``), and building it.

A name that cannot be found, or a factory that cannot build a worker (an
abstract class, a callable that takes other arguments, a factory that raises
TypeError, something that returns no worker), is a :class:`ConfigError` on
``WORKER_MODE``: one line and exit 2, not a traceback, since the fix is in the
name or in the worker's code, never in a restart.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from printery.errors import ConfigError
from printery.settings import WORKER_ALIASES
from printery.worker import Worker, WorkerDeps, WorkerFactory

__all__ = ["BUILTIN_FACTORIES", "ENTRY_POINT_GROUP", "build_worker", "load_factory"]

ENTRY_POINT_GROUP = "printery.workers"
BUILTIN_FACTORIES = {
    "validator": "printery.pipeline.validator:ValidatorWorker",
    "dependency-checker": "printery.pipeline.dependency_checker:DependencyCheckerWorker",
    "health-monitor": "printery.pipeline.health_monitor:HealthMonitorWorker",
    "notifier": "printery.pipeline.notifier:NotifierWorker",
}


def _resolve(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{path!r} is not module:attribute")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def load_factory(name: str, extra: Mapping[str, str] | None = None) -> WorkerFactory:
    """Find a worker factory by name: built-in, entry point, or ``module:attribute``."""
    name = WORKER_ALIASES.get(name, name)
    path = (extra or {}).get(name) or BUILTIN_FACTORIES.get(name)
    if path is None and ":" not in name:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            known = sorted(
                {*BUILTIN_FACTORIES, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))}
            )
            raise ConfigError(
                "WORKER_MODE",
                f"unknown worker {name!r} (known: {', '.join(known)}, or a module:attribute path)",
            )
        path = found[0].value
    try:
        factory = _resolve(path or name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError("WORKER_MODE", f"cannot load worker {name!r}: {exc}") from None
    if not callable(factory):
        raise ConfigError("WORKER_MODE", f"worker {name!r} ({path or name}) is not callable")
    return factory  # type: ignore[no-any-return]  # checked callable; the factory's type is the contract


def build_worker(name: str, deps: WorkerDeps, factory: WorkerFactory | None = None) -> Worker:
    """The worker ``name`` means (or ``factory`` makes), built with ``deps``; ConfigError if not."""
    if factory is None:
        factory = load_factory(name)
    shown = getattr(factory, "__qualname__", repr(factory))
    if inspect.isclass(factory) and inspect.isabstract(factory):
        missing = ", ".join(sorted(getattr(factory, "__abstractmethods__", ())))
        raise ConfigError(
            "WORKER_MODE", f"worker {name!r}: {shown} is abstract, it does not define {missing}"
        )
    try:
        worker = factory(deps)
    except TypeError as exc:
        raise ConfigError(
            "WORKER_MODE",
            f"worker {name!r}: {shown}(deps) failed: {exc} "
            "(a worker factory is called with one WorkerDeps argument)",
        ) from None
    if not isinstance(worker, Worker):
        raise ConfigError(
            "WORKER_MODE",
            f"worker {name!r}: {shown}(deps) returned a {type(worker).__name__}, not a worker "
            "(one with name, depends_on and serve)",
        )
    return worker
