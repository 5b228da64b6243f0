"""Settings: every flag and environment variable of the README table, validated once.

pydantic-settings reads the environment; flags arrive as init arguments, which
it ranks above the environment, so "flags override the environment" needs no
code of ours. A validation failure becomes one :class:`ConfigError` naming the
variable, so the daemon prints one line and exits 2.

Defaults (and why):

- ``BLOCK_MS`` 1000 < ``REDIS_SOCKET_TIMEOUT`` 5 s: a blocking read must return
  before the socket gives up, else every idle read would look like an outage.
- ``REDIS_SOCKET_TIMEOUT`` 5 s and no client-side retries: a stalled Redis is
  noticed in one timeout, not redis-py's default of ten retries (~60 s).
- ``CLAIM_IDLE_MS`` 60000: a message is claimed from a dead consumer after a
  minute; live handlers refresh their messages every third of that.
- ``CONSUMER_IDLE_TIMEOUT`` 3600 s: consumers with nothing pending and no live
  heartbeat are removed from their groups after an hour.
- ``REDIS_MODE`` standalone, ``PARTITIONS`` 12 (README "Redis Cluster"): on a Redis Cluster
  each stage's stream is split in 12, four per primary of a three-primary
  cluster; 12 divides evenly over 1, 2, 3, 4 and 6 primaries.
- ``STREAM_RETENTION`` 86400 s, ``DEAD_LETTER_RETENTION`` 30 days,
  ``STREAM_TRIM_INTERVAL`` 60 s: a day of acknowledged history is
  enough to replay or debug, a month of dead letters enough to notice them; a
  pass a minute removes a minute's entries, a few milliseconds of Redis time.

Past 400 lines on purpose: every setting, its default and its check in one
place, as the README's settings table lists them.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
import socket
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from printery.errors import ConfigError

__all__ = [
    "BUILTIN_WORKERS",
    "SECRET_FIELDS",
    "WORKER_ALIASES",
    "Settings",
    "environment_only_help",
    "load_settings",
]

BUILTIN_WORKERS = ("validator", "dependency-checker", "health-monitor", "notifier")
WORKER_ALIASES = {"dependency": "dependency-checker", "health": "health-monitor"}
SECRET_FIELDS = frozenset({"notify_webhook_secret"})

_PER_WORKER = re.compile(r"^(?P<worker>[A-Z0-9_]+?)_(?P<what>HANG_TIMEOUT|CONCURRENCY)$")
_TEN_YEARS_S = 3650 * 86400
_LOG_LEVELS = {
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
}


def redact_url(url: str) -> str:
    """The URL with every password replaced (userinfo and ``?password=``), safe to print."""
    parts = urlsplit(url)
    if parts.password is not None:
        userinfo, _, host = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        parts = parts._replace(netloc=f"{user}:***@{host}")
    if parts.query:
        query = [
            (k, "***" if k.lower() == "password" else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


def _default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """The effective configuration of one process."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, validate_default=True
    )

    redis_url: str = Field("redis://localhost:6379/0", repr=False)
    redis_mode: Literal["standalone", "cluster"] = "standalone"
    partitions: int = Field(12, ge=1, le=256)
    worker_mode: str = "all"
    supervised_mode: bool = False
    max_restart_attempts: int = Field(3, ge=0, le=1000)
    restart_backoff_ms: int = Field(1000, ge=0, le=3_600_000)
    restart_backoff_max_ms: int = Field(30000, ge=0, le=3_600_000)
    health_check_interval: float = Field(30.0, gt=0, le=3600)
    shutdown_timeout: float = Field(30.0, gt=0, le=3600)
    restart_window: float = Field(300.0, gt=0, le=86400)
    hang_timeout: float = Field(60.0, gt=0, le=86400)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    environment: Literal["development", "staging", "production"] = "development"
    # auto: console on a terminal, JSON otherwise, and JSON in production whatever the
    # terminal (a `docker run -t` in production still feeds a log pipeline).
    log_format: Literal["json", "console", "auto"] = "auto"
    http_host: str = "0.0.0.0"  # noqa: S104 - probes reach a container on every interface
    http_port: int = Field(8080, ge=0, le=65535)
    stream_prefix: str = Field(
        "printery", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$"
    )
    consumer_name: str = Field(default_factory=_default_consumer_name, min_length=1, max_length=200)
    claim_idle_ms: int = Field(60000, ge=100, le=86_400_000)
    claim_interval_ms: int | None = Field(None, ge=50, le=3_600_000)
    max_deliveries: int = Field(5, ge=1, le=1000)
    retry_backoff_ms: int = Field(1000, ge=0, le=3_600_000)
    retry_backoff_max_ms: int = Field(30000, ge=0, le=3_600_000)
    batch_size: int = Field(100, ge=1, le=10000)
    block_ms: int = Field(1000, ge=1, le=60000)
    redis_socket_timeout: float = Field(5.0, gt=0, le=300)
    redis_connect_timeout: float = Field(5.0, gt=0, le=300)
    consumer_idle_timeout: float = Field(3600.0, gt=0, le=30 * 86400)
    heartbeat_interval: float = Field(5.0, gt=0, le=300)
    allowed_environments: str = "development,staging,production"
    max_message_bytes: int = Field(1_048_576, ge=1024, le=512 * 1_048_576)
    dependency_wait_timeout: float = Field(60.0, ge=0, le=86400)
    health_check_allowed_hosts: str = "*"
    notify_webhook_urls: str = ""
    notify_webhook_secret: str = Field("", repr=False)
    # Pipeline workers (README "Pipeline settings"); names are their env vars.
    dependency_checker_max_waits: int = Field(1000, ge=1, le=100_000)
    health_monitor_max_watches: int = Field(1000, ge=1, le=100_000)
    notify_webhook_timeout: float = Field(5.0, gt=0, le=300)
    notify_webhook_attempts: int = Field(4, ge=1, le=100)
    notify_webhook_backoff_ms: int = Field(500, ge=0, le=600_000)
    notify_webhook_backoff_max_ms: int = Field(5000, ge=0, le=3_600_000)
    notify_marker_ttl: int = Field(7 * 86400, ge=60, le=365 * 86400)
    timeline_ttl: int = Field(7 * 86400, ge=60, le=365 * 86400)
    # Workers in their own processes: read by printery.processes.workers_file.
    workers_file: str | None = None
    # Retention: seconds, or None for ``none`` (keep every entry).
    stream_retention: float | None = Field(86400.0, gt=0, le=_TEN_YEARS_S)
    stream_trim_interval: float = Field(60.0, gt=0, le=86400)
    dead_letter_retention: float | None = Field(30 * 86400.0, gt=0, le=_TEN_YEARS_S)
    per_worker: dict[str, dict[str, str]] = Field(default_factory=dict, exclude=True)

    @field_validator("redis_mode", mode="before")
    @classmethod
    def _normalise_mode(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _normalise_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _LOG_LEVELS.get(value.strip().lower(), value)
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _normalise_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("stream_retention", "dead_letter_retention", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
            return None
        # Left for pydantic to parse and bound, so its message quotes the raw value.
        try:
            finite = math.isfinite(float(value))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise ValueError("must be a number of seconds above 0, or none")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must start with redis://, rediss:// or unix://")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("names no host")
        if parts.scheme == "unix" and not parts.path:
            raise ValueError("names no socket path")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError("has an invalid port") from None
        return value

    @field_validator("worker_mode")
    @classmethod
    def _check_worker_mode(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        if not names:
            raise ValueError("names no worker")
        return ",".join(names)

    @field_validator("notify_webhook_urls")
    @classmethod
    def _check_webhooks(cls, value: str) -> str:
        for url in _split(value):
            parts = urlsplit(url)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ValueError("each URL must be http:// or https:// with a host")
        return value

    @field_validator("notify_webhook_secret")
    @classmethod
    def _check_secret(cls, value: str) -> str:
        # The Standard Webhooks form: base64 after the prefix (printery.pipeline.signatures).
        if value.startswith("whsec_"):
            try:
                key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("starts with whsec_ but the rest is not base64") from None
            if not key:
                raise ValueError("starts with whsec_ but holds no key after it")
        return value

    @field_validator("allowed_environments", "health_check_allowed_hosts")
    @classmethod
    def _check_nonempty_list(cls, value: str) -> str:
        if not _split(value):
            raise ValueError("must name at least one entry")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        # ConfigError is not a ValueError, so pydantic lets it through unwrapped.
        if self.block_ms / 1000 + 1 > self.redis_socket_timeout:
            raise ConfigError(
                "BLOCK_MS",
                f"must be at least 1 s shorter than REDIS_SOCKET_TIMEOUT "
                f"({self.block_ms} ms vs {self.redis_socket_timeout:g} s), "
                "or every idle read would time out",
            )
        if self.restart_backoff_max_ms < self.restart_backoff_ms:
            raise ConfigError(
                "RESTART_BACKOFF_MAX_MS",
                f"must not be below RESTART_BACKOFF_MS ({self.restart_backoff_max_ms} < "
                f"{self.restart_backoff_ms})",
            )
        if self.claim_idle_ms < 3 * self.block_ms:
            raise ConfigError(
                "CLAIM_IDLE_MS",
                f"must be at least three times BLOCK_MS ({self.claim_idle_ms} < "
                f"3 × {self.block_ms}), or live consumers would lose messages they are reading",
            )
        return self

    @model_validator(mode="after")
    def _check_cluster(self) -> Settings:
        if self.redis_mode != "cluster":
            return self
        parts = urlsplit(self.redis_url)
        if parts.scheme == "unix":
            raise ConfigError(
                "REDIS_URL",
                "must be redis:// or rediss:// with REDIS_MODE=cluster: "
                "a cluster's nodes are reached over TCP",
            )
        db = dict(parse_qsl(parts.query)).get("db") or parts.path.strip("/") or "0"
        if db != "0":
            raise ConfigError(
                "REDIS_URL",
                f"names database {db}, but with REDIS_MODE=cluster only database 0 exists",
            )
        return self

    @model_validator(mode="after")
    def _check_pipeline(self) -> Settings:
        if self.notify_webhook_backoff_max_ms < self.notify_webhook_backoff_ms:
            raise ConfigError(
                "NOTIFY_WEBHOOK_BACKOFF_MAX_MS",
                f"must not be below NOTIFY_WEBHOOK_BACKOFF_MS "
                f"({self.notify_webhook_backoff_max_ms} < {self.notify_webhook_backoff_ms})",
            )
        return self

    # Derived views ---------------------------------------------------------

    @property
    def cluster(self) -> bool:
        """Whether Redis is a Redis Cluster (``REDIS_MODE=cluster``)."""
        return self.redis_mode == "cluster"

    @property
    def redis_url_redacted(self) -> str:
        return redact_url(self.redis_url)

    @property
    def workers(self) -> list[str]:
        """Selected worker names, short names resolved; ``all`` expanded."""
        return self.selected_workers()

    def selected_workers(self, declared: Sequence[str] = ()) -> list[str]:
        """Selected worker names; ``all`` is the built-in four plus ``declared`` (the file's)."""
        names: list[str] = []
        for raw in self.worker_mode.split(","):
            name = WORKER_ALIASES.get(raw, raw)
            expanded = [*BUILTIN_WORKERS, *declared] if name == "all" else [name]
            names.extend(n for n in expanded if n not in names)
        return names

    @property
    def allowed_environment_list(self) -> list[str]:
        return _split(self.allowed_environments)

    @property
    def allowed_host_globs(self) -> list[str]:
        return _split(self.health_check_allowed_hosts)

    @property
    def webhook_urls(self) -> list[str]:
        return _split(self.notify_webhook_urls)

    @property
    def claim_interval_s(self) -> float:
        """How often XAUTOCLAIM runs: a quarter of the claim idle time unless set."""
        if self.claim_interval_ms is not None:
            return self.claim_interval_ms / 1000
        return self.claim_idle_ms / 4000

    def hang_timeout_for(self, worker: str) -> float:
        """``<WORKER>_HANG_TIMEOUT``, else ``HANG_TIMEOUT``; checked when the worker is built."""
        raw = self.per_worker.get(worker, {}).get("HANG_TIMEOUT")
        if raw is None:
            return self.hang_timeout
        allowed = "a number of seconds above 0 and at most 86400, like HANG_TIMEOUT"
        value = _number(_env_name(worker, "HANG_TIMEOUT"), raw, allowed)
        if not 0 < value <= 86400:
            raise ConfigError(_env_name(worker, "HANG_TIMEOUT"), f"must be {allowed} (got {raw!r})")
        return value

    def concurrency_for(self, worker: str, default: int) -> int:
        """``<WORKER>_CONCURRENCY``, else the worker's own default."""
        raw = self.per_worker.get(worker, {}).get("CONCURRENCY")
        if raw is None:
            return default
        name = _env_name(worker, "CONCURRENCY")
        value = _number(name, raw, "a whole number from 1 to 10000")
        if value != int(value) or not 1 <= value <= 10000:
            raise ConfigError(name, f"must be a whole number from 1 to 10000 (got {raw!r})")
        return int(value)

    def __repr_args__(self) -> Any:
        yield from super().__repr_args__()
        yield "redis_url", self.redis_url_redacted


def environment_only_help(flagged: set[str]) -> str:
    """A ``--help`` paragraph naming the settings a command has no flag for."""
    names = sorted(n.upper() for n in Settings.model_fields if n not in {*flagged, "per_worker"})
    return textwrap.fill(
        "settings without a flag, read from the environment only: "
        + ", ".join(names)
        + ", and <WORKER>_CONCURRENCY, <WORKER>_HANG_TIMEOUT. "
        "`printery config` shows each one's value and where it came from.",
        width=78,
        break_on_hyphens=False,
    )


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _env_name(worker: str, what: str) -> str:
    return f"{worker.upper().replace('-', '_')}_{what}"


def _number(name: str, raw: str, allowed: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be {allowed} (got {raw!r})") from None
    if not math.isfinite(value):  # nan would silently turn a check off
        raise ConfigError(name, f"must be {allowed} (got {raw!r})")
    return value


def _per_worker_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Raw ``<WORKER>_HANG_TIMEOUT`` / ``<WORKER>_CONCURRENCY`` values by worker name.

    Kept raw: only the selected workers' values are checked, so an unrelated
    ``WEB_CONCURRENCY=auto`` in a container's environment is no error.
    """
    found: dict[str, dict[str, str]] = {}
    for key, raw in environ.items():
        match = _PER_WORKER.match(key.upper())
        if match is not None:
            worker = match["worker"].lower().replace("_", "-")
            found.setdefault(worker, {})[match["what"]] = raw
    return found


def load_settings(
    flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings from flags (field name → value) over the environment.

    Raises :class:`ConfigError` naming the first bad setting.
    """
    env = os.environ if environ is None else environ
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    given["per_worker"] = _per_worker_overrides(env)
    try:
        if environ is None:
            return Settings(**given)
        # An explicit mapping (tests, ``printery config --env-file``) replaces os.environ.
        lowered = {k.lower(): v for k, v in env.items()}
        known = {k: v for k, v in lowered.items() if k in Settings.model_fields}
        return Settings.model_validate({**known, **given})
    except ValidationError as exc:
        raise _config_error(exc) from None


def _config_error(exc: ValidationError) -> ConfigError:
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"] if str(part) != "per_worker"]
    name = loc[0].upper() if loc else "configuration"
    message = str(error["msg"]).removeprefix("Value error, ")
    if loc and loc[0] not in SECRET_FIELDS | {"redis_url"} and "input" in error:
        message = f"{message} (got {error['input']!r})"
    if not loc:
        return ConfigError("configuration", message)
    return ConfigError(name, message)
