"""The Dockerfile and its build context, checked without a Docker engine.

hadolint (in deploy/check) lints the Dockerfile; these tests check what the
image promises its platform: stages, user, signal, port, entry point, labels,
and that the context .dockerignore lets through is enough to build the wheel.
"""

from __future__ import annotations

import configparser
import contextlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import support

dockerfile_parse = pytest.importorskip("dockerfile_parse", reason="deploy/check installs it")
docker_build = pytest.importorskip("docker.utils.build", reason="deploy/check installs docker")

DOCKERFILE = support.REPO / "Dockerfile"
COMPILERS = ("gcc", "g++", "clang", "build-essential", "make", "cc ", "rustc", "cargo")
OCI_LABELS = {
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.licenses",
}


def _stages() -> list[list[dict[str, Any]]]:
    """The Dockerfile's instructions, one list per stage (comments dropped)."""
    parser = dockerfile_parse.DockerfileParser(str(DOCKERFILE))
    stages: list[list[dict[str, Any]]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages and instruction["instruction"] != "COMMENT":
            stages[-1].append(instruction)
    return stages


def _values(stage: list[dict[str, Any]], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def _context_files() -> set[str]:
    """The paths `docker build .` would send, by .dockerignore's rules."""
    patterns = (support.REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return set(docker_build.exclude_paths(str(support.REPO), patterns))


def test_multi_stage_build_from_a_pinned_base() -> None:
    """A builder and a runtime stage, both on the same explicitly tagged slim Python."""
    parser = dockerfile_parse.DockerfileParser(str(DOCKERFILE))
    stages = _stages()
    assert len(stages) == 2
    assert _values(stages[0], "FROM") == ["${PYTHON_IMAGE} AS builder"]
    assert _values(stages[1], "FROM") == ["${PYTHON_IMAGE} AS runtime"]
    base = parser.baseimage
    image, _, tag = base.partition("@")[0].rpartition(":")
    assert image == "python"
    assert tag.startswith("3.11")
    assert tag.endswith("-slim-bookworm")


def test_runtime_stage_has_no_compiler_and_no_source() -> None:
    """The final stage installs the wheel built by the builder, and nothing that compiles."""
    runtime = _stages()[-1]
    runs = " ".join(_values(runtime, "RUN"))
    for compiler in COMPILERS:
        assert compiler not in runs, compiler
    assert "apt-get install" not in runs
    assert _values(runtime, "COPY") == [], "the runtime stage copies no source"
    assert "from=builder" in runs
    assert "--no-index" in runs


def test_runtime_contract() -> None:
    """UID 10001, exec-form entry point, SIGTERM, port 8080, production logging, OCI labels."""
    parser = dockerfile_parse.DockerfileParser(str(DOCKERFILE))
    runtime = _stages()[-1]
    assert _values(runtime, "USER") == ["10001:10001"]
    assert _values(runtime, "ENTRYPOINT") == ['["printery-workers"]']
    assert json.loads(_values(runtime, "ENTRYPOINT")[0]) == ["printery-workers"]
    assert _values(runtime, "STOPSIGNAL") == ["SIGTERM"]
    assert _values(runtime, "EXPOSE") == ["8080"]
    assert _values(runtime, "CMD") == []
    assert parser.envs["ENVIRONMENT"] == "production"
    assert parser.labels.keys() >= OCI_LABELS


def test_entry_point_is_the_packaged_console_script() -> None:
    """ENTRYPOINT printery-workers is the console script pyproject.toml declares."""
    pyproject = tomllib.loads((support.REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["scripts"]["printery-workers"] == "printery.daemon.launch:main"


def test_build_context_holds_what_the_builder_copies() -> None:
    """.dockerignore lets through the package and its metadata, and keeps the rest out."""
    context = _context_files()
    builder = _stages()[0]
    for copy in _values(builder, "COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert source.rstrip("/") in context, f"COPY {source} is not in the build context"
    assert "printery/__init__.py" in context
    for excluded in ("tests", "deploy", ".git", ".venv", "bench", ".ci"):
        assert not any(path.split("/")[0] == excluded for path in context), excluded
    assert not any("__pycache__" in path for path in context)


@pytest.mark.timeout(300)
@pytest.mark.skipif(
    os.environ.get("PRINTERY_DEPLOY_BUILD") != "1",
    reason="builds a wheel (slow, needs the package index): set PRINTERY_DEPLOY_BUILD=1",
)
def test_wheel_builds_from_the_build_context(tmp_path: Path) -> None:
    """`pip wheel` on exactly what the builder copies gives a wheel with entry point and licence."""
    context = tmp_path / "context"
    copied = [
        source.rstrip("/") for copy in _values(_stages()[0], "COPY") for source in copy.split()[:-1]
    ]
    for relative in sorted(_context_files()):
        source = support.REPO / relative
        if source.is_file() and any(relative == c or relative.startswith(c + "/") for c in copied):
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / relative)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path / "dist"),
            ".",
        ],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = (tmp_path / "dist").glob("printery-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = configparser.ConfigParser()
        scripts.read_string(archive.read(entry_points).decode())
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = archive.read(metadata).decode().split("\n\n", 1)[0].splitlines()
        licences = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert scripts["console_scripts"]["printery-workers"] == "printery.daemon.launch:main"
    assert {"printery/daemon/launch.py", "printery/redis/lua/commit.lua"} <= names
    assert "printery/py.typed" in names
    assert "License-Expression: Apache-2.0" in headers
    assert "License-File: LICENSE" in headers
    assert 1 == len(licences)


def _healthcheck_command() -> list[str]:
    [healthcheck] = _values(_stages()[-1], "HEALTHCHECK")
    command = json.loads(healthcheck.split("CMD", 1)[1].strip())
    assert "python" == command[0]
    return [sys.executable, *command[1:]]


@contextlib.contextmanager
def _health_server(status: int) -> Iterator[int]:
    """A loopback server whose /health answers ``status``; yields its port."""

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.timeout(30)
def test_healthcheck_asks_the_port_http_port_names() -> None:
    """The image's HEALTHCHECK, run for real: 0 on a 200 at HTTP_PORT, 1 on a 503, 0 when off."""
    command = _healthcheck_command()

    def check(port: int | str) -> int:
        env = {**os.environ, "HTTP_PORT": str(port)}
        done = subprocess.run(command, env=env, capture_output=True, timeout=10, check=False)
        return done.returncode

    with _health_server(200) as healthy, _health_server(503) as unhealthy:
        assert (0, 1, 0) == (check(healthy), check(unhealthy), check(0))


def test_build_and_push_is_one_command(tmp_path: Path) -> None:
    """deploy/image REPOSITORY runs one docker buildx build --push, tagged and labelled."""
    (tmp_path / "docker").write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "args"}\n', encoding="utf-8"
    )
    (tmp_path / "docker").chmod(0o755)
    done = subprocess.run(
        [str(support.DEPLOY / "image"), "registry.example.com/platform/printery"],
        env={**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    args = (tmp_path / "args").read_text(encoding="utf-8").splitlines()
    version = tomllib.loads((support.REPO / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"
    ]["version"]
    assert ["buildx", "build", "--push"] == args[:3]
    assert f"registry.example.com/platform/printery:{version}" == args[args.index("--tag") + 1]
    build_args = {args[i + 1].split("=")[0] for i, a in enumerate(args) if a == "--build-arg"}
    assert {"VERSION", "REVISION", "CREATED"} == build_args
    assert "." == args[-1]
    readme = (support.DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "deploy/image registry.example.com/platform/printery" in readme
