"""Settings: every documented env var parsed, bad values named, flags over env, secrets hidden."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from printery.daemon.discovery import load_factory
from printery.errors import ConfigError
from printery.settings import BUILTIN_WORKERS, Settings, load_settings

pytestmark = pytest.mark.timeout(10)

CANARY = "s3cr3t-canary"

# (env var, raw value, Settings attribute, parsed value)
GOOD: list[tuple[str, str, str, Any]] = [
    ("REDIS_URL", "redis://cache:6380/2", "redis_url", "redis://cache:6380/2"),
    ("REDIS_URL", "rediss://u:p@cache.example:6380/0", "redis_url", "rediss://u:p@cache.example:6380/0"),
    ("REDIS_URL", "unix:///run/redis.sock", "redis_url", "unix:///run/redis.sock"),
    ("WORKER_MODE", "validator", "worker_mode", "validator"),
    ("WORKER_MODE", " validator , notifier ", "worker_mode", "validator,notifier"),
    ("SUPERVISED_MODE", "1", "supervised_mode", True),
    ("SUPERVISED_MODE", "0", "supervised_mode", False),
    ("SUPERVISED_MODE", "true", "supervised_mode", True),
    ("SUPERVISED_MODE", "false", "supervised_mode", False),
    ("SUPERVISED_MODE", "yes", "supervised_mode", True),
    ("SUPERVISED_MODE", "no", "supervised_mode", False),
    ("SUPERVISED_MODE", "TRUE", "supervised_mode", True),
    ("SUPERVISED_MODE", "No", "supervised_mode", False),
    ("MAX_RESTART_ATTEMPTS", "0", "max_restart_attempts", 0),
    ("MAX_RESTART_ATTEMPTS", "10", "max_restart_attempts", 10),
    ("RESTART_BACKOFF_MS", "250", "restart_backoff_ms", 250),
    ("RESTART_BACKOFF_MAX_MS", "60000", "restart_backoff_max_ms", 60000),
    ("HEALTH_CHECK_INTERVAL", "2.5", "health_check_interval", 2.5),
    ("SHUTDOWN_TIMEOUT", "10", "shutdown_timeout", 10.0),
    ("RESTART_WINDOW", "60", "restart_window", 60.0),
    ("HANG_TIMEOUT", "90", "hang_timeout", 90.0),
    ("LOG_FORMAT", "JSON", "log_format", "json"),
    ("LOG_FORMAT", "console", "log_format", "console"),
    ("LOG_FORMAT", "auto", "log_format", "auto"),
    ("LOG_LEVEL", "debug", "log_level", "debug"),
    ("LOG_LEVEL", "info", "log_level", "info"),
    ("LOG_LEVEL", "warn", "log_level", "warning"),
    ("LOG_LEVEL", "WARN", "log_level", "warning"),
    ("LOG_LEVEL", "warning", "log_level", "warning"),
    ("LOG_LEVEL", "error", "log_level", "error"),
    ("ENVIRONMENT", "development", "environment", "development"),
    ("ENVIRONMENT", "staging", "environment", "staging"),
    ("ENVIRONMENT", "production", "environment", "production"),
    ("HTTP_HOST", "127.0.0.1", "http_host", "127.0.0.1"),
    ("HTTP_PORT", "9090", "http_port", 9090),
    ("HTTP_PORT", "0", "http_port", 0),
    ("STREAM_PREFIX", "my-app.v2_x", "stream_prefix", "my-app.v2_x"),
    ("CONSUMER_NAME", "pod-7", "consumer_name", "pod-7"),
    ("CLAIM_IDLE_MS", "120000", "claim_idle_ms", 120000),
    ("CLAIM_INTERVAL_MS", "5000", "claim_interval_ms", 5000),
    ("MAX_DELIVERIES", "1", "max_deliveries", 1),
    ("RETRY_BACKOFF_MS", "0", "retry_backoff_ms", 0),
    ("RETRY_BACKOFF_MAX_MS", "5000", "retry_backoff_max_ms", 5000),
    ("BATCH_SIZE", "10", "batch_size", 10),
    ("BLOCK_MS", "500", "block_ms", 500),
    ("REDIS_SOCKET_TIMEOUT", "10", "redis_socket_timeout", 10.0),
    ("REDIS_CONNECT_TIMEOUT", "1.5", "redis_connect_timeout", 1.5),
    ("CONSUMER_IDLE_TIMEOUT", "600", "consumer_idle_timeout", 600.0),
    ("HEARTBEAT_INTERVAL", "2", "heartbeat_interval", 2.0),
    ("ALLOWED_ENVIRONMENTS", "staging,production", "allowed_environment_list",
        ["staging", "production"]),
    ("MAX_MESSAGE_BYTES", "2048", "max_message_bytes", 2048),
    ("DEPENDENCY_WAIT_TIMEOUT", "0", "dependency_wait_timeout", 0.0),
    ("HEALTH_CHECK_ALLOWED_HOSTS", "*.svc, api.example.com", "allowed_host_globs",
        ["*.svc", "api.example.com"]),
    ("NOTIFY_WEBHOOK_URLS", "https://a.example/h,http://b:8080/x", "webhook_urls",
        ["https://a.example/h", "http://b:8080/x"]),
    ("NOTIFY_WEBHOOK_URLS", "", "webhook_urls", []),
    ("NOTIFY_WEBHOOK_SECRET", "k3y", "notify_webhook_secret", "k3y"),
]  # fmt: skip

# (env var, bad raw value, a fragment of the message that says what is allowed)
BAD: list[tuple[str, str, str]] = [
    ("REDIS_URL", "http://cache:6379", "must start with redis://, rediss:// or unix://"),
    ("REDIS_URL", "redis://", "names no host"),
    ("REDIS_URL", "unix://", "names no socket path"),
    ("REDIS_URL", "redis://cache:port/0", "has an invalid port"),
    ("WORKER_MODE", " , ", "names no worker"),
    ("SUPERVISED_MODE", "maybe", "valid boolean"),
    ("SUPERVISED_MODE", "2", "valid boolean"),
    ("MAX_RESTART_ATTEMPTS", "-1", "greater than or equal to 0"),
    ("MAX_RESTART_ATTEMPTS", "1.5", "valid integer"),
    ("MAX_RESTART_ATTEMPTS", "1001", "less than or equal to 1000"),
    ("RESTART_BACKOFF_MS", "-5", "greater than or equal to 0"),
    ("RESTART_BACKOFF_MAX_MS", "soon", "valid integer"),
    ("HEALTH_CHECK_INTERVAL", "0", "greater than 0"),
    ("SHUTDOWN_TIMEOUT", "x", "valid number"),
    ("SHUTDOWN_TIMEOUT", "-1", "greater than 0"),
    ("RESTART_WINDOW", "0", "greater than 0"),
    ("HANG_TIMEOUT", "0", "greater than 0"),
    ("HANG_TIMEOUT", "86401", "less than or equal to 86400"),
    ("LOG_LEVEL", "loud", "'debug', 'info', 'warning' or 'error'"),
    ("ENVIRONMENT", "prod", "'development', 'staging' or 'production'"),
    ("LOG_FORMAT", "xml", "'json', 'console' or 'auto'"),
    ("HTTP_PORT", "65536", "less than or equal to 65535"),
    ("HTTP_PORT", "http", "valid integer"),
    ("STREAM_PREFIX", "a b", "should match pattern"),
    ("STREAM_PREFIX", "", "at least 1 character"),
    ("STREAM_PREFIX", "p" * 65, "at most 64 characters"),
    ("CONSUMER_NAME", "", "at least 1 character"),
    ("CLAIM_IDLE_MS", "99", "greater than or equal to 100"),
    ("CLAIM_INTERVAL_MS", "10", "greater than or equal to 50"),
    ("MAX_DELIVERIES", "0", "greater than or equal to 1"),
    ("RETRY_BACKOFF_MS", "-1", "greater than or equal to 0"),
    ("RETRY_BACKOFF_MAX_MS", "x", "valid integer"),
    ("BATCH_SIZE", "0", "greater than or equal to 1"),
    ("BATCH_SIZE", "10001", "less than or equal to 10000"),
    ("BLOCK_MS", "0", "greater than or equal to 1"),
    ("REDIS_SOCKET_TIMEOUT", "0", "greater than 0"),
    ("REDIS_CONNECT_TIMEOUT", "-1", "greater than 0"),
    ("CONSUMER_IDLE_TIMEOUT", "0", "greater than 0"),
    ("HEARTBEAT_INTERVAL", "0", "greater than 0"),
    ("ALLOWED_ENVIRONMENTS", " , ", "must name at least one entry"),
    ("MAX_MESSAGE_BYTES", "10", "greater than or equal to 1024"),
    ("DEPENDENCY_WAIT_TIMEOUT", "-1", "greater than or equal to 0"),
    ("HEALTH_CHECK_ALLOWED_HOSTS", "", "must name at least one entry"),
    ("NOTIFY_WEBHOOK_URLS", "ftp://files.example/x", "http:// or https:// with a host"),
    ("NOTIFY_WEBHOOK_URLS", "https://ok.example,not-a-url", "http:// or https:// with a host"),
]

# (env, the setting that is refused)
INCONSISTENT: list[tuple[dict[str, str], str]] = [
    ({"BLOCK_MS": "4001"}, "BLOCK_MS"),
    ({"BLOCK_MS": "2000", "REDIS_SOCKET_TIMEOUT": "2.5"}, "BLOCK_MS"),
    ({"CLAIM_IDLE_MS": "2999"}, "CLAIM_IDLE_MS"),
    ({"BLOCK_MS": "500", "CLAIM_IDLE_MS": "1499"}, "CLAIM_IDLE_MS"),
    ({"RESTART_BACKOFF_MS": "2000", "RESTART_BACKOFF_MAX_MS": "1999"}, "RESTART_BACKOFF_MAX_MS"),
    ({"RESTART_BACKOFF_MAX_MS": "999"}, "RESTART_BACKOFF_MAX_MS"),
]

CONSISTENT: list[dict[str, str]] = [
    {"BLOCK_MS": "4000"},
    {"BLOCK_MS": "9000", "REDIS_SOCKET_TIMEOUT": "10", "CLAIM_IDLE_MS": "27000"},
    {"CLAIM_IDLE_MS": "3000"},
    {"BLOCK_MS": "100", "CLAIM_IDLE_MS": "300"},
    {"RESTART_BACKOFF_MS": "1000", "RESTART_BACKOFF_MAX_MS": "1000"},
    {"RESTART_BACKOFF_MS": "0", "RESTART_BACKOFF_MAX_MS": "0"},
]


def refused(env: dict[str, str], flags: dict[str, Any] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(flags or {}, env)
    return caught.value


def test_defaults_are_the_documented_ones() -> None:
    """An empty environment yields every default of the README table."""
    settings = load_settings({}, {})
    expected = {
        "redis_url": "redis://localhost:6379/0",
        "worker_mode": "all",
        "supervised_mode": False,
        "max_restart_attempts": 3,
        "restart_backoff_ms": 1000,
        "restart_backoff_max_ms": 30000,
        "health_check_interval": 30.0,
        "shutdown_timeout": 30.0,
        "restart_window": 300.0,
        "hang_timeout": 60.0,
        "log_level": "info",
        "environment": "development",
        "http_host": "0.0.0.0",
        "http_port": 8080,
        "stream_prefix": "printery",
        "claim_idle_ms": 60000,
        "claim_interval_ms": None,
        "max_deliveries": 5,
        "retry_backoff_ms": 1000,
        "retry_backoff_max_ms": 30000,
        "batch_size": 100,
        "block_ms": 1000,
        "redis_socket_timeout": 5.0,
        "redis_connect_timeout": 5.0,
        "consumer_idle_timeout": 3600.0,
        "heartbeat_interval": 5.0,
        "allowed_environments": "development,staging,production",
        "max_message_bytes": 1_048_576,
        "dependency_wait_timeout": 60.0,
        "health_check_allowed_hosts": "*",
        "notify_webhook_urls": "",
        "notify_webhook_secret": "",
    }
    assert expected == {name: getattr(settings, name) for name in expected}
    assert socket.gethostname() in settings.consumer_name
    assert list(BUILTIN_WORKERS) == settings.workers
    assert 15.0 == settings.claim_interval_s


@pytest.mark.parametrize(
    ("var", "raw", "attribute", "expected"),
    GOOD,
    ids=[f"{var}={raw!r}" for var, raw, _, _ in GOOD],
)
def test_good_value_is_parsed(var: str, raw: str, attribute: str, expected: Any) -> None:
    """A good value of each env var is read into the right setting, typed."""
    assert expected == getattr(load_settings({}, {var: raw}), attribute)


@pytest.mark.parametrize(
    ("var", "raw", "allowed"), BAD, ids=[f"{var}={raw!r}" for var, raw, _ in BAD]
)
def test_bad_value_is_refused_by_name(var: str, raw: str, allowed: str) -> None:
    """A bad value raises ConfigError naming the env var and saying what is allowed."""
    error = refused({var: raw})
    assert var == error.setting
    assert allowed in error.reason
    assert str(error).startswith(f"{var}: ")


def test_env_var_names_are_case_insensitive() -> None:
    """The environment mapping may spell a name in any case."""
    assert 12 == load_settings({}, {"batch_size": "12"}).batch_size


def test_flags_override_env() -> None:
    """A flag wins over its env var."""
    assert 7 == load_settings({"batch_size": "7"}, {"BATCH_SIZE": "5"}).batch_size


def test_typed_flags_override_env() -> None:
    """argparse's typed values (int, bool) override the environment too."""
    settings = load_settings(
        {"max_restart_attempts": 9, "supervised_mode": True, "worker_mode": "notifier"},
        {"MAX_RESTART_ATTEMPTS": "1", "SUPERVISED_MODE": "no", "WORKER_MODE": "validator"},
    )
    assert (9, True, ["notifier"]) == (
        settings.max_restart_attempts,
        settings.supervised_mode,
        settings.workers,
    )


def test_unset_flag_leaves_env_alone() -> None:
    """A flag given as None (not on the command line) does not hide the env var."""
    assert 5 == load_settings({"batch_size": None}, {"BATCH_SIZE": "5"}).batch_size


def test_bad_flag_is_named_like_its_env_var() -> None:
    """A bad flag value is reported under the env var's name, as one line."""
    error = refused({"BATCH_SIZE": "5"}, {"batch_size": "0"})
    assert "BATCH_SIZE" == error.setting


def test_unrelated_env_vars_are_ignored() -> None:
    """Env vars printery does not know (PATH, HOME) are no error."""
    assert 100 == load_settings({}, {"PATH": "/bin", "HOME": "/root"}).batch_size


@pytest.mark.parametrize(
    ("env", "setting"),
    INCONSISTENT,
    ids=[",".join(f"{k}={v}" for k, v in env.items()) for env, _ in INCONSISTENT],
)
def test_contradicting_settings_are_refused(env: dict[str, str], setting: str) -> None:
    """BLOCK_MS vs REDIS_SOCKET_TIMEOUT, CLAIM_IDLE_MS vs BLOCK_MS, backoff max vs backoff."""
    error = refused(env)
    assert setting == error.setting
    assert "must" in error.reason


@pytest.mark.parametrize(
    "env", CONSISTENT, ids=[",".join(f"{k}={v}" for k, v in env.items()) for env in CONSISTENT]
)
def test_settings_on_the_boundary_are_consistent(env: dict[str, str]) -> None:
    """The consistency rules accept their exact boundaries."""
    settings = load_settings({}, env)
    assert {k.lower(): int(float(v)) for k, v in env.items()} == {
        k.lower(): int(getattr(settings, k.lower())) for k in env
    }


def test_flag_can_make_settings_contradict() -> None:
    """The consistency rules see flags and env together."""
    error = refused({"RESTART_BACKOFF_MAX_MS": "3000"}, {"restart_backoff_ms": "5000"})
    assert "RESTART_BACKOFF_MAX_MS" == error.setting


# -- per-worker settings ------------------------------------------------------------

PER_WORKER_DEFAULTS = [
    ("validator", 1),
    ("dependency-checker", 5),
    ("health-monitor", 10),
    ("notifier", 5),
]


@pytest.mark.parametrize(
    ("worker", "default"), PER_WORKER_DEFAULTS, ids=[w for w, _ in PER_WORKER_DEFAULTS]
)
def test_builtin_concurrency_defaults(worker: str, default: int) -> None:
    """Without <WORKER>_CONCURRENCY each built-in worker uses its documented default."""
    factory: Any = load_factory(worker)
    settings = load_settings({}, {})
    assert default == settings.concurrency_for(worker, factory.default_concurrency)


@pytest.mark.parametrize(
    ("var", "worker", "raw", "expected"),
    [
        ("VALIDATOR_CONCURRENCY", "validator", "3", 3),
        ("DEPENDENCY_CHECKER_CONCURRENCY", "dependency-checker", "1", 1),
        ("HEALTH_MONITOR_CONCURRENCY", "health-monitor", "10000", 10000),
        ("NOTIFIER_CONCURRENCY", "notifier", "8", 8),
        ("THUMBNAILER_CONCURRENCY", "thumbnailer", "2", 2),
    ],
    ids=["validator", "dependency-checker", "health-monitor", "notifier", "custom"],
)
def test_per_worker_concurrency(var: str, worker: str, raw: str, expected: int) -> None:
    """<WORKER>_CONCURRENCY sets that worker's handlers in flight, dashes as underscores."""
    assert expected == load_settings({}, {var: raw}).concurrency_for(worker, 99)


@pytest.mark.parametrize(
    ("var", "worker", "raw", "expected"),
    [
        ("VALIDATOR_HANG_TIMEOUT", "validator", "5", 5.0),
        ("DEPENDENCY_CHECKER_HANG_TIMEOUT", "dependency-checker", "0.5", 0.5),
        ("HEALTH_MONITOR_HANG_TIMEOUT", "health-monitor", "600", 600.0),
        ("NOTIFIER_HANG_TIMEOUT", "notifier", "30", 30.0),
    ],
    ids=["validator", "dependency-checker", "health-monitor", "notifier"],
)
def test_per_worker_hang_timeout(var: str, worker: str, raw: str, expected: float) -> None:
    """<WORKER>_HANG_TIMEOUT overrides HANG_TIMEOUT for that worker only."""
    settings = load_settings({}, {var: raw, "HANG_TIMEOUT": "45"})
    assert expected == settings.hang_timeout_for(worker)
    others = [w for w in BUILTIN_WORKERS if w != worker]
    assert [45.0] * len(others) == [settings.hang_timeout_for(w) for w in others]


BAD_PER_WORKER = [
    ("VALIDATOR_CONCURRENCY", "validator", "0", "whole number from 1 to 10000"),
    ("VALIDATOR_CONCURRENCY", "validator", "10001", "whole number from 1 to 10000"),
    ("VALIDATOR_CONCURRENCY", "validator", "1.5", "whole number from 1 to 10000"),
    ("VALIDATOR_CONCURRENCY", "validator", "many", "whole number from 1 to 10000"),
    ("NOTIFIER_HANG_TIMEOUT", "notifier", "0", "above 0"),
    ("NOTIFIER_HANG_TIMEOUT", "notifier", "-3", "above 0"),
    ("NOTIFIER_HANG_TIMEOUT", "notifier", "soon", "number of seconds above 0"),
]


def _check(settings: Settings, var: str, worker: str) -> object:
    if var.endswith("_CONCURRENCY"):
        return settings.concurrency_for(worker, 1)
    return settings.hang_timeout_for(worker)


@pytest.mark.parametrize(
    ("var", "worker", "raw", "allowed"),
    BAD_PER_WORKER,
    ids=[f"{var}={raw!r}" for var, _, raw, _ in BAD_PER_WORKER],
)
def test_bad_per_worker_value_is_refused_when_asked_for(
    var: str, worker: str, raw: str, allowed: str
) -> None:
    """A bad <WORKER>_… value loads fine and is refused, by name, when that worker asks."""
    settings = load_settings({}, {var: raw})
    with pytest.raises(ConfigError) as caught:
        _check(settings, var, worker)
    assert var == caught.value.setting
    assert allowed in caught.value.reason


@pytest.mark.parametrize("raw", ["nan", "inf"])
def test_non_finite_concurrency_is_a_config_error(raw: str) -> None:
    """VALIDATOR_CONCURRENCY=nan or inf is a ConfigError naming it, not a traceback."""
    settings = load_settings({}, {"VALIDATOR_CONCURRENCY": raw})
    with pytest.raises(ConfigError) as caught:
        settings.concurrency_for("validator", 1)
    assert "VALIDATOR_CONCURRENCY" == caught.value.setting


@pytest.mark.parametrize("raw", ["nan", "inf", "86401"])
def test_per_worker_hang_timeout_has_hang_timeouts_bounds(raw: str) -> None:
    """<WORKER>_HANG_TIMEOUT is refused where HANG_TIMEOUT would be (0 < s <= 86400)."""
    settings = load_settings({}, {"VALIDATOR_HANG_TIMEOUT": raw})
    with pytest.raises(ConfigError) as caught:
        settings.hang_timeout_for("validator")
    assert "VALIDATOR_HANG_TIMEOUT" == caught.value.setting


def test_unrelated_per_worker_lookalike_is_no_error() -> None:
    """WEB_CONCURRENCY=auto (a container convention) is ignored unless a worker 'web' asks."""
    settings = load_settings({}, {"WEB_CONCURRENCY": "auto", "GUNICORN_HANG_TIMEOUT": "x"})
    assert [1, 5, 10, 5] == [settings.concurrency_for(w, d) for w, d in PER_WORKER_DEFAULTS]
    with pytest.raises(ConfigError) as caught:
        settings.concurrency_for("web", 1)
    assert "WEB_CONCURRENCY" == caught.value.setting


# -- worker selection -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("all", list(BUILTIN_WORKERS)),
        ("validator", ["validator"]),
        ("dependency", ["dependency-checker"]),
        ("health", ["health-monitor"]),
        ("dependency,health", ["dependency-checker", "health-monitor"]),
        ("notifier,validator", ["notifier", "validator"]),
        ("dependency,dependency-checker", ["dependency-checker"]),
        ("validator,all", list(BUILTIN_WORKERS)),
        ("mypkg.workers:Thumbnailer", ["mypkg.workers:Thumbnailer"]),
    ],
    ids=[
        "all",
        "one",
        "alias-dependency",
        "alias-health",
        "two-aliases",
        "order-kept",
        "alias-dedup",
        "all-dedup",
        "custom",
    ],
)
def test_worker_selection(mode: str, expected: list[str]) -> None:
    """WORKER_MODE resolves the short names and ``all``, keeps order and drops repeats."""
    assert expected == load_settings({}, {"WORKER_MODE": mode}).workers


@pytest.mark.parametrize(
    ("alias", "name"), [("dependency", "dependency-checker"), ("health", "health-monitor")]
)
def test_alias_loads_the_same_worker(alias: str, name: str) -> None:
    """A short name loads the same factory as the full name."""
    assert load_factory(name) is load_factory(alias)


def test_unknown_worker_is_a_config_error() -> None:
    """An unknown worker name is a ConfigError on WORKER_MODE that lists the known ones."""
    with pytest.raises(ConfigError) as caught:
        load_factory("validatr")
    assert "WORKER_MODE" == caught.value.setting
    assert "validator" in caught.value.reason


# -- secrets ------------------------------------------------------------------------------


def test_redis_password_is_not_in_repr() -> None:
    """repr() and str() of the settings show the REDIS_URL with its password redacted."""
    settings = load_settings(
        {}, {"REDIS_URL": f"redis://app:{CANARY}@cache:6379/0", "NOTIFY_WEBHOOK_SECRET": CANARY}
    )
    assert CANARY not in repr(settings)
    assert CANARY not in str(settings)
    assert "redis://app:***@cache:6379/0" in repr(settings)
    assert "redis://app:***@cache:6379/0" == settings.redis_url_redacted
    assert f"redis://app:{CANARY}@cache:6379/0" == settings.redis_url


def test_redis_password_from_a_flag_is_not_in_repr() -> None:
    """A password given by --redis-url is redacted too."""
    settings = load_settings({"redis_url": f"rediss://:{CANARY}@cache:6380/1"}, {})
    assert CANARY not in repr(settings)


@pytest.mark.parametrize(
    "env",
    [
        {"REDIS_URL": f"http://app:{CANARY}@cache:6379/0"},
        {"REDIS_URL": f"redis://app:{CANARY}@cache:nope/0"},
        {"REDIS_URL": f"redis://app:{CANARY}@cache:99999/0"},
        {"REDIS_URL": f"redis://app:{CANARY}@[::1/0"},
        {"REDIS_URL": f"redis://:{CANARY}@/0"},
        {"REDIS_URL": f"redis://app:{CANARY}@cache:6379/0", "BATCH_SIZE": "0"},
        {"REDIS_URL": f"redis://app:{CANARY}@cache:6379/0", "BLOCK_MS": "9000"},
        {"NOTIFY_WEBHOOK_SECRET": CANARY, "NOTIFY_WEBHOOK_URLS": "gopher://x"},
    ],
    ids=[
        "bad-scheme",
        "bad-port",
        "port-range",
        "bad-ipv6",
        "no-host",
        "other-setting",
        "consistency",
        "webhook-secret",
    ],
)
def test_password_is_never_in_a_config_error(env: dict[str, str]) -> None:
    """No ConfigError message carries the REDIS_URL password (or the webhook secret)."""
    error = refused(env)
    assert CANARY not in str(error)
    assert CANARY not in repr(error)
    assert CANARY not in error.reason


def test_query_string_password_is_not_in_repr() -> None:
    """redis://host/0?password=… (which redis-py honours) is redacted in repr too."""
    settings = load_settings({}, {"REDIS_URL": f"redis://cache:6379/0?password={CANARY}"})
    assert CANARY not in repr(settings)
