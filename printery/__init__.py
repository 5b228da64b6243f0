"""printery: a supervisor daemon for Redis Streams workers, and a deployment pipeline on it.

The names here are the worker author's API::

    from printery import StreamWorker, Write, RetryLater, Permanent

They are loaded on first use, not at ``import printery``: the daemon's
launcher imports this package before it may take the heavy imports (it must
hear SIGTERM first), and a worker of one's own pays only for what it uses.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from printery.errors import Permanent, PrinteryError, RetryLater
    from printery.message import Message
    from printery.redis.writes import Write
    from printery.worker import StreamWorker, Worker, WorkerContext, WorkerDeps

try:
    __version__ = version("printery")
except PackageNotFoundError:  # a checkout run through cmd/ without an install
    __version__ = "0.0.0+checkout"

__all__ = [
    "Message",
    "Permanent",
    "PrinteryError",
    "RetryLater",
    "StreamWorker",
    "Worker",
    "WorkerContext",
    "WorkerDeps",
    "Write",
    "__version__",
]

_WHERE = {
    "Message": "printery.message",
    "Permanent": "printery.errors",
    "PrinteryError": "printery.errors",
    "RetryLater": "printery.errors",
    "StreamWorker": "printery.worker",
    "Worker": "printery.worker",
    "WorkerContext": "printery.worker",
    "WorkerDeps": "printery.worker",
    "Write": "printery.redis.writes",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'printery' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
