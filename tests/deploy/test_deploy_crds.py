"""ServiceMonitor, ScaledObject and TriggerAuthentication: the fields they must have.

kubernetes-validate knows only Kubernetes' own kinds; these custom resources
(Prometheus Operator, KEDA) are checked here instead, field by field, and
against the objects they point at. They live in the optional components
(deploy/k8s/components), so each test runs on the base with every component
as written and on every overlay as kustomize renders it.
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


def test_service_monitor_scrapes_the_metrics_service(
    all_manifests: list[dict[str, Any]],
) -> None:
    """monitoring.coreos.com/v1 ServiceMonitor selecting printery-metrics' http port, /metrics."""
    monitor = _only(all_manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = support.by_kind(all_manifests, "Service")["printery-metrics"]
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
def test_scaled_object_per_worker(all_manifests: list[dict[str, Any]], worker: str) -> None:
    """keda.sh/v1alpha1 ScaledObject on the worker's Deployment, never below one replica."""
    manifests = all_manifests
    scaled = support.by_kind(manifests, "ScaledObject")[f"printery-{worker}"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target["name"] in support.by_kind(manifests, "Deployment")
    assert target["name"] == f"printery-{worker}"
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


@pytest.mark.parametrize("worker", support.WORKERS)
def test_scaled_object_triggers_on_its_own_group(
    all_manifests: list[dict[str, Any]], worker: str
) -> None:
    """One redis-streams trigger on the worker's input stream and group, by lag or pending."""
    scaled = support.by_kind(all_manifests, "ScaledObject")[f"printery-{worker}"]
    triggers = scaled["spec"]["triggers"]
    # One trigger, or on a Redis Cluster one per partition stream (overlays/cluster).
    assert len(triggers) in {1, 12}, len(triggers)
    config_maps = list(support.by_kind(all_manifests, "ConfigMap").values())
    prefix = (config_maps[0]["data"] if config_maps else SETTINGS)["STREAM_PREFIX"]
    expected = support.WORKER_STREAMS[worker].replace("printery:", f"{prefix}:", 1)
    for trigger in triggers:
        assert trigger["type"] == (
            "redis-streams" if len(triggers) == 1 else "redis-cluster-streams"
        )
        metadata = trigger["metadata"]
        # KEDA's trigger metadata is map[string]string: an unquoted number is rejected.
        assert all(isinstance(value, str) for value in metadata.values()), metadata
        # A partition's stream is the stage's with the partition's hash tag after the prefix.
        assert expected == re.sub(r":\{[^}]*\}", "", metadata["stream"], count=1)
        assert worker == metadata["consumerGroup"]
        thresholds = {"lagCount", "pendingEntriesCount"} & metadata.keys()
        assert len(thresholds) == 1, metadata
        assert int(metadata[thresholds.pop()]) > 0
        if "lagCount" in metadata:
            assert int(metadata["activationLagCount"]) >= 0


@pytest.mark.parametrize("worker", support.WORKERS)
def test_scaler_logs_in_like_printery(all_manifests: list[dict[str, Any]], worker: str) -> None:
    """Address from the Deployment's REDIS_ADDRESS(ES); user and password from the auth."""
    scaled = support.by_kind(all_manifests, "ScaledObject")[f"printery-{worker}"]
    for trigger in scaled["spec"]["triggers"]:
        metadata = trigger["metadata"]
        if trigger["type"] == "redis-cluster-streams":  # the cluster's nodes, comma-separated
            assert "REDIS_ADDRESSES" == metadata["addressesFromEnv"]
        else:
            assert "REDIS_ADDRESS" == metadata["addressFromEnv"]
        assert set() == {"address", "addresses", "host", "hosts"} & metadata.keys()
        assert scaled["spec"]["scaleTargetRef"]["envSourceContainerName"] == "printery"
        assert not {"password", "passwordFromEnv", "username", "usernameFromEnv"} & metadata.keys()
        auth = support.by_kind(all_manifests, "TriggerAuthentication")
        assert trigger["authenticationRef"]["name"] in auth


def test_trigger_authentication_passes_username_and_password(
    all_manifests: list[dict[str, Any]],
) -> None:
    """KEDA logs in as printery does: REDIS_USERNAME and REDIS_PASSWORD of printery-secrets."""
    auth = _only(all_manifests, "TriggerAuthentication")
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    refs = {ref["parameter"]: (ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
    assert {
        "username": ("printery-secrets", "REDIS_USERNAME"),
        "password": ("printery-secrets", "REDIS_PASSWORD"),
    } == refs
    # The overlay creates the Secret out of band: check against the documented keys.
    secret = support.by_kind(support.base_docs(), "Secret")["printery-secrets"]
    assert {"REDIS_USERNAME", "REDIS_PASSWORD"} <= secret["stringData"].keys()
