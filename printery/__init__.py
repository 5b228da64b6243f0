"""printery: a supervisor daemon for Redis Streams workers, and a deployment pipeline on it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("printery")
except PackageNotFoundError:  # a checkout run through cmd/ without an install
    __version__ = "0.0.0+checkout"

__all__ = ["__version__"]
