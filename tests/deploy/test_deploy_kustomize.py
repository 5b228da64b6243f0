"""The kustomizations: what they list exists and parses, and renders to what we expect."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.deploy import support

KUSTOMIZATIONS = [support.K8S_BASE, *support.K8S_COMPONENTS, *support.K8S_OVERLAYS]
# Kubernetes' own API groups: what a cluster without any CRD accepts.
CORE_API_VERSIONS = {"v1", "apps/v1", "policy/v1", "networking.k8s.io/v1"}

# Settings (the README table) a ConfigMap may carry, plus the parts REDIS_URL is built
# from in each Deployment (REDIS_SCHEME, REDIS_ADDRESS, REDIS_DB; KEDA reads them too).
KNOWN_SETTINGS = {
    "REDIS_URL", "WORKER_MODE", "SUPERVISED_MODE", "MAX_RESTART_ATTEMPTS", "RESTART_BACKOFF_MS",
    "HEALTH_CHECK_INTERVAL", "SHUTDOWN_TIMEOUT", "RESTART_WINDOW", "RESTART_BACKOFF_MAX_MS",
    "HANG_TIMEOUT", "LOG_LEVEL", "ENVIRONMENT", "HTTP_HOST", "HTTP_PORT", "STREAM_PREFIX",
    "CONSUMER_NAME", "CLAIM_IDLE_MS", "MAX_DELIVERIES", "BATCH_SIZE", "BLOCK_MS",
    "VALIDATOR_CONCURRENCY", "DEPENDENCY_CHECKER_CONCURRENCY", "HEALTH_MONITOR_CONCURRENCY",
    "NOTIFIER_CONCURRENCY", "ALLOWED_ENVIRONMENTS", "MAX_MESSAGE_BYTES",
    "DEPENDENCY_WAIT_TIMEOUT", "HEALTH_CHECK_ALLOWED_HOSTS", "NOTIFY_WEBHOOK_URLS",
    "NOTIFY_WEBHOOK_SECRET", "REDIS_SCHEME", "REDIS_ADDRESS", "REDIS_DB",
    # README.md's further settings.
    "CLAIM_INTERVAL_MS", "RETRY_BACKOFF_MS", "RETRY_BACKOFF_MAX_MS", "REDIS_SOCKET_TIMEOUT",
    "REDIS_CONNECT_TIMEOUT", "CONSUMER_IDLE_TIMEOUT", "HEARTBEAT_INTERVAL",
    "VALIDATOR_HANG_TIMEOUT", "DEPENDENCY_CHECKER_HANG_TIMEOUT", "HEALTH_MONITOR_HANG_TIMEOUT",
    "NOTIFIER_HANG_TIMEOUT",
    # retention.
    "STREAM_RETENTION", "STREAM_TRIM_INTERVAL", "DEAD_LETTER_RETENTION",
    # Redis Cluster, and REDIS_ADDRESSES (the nodes, read by KEDA only).
    "REDIS_MODE", "PARTITIONS", "REDIS_ADDRESSES",
}  # fmt: skip


def _kustomization(directory: Path) -> dict:
    return support.load_docs(directory / "kustomization.yaml")[0]


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_every_listed_resource_exists_and_parses(directory: Path) -> None:
    """Each resource is a directory with a kustomization or a file of named objects."""
    kustomization = _kustomization(directory)
    assert kustomization["kind"] in {"Kustomization", "Component"}
    for entry in kustomization["resources"]:
        path = directory / entry
        assert path.exists(), f"{directory.name}: resource {entry} does not exist"
        if path.is_dir():
            assert (path / "kustomization.yaml").is_file()
            continue
        docs = support.load_docs(path)
        assert docs, f"{entry} holds no document"
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), entry
            assert doc["metadata"].get("name"), entry


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_every_patch_and_generator_file_exists(directory: Path) -> None:
    """Patch files parse and generator env files exist, with KEY=value literals."""
    kustomization = _kustomization(directory)
    for patch in kustomization.get("patches", []):
        if "path" in patch:
            assert support.load_docs(directory / patch["path"]), patch["path"]
        else:
            assert patch.get("patch"), patch
            assert patch.get("target"), patch
    for generator in kustomization.get("configMapGenerator", []):
        for env_file in generator.get("envs", []):
            assert (directory / env_file).is_file(), env_file
        for literal in generator.get("literals", []):
            assert "=" in literal, literal


def test_config_holds_only_known_settings() -> None:
    """A misspelt setting in the ConfigMap would be silently ignored by printery."""
    settings = support.read_env_file(support.K8S_BASE / "printery.env")
    assert set() == settings.keys() - KNOWN_SETTINGS
    for overlay in support.K8S_OVERLAYS:
        for generator in _kustomization(overlay).get("configMapGenerator", []):
            keys = {literal.partition("=")[0] for literal in generator.get("literals", [])}
            assert set() == keys - KNOWN_SETTINGS, overlay.name


def test_config_holds_no_secret() -> None:
    """Credentials come from the Secret, never from the ConfigMap."""
    settings = support.read_env_file(support.K8S_BASE / "printery.env")
    secret_keys = {"REDIS_URL", "REDIS_USERNAME", "REDIS_PASSWORD", "NOTIFY_WEBHOOK_SECRET"}
    assert set() == secret_keys & settings.keys()


def test_base_renders_every_object() -> None:
    """kustomize renders the base to the objects the files list, plus the ConfigMap."""
    rendered = support.render(support.K8S_BASE)
    expected = Counter(doc["kind"] for doc in support.base_docs())
    expected["ConfigMap"] += 1
    assert expected == Counter(doc["kind"] for doc in rendered)
    assert dict(expected) == {
        "Deployment": 4,
        "PodDisruptionBudget": 4,
        "Service": 1,
        "NetworkPolicy": 1,
        "ServiceAccount": 1,
        "Secret": 1,
        "ConfigMap": 1,
    }


def test_base_applies_on_a_cluster_without_keda_or_the_prometheus_operator() -> None:
    """Every object of the base is of Kubernetes' own kinds; the CRD kinds are components."""
    assert {
        (doc["kind"], doc["apiVersion"])
        for doc in support.base_docs()
        if doc["apiVersion"] not in CORE_API_VERSIONS
    } == set()
    kinds = {
        component.name: {doc["kind"] for doc in support.listed_docs(component)}
        for component in support.K8S_COMPONENTS
    }
    assert {
        "keda": {"ScaledObject", "TriggerAuthentication"},
        "prometheus-operator": {"ServiceMonitor"},
    } == kinds
    for component in support.K8S_COMPONENTS:
        assert "Component" == _kustomization(component)["kind"]


def test_the_production_overlay_adds_both_components() -> None:
    """The example overlay is for a cluster with KEDA and the Prometheus Operator."""
    production = support.DEPLOY / "k8s" / "overlays" / "production"
    assert ["../../components/keda", "../../components/prometheus-operator"] == _kustomization(
        production
    )["components"]


@pytest.mark.parametrize("overlay", support.K8S_OVERLAYS, ids=lambda p: p.name)
def test_overlay_renders_into_a_restricted_namespace(overlay: Path) -> None:
    """Every object lands in the overlay's namespace, which enforces PSS restricted."""
    rendered = support.render(overlay)
    namespace = _kustomization(overlay)["namespace"]
    namespaces = support.by_kind(rendered, "Namespace")
    assert [namespace] == list(namespaces)
    labels = namespaces[namespace]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, doc["metadata"]["name"]


@pytest.mark.parametrize("overlay", support.K8S_OVERLAYS, ids=lambda p: p.name)
def test_overlay_ships_no_placeholder_secret(overlay: Path) -> None:
    """Production credentials are created out of band, not applied from git."""
    rendered = support.render(overlay)
    assert support.by_kind(rendered, "Secret") == {}


def test_base_secret_is_an_obvious_placeholder() -> None:
    """The base's Secret carries placeholders only, so nobody mistakes it for real."""
    secret = support.by_kind(support.base_docs(), "Secret")["printery-secrets"]
    assert {"REDIS_USERNAME", "REDIS_PASSWORD", "NOTIFY_WEBHOOK_SECRET"} == set(
        secret["stringData"]
    )
    assert "default" == secret["stringData"]["REDIS_USERNAME"]  # Redis' user without ACLs
    for key in ("REDIS_PASSWORD", "NOTIFY_WEBHOOK_SECRET"):
        assert "change-me" == secret["stringData"][key]
