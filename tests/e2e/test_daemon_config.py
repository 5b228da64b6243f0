"""Bad configuration is exit 2 and one line on stderr naming the setting, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.e2e.daemon import Daemon
from tests.e2e.workers import HERE
from tests.support.redis_server import RedisServer

# (environment, flags, what the line must name)
BAD_SETTINGS = [
    ({"BATCH_SIZE": "0"}, [], "BATCH_SIZE"),
    ({"BLOCK_MS": "abc"}, [], "BLOCK_MS"),
    ({"SUPERVISED_MODE": "maybe"}, [], "SUPERVISED_MODE"),
    ({"REDIS_URL": "http://x"}, [], "REDIS_URL"),
    ({"LOG_LEVEL": "loud"}, [], "LOG_LEVEL"),
    ({"ENVIRONMENT": "prod"}, [], "ENVIRONMENT"),
    ({"HTTP_PORT": "70000"}, [], "HTTP_PORT"),
    ({"WORKER_MODE": "nope"}, [], "WORKER_MODE"),
    ({"WORKER_MODE": f"{HERE}:Ping,{HERE}:Pong"}, [], "WORKER_MODE"),
    ({"WORKER_MODE": f"{HERE}:Orphan"}, [], "WORKER_MODE"),
    ({"BLOCK_MS": "6000"}, [], "BLOCK_MS"),  # the socket timeout stays at its 5 s default
    ({"CLAIM_IDLE_MS": "100"}, [], "CLAIM_IDLE_MS"),
    ({"VALIDATOR_CONCURRENCY": "lots"}, [], "VALIDATOR_CONCURRENCY"),
    ({"WORKER_MODE": f"{HERE}:Abstract"}, [], "does not define stream"),
    ({"WORKER_MODE": f"{HERE}:no_arguments"}, [], "WORKER_MODE"),
    ({"WORKER_MODE": f"{HERE}:raises_type_error"}, [], "expected a str"),
    ({"WORKER_MODE": f"{HERE}:not_a_worker"}, [], "returned a str, not a worker"),
    ({"LOG_FORMAT": "xml"}, [], "LOG_FORMAT"),
    ({}, ["--max-restarts=-1"], "MAX_RESTART_ATTEMPTS"),
    ({}, ["--no-such-flag"], "--no-such-flag"),
]
IDS = [
    "BATCH_SIZE",
    "BLOCK_MS-not-a-number",
    "SUPERVISED_MODE",
    "REDIS_URL",
    "LOG_LEVEL",
    "ENVIRONMENT",
    "HTTP_PORT",
    "WORKER_MODE-unknown",
    "WORKER_MODE-cycle",
    "WORKER_MODE-unknown-dependency",
    "BLOCK_MS-above-socket-timeout",
    "CLAIM_IDLE_MS",
    "VALIDATOR_CONCURRENCY",
    "WORKER_MODE-abstract",
    "WORKER_MODE-wrong-callable",
    "WORKER_MODE-factory-type-error",
    "WORKER_MODE-not-a-worker",
    "LOG_FORMAT",
    "max-restarts-flag",
    "unknown-flag",
]


def _one_line_naming(daemon: Daemon, named: str) -> str:
    text = daemon.stderr()
    lines = text.strip().splitlines()
    assert 1 == len(lines), text
    assert lines[0].startswith("printery-workers: "), lines[0]
    assert named in lines[0], lines[0]
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("env", "args", "named"), BAD_SETTINGS, ids=IDS)
def test_bad_setting_exits_2_with_one_line_naming_it(
    tmp_path: Path, redis_server: RedisServer, env: dict[str, str], args: list[str], named: str
) -> None:
    """Each bad setting: exit 2, exactly one line on stderr naming the setting, no traceback."""
    with Daemon(tmp_path, {"REDIS_URL": redis_server.url, **env}, args) as daemon:
        code = daemon.wait_exit(timeout=20)
    assert 2 == code, daemon.stderr()
    _one_line_naming(daemon, named)


@pytest.mark.timeout(30)
def test_taken_http_port_exits_2_naming_it(tmp_path: Path, redis_server: RedisServer) -> None:
    """An HTTP_PORT another process listens on: exit 2, one line naming HTTP_PORT."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        env = {
            "REDIS_URL": redis_server.url,
            "WORKER_MODE": "tests.support.workers:EchoWorker",
            "HTTP_PORT": port,
        }
        with Daemon(tmp_path, env) as daemon:
            code = daemon.wait_exit(timeout=20)
    assert 2 == code, daemon.stderr()
    assert port in _one_line_naming(daemon, "HTTP_PORT")


@pytest.mark.timeout(30)
def test_database_index_out_of_range_exits_2_naming_the_servers_count(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """REDIS_URL …/99 on a 16-database server: exit 2, one line saying the server has 16."""
    url = redis_server.url.rsplit("/", 1)[0] + "/99"
    env = {"REDIS_URL": url, "WORKER_MODE": "tests.support.workers:EchoWorker"}
    with Daemon(tmp_path, env) as daemon:
        code = daemon.wait_exit(timeout=20)
    assert 2 == code, daemon.stderr()
    line = _one_line_naming(daemon, "REDIS_URL")
    assert "database 99 is out of range: the server has 16 databases" in line, line


@pytest.mark.timeout(30)
def test_rediss_at_a_plain_tcp_redis_exits_2_hinting_at_tls(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """rediss:// at a plain-TCP Redis: not "unreachable" forever, but exit 2 naming TLS."""
    env = {
        "REDIS_URL": redis_server.url.replace("redis://", "rediss://", 1),
        "REDIS_CONNECT_TIMEOUT": "1",
        "WORKER_MODE": "tests.support.workers:EchoWorker",
    }
    with Daemon(tmp_path, env) as daemon:
        code = daemon.wait_exit(timeout=20)
    assert 2 == code, daemon.stderr()
    line = _one_line_naming(daemon, "REDIS_URL")
    assert "rediss:// (TLS), but the server at 127.0.0.1" in line, line
    assert "speaks plain TCP: use redis://" in line, line
