"""The start order of workers: levels by ``depends_on``, each level started in parallel."""

from __future__ import annotations

from collections.abc import Sequence

from printery.errors import ConfigError
from printery.worker import Worker

__all__ = ["start_levels"]


def start_levels(workers: Sequence[Worker], known: set[str]) -> list[list[Worker]]:
    """Group workers into start levels by ``depends_on``; ConfigError on a cycle or unknown name.

    A dependency on a known worker that is not selected here (it runs in
    another process, say) only drops out of the ordering.
    """
    by_name = {w.name: w for w in workers}
    for worker in workers:
        for dep in worker.depends_on:
            if dep not in by_name and dep not in known:
                raise ConfigError(
                    "WORKER_MODE", f"worker {worker.name!r} depends on unknown worker {dep!r}"
                )
    levels: list[list[Worker]] = []
    placed: set[str] = set()
    remaining = list(workers)
    while remaining:
        level = [w for w in remaining if {d for d in w.depends_on if d in by_name} <= placed]
        if not level:
            cycle = ", ".join(sorted(w.name for w in remaining))
            raise ConfigError("WORKER_MODE", f"dependency cycle among workers: {cycle}")
        levels.append(level)
        placed.update(w.name for w in level)
        remaining = [w for w in remaining if w.name not in placed]
    return levels
