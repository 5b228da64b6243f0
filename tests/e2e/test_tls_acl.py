"""Redis behind TLS (rediss://) and an ACL user: the daemon works; a bad secret is one line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from printery.cli.main import run
from tests.e2e.daemon import Daemon
from tests.support.redis_server import free_port, redis_server_binary

ECHO = "tests.support.workers:EchoWorker"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("openssl is not installed, and CI=true forbids skipping")
        pytest.skip("openssl is not installed")
    certs = tmp_path / "certs"
    certs.mkdir()
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=printery-test-ca",
        cwd=certs,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=certs,
    )
    (certs / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        cwd=certs,
    )
    return certs


def _serve(args: list[str], client_url: str) -> subprocess.Popen[bytes]:
    """Start redis-server with ``args``; wait until a client at ``client_url`` can PING."""
    process = subprocess.Popen(
        [redis_server_binary(), "--save", "", "--bind", "127.0.0.1", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis.from_url(client_url, socket_timeout=1).ping():
                return process
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.05)  # an outside server's listen(): nothing to await


@pytest.fixture
def tls_redis(certificates: Path) -> Iterator[str]:
    port = free_port()
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certificates / 'ca.crt'}"
    process = _serve(
        [
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(certificates / "server.crt"),
            "--tls-key-file",
            str(certificates / "server.key"),
            "--tls-ca-cert-file",
            str(certificates / "ca.crt"),
            "--tls-auth-clients",
            "no",
        ],
        url,
    )
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def acl_redis() -> Iterator[int]:
    port = free_port()
    process = _serve(
        [
            "--port",
            str(port),
            "--user",
            "default",
            "off",
            "--user",
            "printery",
            "on",
            ">acl-pw",
            "~*",
            "&*",
            "+@all",
        ],
        f"redis://printery:acl-pw@127.0.0.1:{port}/0",
    )
    yield port
    process.terminate()
    process.wait(timeout=10)


def _processes_one_message(tmp_path: Path, url: str, prefix: str) -> None:
    daemon = Daemon(
        tmp_path, {"REDIS_URL": url, "STREAM_PREFIX": prefix, "WORKER_MODE": ECHO}
    ).start()
    try:
        daemon.wait_ready()
        client = redis.Redis.from_url(url)
        client.xadd(f"{prefix}:test:in", {"n": "1"})
        daemon.wait_until("one output", lambda: client.xlen(f"{prefix}:test:out") == 1)
        daemon.send(signal.SIGTERM)
        assert daemon.wait_exit(timeout=20) == 0
    finally:
        daemon.kill()


@pytest.mark.timeout(60)
def test_tls_redis_works(tmp_path: Path, tls_redis: str, prefix: str) -> None:
    """Over rediss:// with a CA given in the URL, the daemon starts, handles, drains."""
    _processes_one_message(tmp_path, tls_redis, prefix)


@pytest.mark.timeout(60)
def test_acl_user_works_and_a_wrong_password_is_one_line(
    tmp_path: Path, acl_redis: int, prefix: str
) -> None:
    """As an ACL user it works; the same user with a wrong password exits 2 with one line."""
    _processes_one_message(tmp_path, f"redis://printery:acl-pw@127.0.0.1:{acl_redis}/0", prefix)
    wrong = Daemon(
        tmp_path,
        {
            "REDIS_URL": f"redis://printery:not-it@127.0.0.1:{acl_redis}/0",
            "WORKER_MODE": ECHO,
        },
    ).start()
    try:
        code = wrong.wait_exit(timeout=20)
    finally:
        wrong.kill()
    lines = wrong.stderr().strip().splitlines()
    assert (code, len(lines)) == (2, 1), lines
    assert "not-it" not in lines[0]
    assert "refused the user or password" in lines[0], lines[0]


@pytest.mark.timeout(30)
def test_the_cli_says_a_wrong_password_is_refused_not_unreachable(
    acl_redis: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """printery status with a wrong password: "refused", not "cannot reach", exit 2, one line."""
    url = f"redis://printery:not-it@127.0.0.1:{acl_redis}/0"
    code = run(["status", "--redis-url", url])
    out, err = capsys.readouterr()
    expected = f"printery: REDIS_URL (redis://printery:***@127.0.0.1:{acl_redis}/0): refused"
    assert (2, "", 1) == (code, out, len(err.splitlines())), err
    assert err.startswith(expected), err
    assert "cannot reach" not in err


@pytest.mark.timeout(30)
def test_plain_url_at_a_tls_port_hints_at_rediss(
    tls_redis: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """redis:// at a TLS-only port: one line, exit 2, suggesting rediss://."""
    plain = "redis://" + tls_redis.removeprefix("rediss://").split("?", 1)[0]
    code = run(["status", "--redis-url", plain])
    out, err = capsys.readouterr()
    assert (2, "", 1) == (code, out, len(err.splitlines())), err
    assert "is a TLS port, the URL should be rediss://" in err, err
