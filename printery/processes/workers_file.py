"""The workers file (``WORKERS_FILE``): one :class:`WorkerDefinition` per ``[workers.<name>]``.

Read with the standard library's ``tomllib``. Every mistake is one
:class:`~printery.errors.ConfigError` naming the file, the worker and the key
(``WORKERS_FILE: /etc/printery/workers.toml: workers.thumbs.mode: must be
"pool" or "oneshot" (got 'fork')``), so the daemon exits 2 before it touches
Redis. Defaults, as the README lists them:

=====================  =======  ==============================================
key                    default  meaning
=====================  =======  ==============================================
command                (needed) argv, no shell; ``command[0]`` must be found
input                  (needed) stream key under ``STREAM_PREFIX``
outputs                ``[]``   the only streams a result may write to
group                  name     the consumer group on ``input``
depends_on             ``[]``   other workers, built-in or from this file
mode                   pool     ``pool`` or ``oneshot``
processes              1        children (pool) or concurrent processes (oneshot)
task_timeout_s         60       a message running longer is a hang: killed, retried
start_timeout_s        30       the longest a pool child may take to say ``ready``
heartbeat_timeout_s    30       an idle pool child silent this long is replaced
max_tasks_per_child    0        replace a child after this many messages (0: never)
max_rss_mb             0        replace a child above this RSS after a message (0: never)
prefetch               0        messages read ahead per child, waiting for it (0: the read
                                loop takes no more than there are idle children; a child
                                whose result is being committed counts as idle)
cwd                    file's   the child's working directory, relative to the file's
                       folder   folder; a relative ``command[0]`` is relative to it
env                    ``{}``   the child's environment, plus PATH, HOME, LANG, TZ
=====================  =======  ==============================================
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from printery.errors import ConfigError
from printery.settings import BUILTIN_WORKERS, WORKER_ALIASES

__all__ = ["SETTING", "WorkerDefinition", "load_workers_file"]

SETTING = "WORKERS_FILE"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_STREAM = re.compile(r"^[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)*$")
# Keys printery keeps beside the streams: a worker's output must never land on one.
_RESERVED_STREAM = re.compile(r"(^(registry|heartbeat|task|notified)(:|$))|(:(dead|log)$)")
_KEYS = frozenset(
    {
        "command",
        "input",
        "outputs",
        "group",
        "depends_on",
        "mode",
        "processes",
        "task_timeout_s",
        "start_timeout_s",
        "heartbeat_timeout_s",
        "max_tasks_per_child",
        "max_rss_mb",
        "prefetch",
        "cwd",
        "env",
    }
)


@dataclass(frozen=True, slots=True)
class WorkerDefinition:
    """One worker of the file, checked; streams still relative to ``STREAM_PREFIX``."""

    name: str
    command: tuple[str, ...]
    input: str
    outputs: tuple[str, ...] = ()
    group: str = ""
    depends_on: tuple[str, ...] = ()
    mode: Literal["pool", "oneshot"] = "pool"
    processes: int = 1
    task_timeout_s: float = 60.0
    start_timeout_s: float = 30.0
    heartbeat_timeout_s: float = 30.0
    max_tasks_per_child: int = 0
    max_rss_mb: float = 0.0
    prefetch: int = 0
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    def child_environment(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """``env`` plus PATH, HOME, LANG and TZ from the daemon: never anything else of it."""
        outer = os.environ if environ is None else environ
        passed = {k: outer[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in outer}
        return {**passed, **self.env}


class _Checker:
    """Reads one ``[workers.<name>]`` table; each problem names the file, worker and key."""

    def __init__(self, path: Path, name: str, table: Mapping[str, Any]) -> None:
        self.path = path
        self.name = name
        self.table = table

    def fail(self, key: str, reason: str) -> ConfigError:
        where = f"workers.{self.name}.{key}" if key else f"workers.{self.name}"
        return ConfigError(SETTING, f"{self.path}: {where}: {reason}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if value is None:
            raise self.fail(key, "is required")
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string (got {value!r})")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, f"must be a list of non-empty strings (got {value!r})")
        return tuple(value)

    def number(self, key: str, default: float, *, low: float, high: float, whole: bool) -> float:
        value = self.table.get(key, default)
        kind = "a whole number" if whole else "a number"
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (whole and not isinstance(value, int))
        ):
            raise self.fail(key, f"must be {kind} from {low:g} to {high:g} (got {value!r})")
        if not low <= value <= high:
            raise self.fail(key, f"must be {kind} from {low:g} to {high:g} (got {value!r})")
        return float(value)

    def stream(self, key: str, value: str, *, output: bool) -> str:
        if not _STREAM.match(value):
            raise self.fail(key, f"{value!r} is not a stream key (letters, digits, ._- and :)")
        if output and _RESERVED_STREAM.search(value):
            raise self.fail(key, f"{value!r} is one of printery's own keys, not a stream to write")
        return value

    def definition(self) -> WorkerDefinition:
        unknown = sorted(set(self.table) - _KEYS)
        if unknown:
            raise self.fail(unknown[0], f"unknown key (known: {', '.join(sorted(_KEYS))})")
        command = self.texts("command")
        if not command:
            raise self.fail("command", "is required: the argv to run, no shell")
        cwd = self._cwd()
        command = (self._executable(command[0], cwd), *command[1:])
        mode = self.table.get("mode", "pool")
        if mode not in ("pool", "oneshot"):
            raise self.fail("mode", f'must be "pool" or "oneshot" (got {mode!r})')
        env = self.table.get("env", {})
        if not isinstance(env, dict):
            raise self.fail("env", f"must be a table of names to strings (got {env!r})")
        for key, value in env.items():
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise self.fail(f"env.{key}", f"must be a string or a number (got {value!r})")
        depends = self.texts("depends_on")
        outputs = tuple(self.stream("outputs", o, output=True) for o in self.texts("outputs"))
        return WorkerDefinition(
            name=self.name,
            command=command,
            input=self.stream("input", self.text("input"), output=False),
            outputs=outputs,
            group=self.text("group", self.name),
            depends_on=tuple(WORKER_ALIASES.get(d, d) for d in depends),
            mode=mode,
            processes=int(self.number("processes", 1, low=1, high=256, whole=True)),
            task_timeout_s=self.number("task_timeout_s", 60, low=0.01, high=86400, whole=False),
            start_timeout_s=self.number("start_timeout_s", 30, low=0.01, high=3600, whole=False),
            heartbeat_timeout_s=self.number(
                "heartbeat_timeout_s", 30, low=0.1, high=86400, whole=False
            ),
            max_tasks_per_child=int(
                self.number("max_tasks_per_child", 0, low=0, high=10**9, whole=True)
            ),
            max_rss_mb=self.number("max_rss_mb", 0, low=0, high=10**7, whole=False),
            prefetch=int(self.number("prefetch", 0, low=0, high=10000, whole=True)),
            cwd=cwd,
            env={str(k): str(v) for k, v in env.items()},
            source=str(self.path),
        )

    def _cwd(self) -> str:
        if "cwd" not in self.table:
            return str(self.path.parent.resolve())
        found = (self.path.parent / self.text("cwd")).resolve()
        if not found.is_dir():
            raise self.fail("cwd", f"{str(found)!r} is not a directory")
        return str(found)

    def _executable(self, program: str, cwd: str) -> str:
        """``program``, made absolute if it is a relative path; a typo is exit 2, not a crash."""
        if os.sep in program:
            candidate = Path(cwd, program)  # an absolute program stays as it is
            if not (candidate.is_file() and os.access(candidate, os.X_OK)):
                raise self.fail("command", f"{program!r} is not an executable file")
            return str(candidate)
        if shutil.which(program) is None:
            raise self.fail("command", f"{program!r} is not on PATH")
        return program


def load_workers_file(path: str | os.PathLike[str]) -> dict[str, WorkerDefinition]:
    """Every worker of the file at ``path``, in file order; ConfigError on any mistake."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(SETTING, f"{file}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(SETTING, f"{file}: not valid TOML: {exc}") from None
    extra = sorted(set(document) - {"workers"})
    if extra:
        raise ConfigError(SETTING, f"{file}: {extra[0]}: unknown table (only [workers.<name>])")
    tables = document.get("workers")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(SETTING, f"{file}: workers: no [workers.<name>] table")
    found: dict[str, WorkerDefinition] = {}
    taken = {*BUILTIN_WORKERS, *WORKER_ALIASES, "all"}
    for name, table in tables.items():
        if not _NAME.match(name):
            raise ConfigError(
                SETTING, f"{file}: workers.{name}: a name is lowercase letters, digits and -"
            )
        if name in taken:
            raise ConfigError(SETTING, f"{file}: workers.{name}: the name of a built-in worker")
        if not isinstance(table, dict):
            raise ConfigError(SETTING, f"{file}: workers.{name}: must be a table")
        found[name] = _Checker(file, name, table).definition()
    for definition in found.values():
        for dep in definition.depends_on:
            if dep not in found and dep not in BUILTIN_WORKERS:
                raise _Checker(file, definition.name, {}).fail(
                    "depends_on", f"unknown worker {dep!r}"
                )
    return found
