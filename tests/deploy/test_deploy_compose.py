"""deploy/docker-compose.yml: valid against the compose-spec schema, and wired together."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import support

jsonschema = pytest.importorskip("jsonschema")
pytest.importorskip(
    "check_jsonschema", reason="ships the compose-spec schema (deploy/check installs it)"
)

COMPOSE = support.DEPLOY / "docker-compose.yml"


def _compose() -> dict[str, Any]:
    return support.load_docs(COMPOSE)[0]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((COMPOSE.parent / source).resolve(), target))
    return mounts


def test_compose_file_matches_the_compose_spec() -> None:
    """The compose-spec JSON schema, as vendored by check-jsonschema, accepts the file."""
    schema_file = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_class(schema).iter_errors(_compose()), key=str)
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []


@pytest.mark.parametrize("worker", support.WORKERS)
def test_worker_service(worker: str) -> None:
    """One service per worker, built from the repository's Dockerfile, with its WORKER_MODE."""
    service = _compose()["services"][worker]
    context = (COMPOSE.parent / service["build"]["context"]).resolve()
    assert context == support.REPO
    assert (context / service["build"]["dockerfile"]).is_file()
    env = _environment(service)
    assert worker == env["WORKER_MODE"]
    assert env["SUPERVISED_MODE"] == "false"
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert service["restart"] == "unless-stopped"
    assert service["stop_signal"] == "SIGTERM"
    grace = int(service["stop_grace_period"].removesuffix("s"))
    assert grace >= int(env["SHUTDOWN_TIMEOUT"]) + 10
    assert service["user"] == "10001:10001"
    assert service["read_only"] is True
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"


def test_redis_persists_with_aof() -> None:
    """Redis runs with appendonly yes (and fsync every second) on a named volume."""
    redis = _compose()["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "healthcheck" in redis


def test_every_bind_mount_exists() -> None:
    """Each file or folder the compose file mounts is in the repository."""
    for name, service in _compose()["services"].items():
        for source, _ in _bind_mounts(service):
            assert source.exists(), f"{name}: {source}"


def test_prometheus_scrapes_every_worker_and_loads_the_rules() -> None:
    """Prometheus gets prometheus.yml and rules.yml, and scrapes each worker service."""
    compose = _compose()
    mounts = {target: source for source, target in _bind_mounts(compose["services"]["prometheus"])}
    config_path = mounts["/etc/prometheus/prometheus.yml"]
    assert mounts["/etc/prometheus/rules.yml"] == support.DEPLOY / "prometheus" / "rules.yml"
    config = support.load_docs(config_path)[0]
    assert config["rule_files"] == ["rules.yml"]
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert {f"{worker}:8080" for worker in support.WORKERS} == targets
    assert set(support.WORKERS) <= compose["services"].keys()


def test_grafana_provisions_the_datasource_and_dashboard() -> None:
    """Grafana's provisioning points at the compose Prometheus and the mounted dashboard."""
    compose = _compose()
    mounts = {target: source for source, target in _bind_mounts(compose["services"]["grafana"])}
    provisioning = mounts["/etc/grafana/provisioning"]
    assert (
        mounts["/var/lib/grafana/dashboards/printery.json"]
        == support.DEPLOY / "grafana" / "printery.json"
    )
    datasources = support.load_docs(provisioning / "datasources" / "prometheus.yml")[0]
    [datasource] = datasources["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    providers = support.load_docs(provisioning / "dashboards" / "printery.yml")[0]
    [provider] = providers["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
