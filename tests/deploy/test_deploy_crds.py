"""ServiceMonitor, ScaledObject and TriggerAuthentication: the fields they must have.

kubernetes-validate knows only Kubernetes' own kinds; these custom resources
(Prometheus Operator, KEDA) are checked here instead, field by field, and
against the objects they point at.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy import support

SETTINGS = support.read_env_file(support.K8S_BASE / "printery.env")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h))+$")


def _only(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    objects = list(support.by_kind(manifests, kind).values())
    assert len(objects) == 1, kind
    return objects[0]


def test_service_monitor_scrapes_the_metrics_service(manifests: list[dict[str, Any]]) -> None:
    """monitoring.coreos.com/v1 ServiceMonitor selecting printery-metrics' http port, /metrics."""
    monitor = _only(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = support.by_kind(manifests, "Service")["printery-metrics"]
    assert support.selects(
        monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]
    )
    port_names = {port["name"] for port in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"]
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        assert DURATION.match(endpoint["interval"]), endpoint["interval"]
        assert DURATION.match(endpoint["scrapeTimeout"]), endpoint["scrapeTimeout"]


@pytest.mark.parametrize("worker", support.WORKERS)
def test_scaled_object_per_worker(manifests: list[dict[str, Any]], worker: str) -> None:
    """keda.sh/v1alpha1 ScaledObject on the worker's Deployment, never below one replica."""
    scaled = support.by_kind(manifests, "ScaledObject")[f"printery-{worker}"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target["name"] in support.by_kind(manifests, "Deployment")
    assert target["name"] == f"printery-{worker}"
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


@pytest.mark.parametrize("worker", support.WORKERS)
def test_scaled_object_triggers_on_its_own_group(
    manifests: list[dict[str, Any]], worker: str
) -> None:
    """One redis-streams trigger on the worker's input stream and group, by lag or pending."""
    scaled = support.by_kind(manifests, "ScaledObject")[f"printery-{worker}"]
    triggers = scaled["spec"]["triggers"]
    # One trigger, or on a Redis Cluster one per partition stream (overlays/cluster).
    assert len(triggers) in {1, 12}, len(triggers)
    for trigger in triggers:
        assert trigger["type"] == (
            "redis-streams" if len(triggers) == 1 else "redis-cluster-streams"
        )
        metadata = trigger["metadata"]
        # KEDA's trigger metadata is map[string]string: an unquoted number is rejected.
        assert all(isinstance(value, str) for value in metadata.values()), metadata
        prefix = SETTINGS["STREAM_PREFIX"]
        stream = re.sub(r":\{[^}]*\}", "", metadata["stream"], count=1)  # a partition's tag
        assert support.WORKER_STREAMS[worker] == stream
        assert metadata["stream"].startswith(f"{prefix}:")
        assert worker == metadata["consumerGroup"]
        thresholds = {"lagCount", "pendingEntriesCount"} & metadata.keys()
        assert len(thresholds) == 1, metadata
        assert int(metadata[thresholds.pop()]) > 0
        if "lagCount" in metadata:
            assert int(metadata["activationLagCount"]) >= 0


@pytest.mark.parametrize("worker", support.WORKERS)
def test_scaler_finds_redis(manifests: list[dict[str, Any]], worker: str) -> None:
    """The scaler's address comes from the Deployment's environment, its password from auth."""
    scaled = support.by_kind(manifests, "ScaledObject")[f"printery-{worker}"]
    for trigger in scaled["spec"]["triggers"]:
        metadata = trigger["metadata"]
        # redis-streams: one address; redis-cluster-streams: the nodes, comma-separated.
        from_env = metadata.get("addressFromEnv") or metadata.get("addressesFromEnv")
        assert "address" in metadata or from_env
        if from_env:
            assert scaled["spec"]["scaleTargetRef"]["envSourceContainerName"] == "printery"
            config_maps = support.by_kind(manifests, "ConfigMap")
            data = next(iter(config_maps.values()))["data"] if config_maps else SETTINGS
            for address in data[from_env].split(","):
                host, _, port = address.rpartition(":")
                assert host
                assert port.isdigit()
        assert "passwordFromEnv" not in metadata, "the password comes from TriggerAuthentication"
        auth = support.by_kind(manifests, "TriggerAuthentication")
        assert trigger["authenticationRef"]["name"] in auth


def test_trigger_authentication_reads_the_password(manifests: list[dict[str, Any]]) -> None:
    """keda.sh/v1alpha1 TriggerAuthentication maps `password` to a key of printery-secrets."""
    auth = _only(manifests, "TriggerAuthentication")
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert "password" in refs
    # The overlay creates the Secret out of band: check against the documented keys.
    secret = support.by_kind(support.base_docs(), "Secret")["printery-secrets"]
    for ref in refs.values():
        assert ref["name"] == "printery-secrets"
        assert ref["key"] in secret["stringData"]
