"""The Deployments, budgets, Service and NetworkPolicy hold the operating contract.

Each test runs on the base as written and on every overlay as kustomize
renders it (the ``manifests`` fixture), so an overlay cannot patch a
guarantee away.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from printery.pipeline.targets import url_problem
from tests.deploy import support

SETTINGS = support.read_env_file(support.K8S_BASE / "printery.env")


def _deployment(manifests: list[dict[str, Any]], worker: str) -> dict[str, Any]:
    return support.by_kind(manifests, "Deployment")[f"printery-{worker}"]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["printery"]
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def test_one_deployment_per_worker(manifests: list[dict[str, Any]]) -> None:
    """validator, dependency-checker, health-monitor and notifier each scale alone."""
    expected = {f"printery-{worker}" for worker in support.WORKERS}
    assert expected == set(support.by_kind(manifests, "Deployment"))


@pytest.mark.parametrize("worker", support.WORKERS)
def test_deployment_runs_one_worker_unsupervised(
    manifests: list[dict[str, Any]], worker: str
) -> None:
    """WORKER_MODE names the worker; Kubernetes, not printery, restarts a crash."""
    env = _env(_container(_deployment(manifests, worker)))
    assert worker == env["WORKER_MODE"]["value"]
    assert env["SUPERVISED_MODE"]["value"] == "false"


@pytest.mark.parametrize("worker", support.WORKERS)
def test_consumer_name_is_the_pod_name(manifests: list[dict[str, Any]], worker: str) -> None:
    """Every replica joins the group under a name of its own, from the downward API."""
    env = _env(_container(_deployment(manifests, worker)))
    assert env["CONSUMER_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


@pytest.mark.parametrize("worker", support.WORKERS)
def test_secrets_come_from_the_secret(manifests: list[dict[str, Any]], worker: str) -> None:
    """Redis' user and password for all, NOTIFY_WEBHOOK_SECRET for the notifier, by reference."""
    container = _container(_deployment(manifests, worker))
    env = _env(container)
    for key in ("REDIS_USERNAME", "REDIS_PASSWORD"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "printery-secrets", "key": key}
    assert (
        "$(REDIS_SCHEME)://$(REDIS_USERNAME):$(REDIS_PASSWORD)@$(REDIS_ADDRESS)/$(REDIS_DB)"
        == env["REDIS_URL"]["value"]
    )
    names = [entry["name"] for entry in container["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL"), "$(VAR) needs it first"
    if worker == "notifier":
        assert env["NOTIFY_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"] == {
            "name": "printery-secrets",
            "key": "NOTIFY_WEBHOOK_SECRET",
        }
    else:
        assert "NOTIFY_WEBHOOK_SECRET" not in env
    for source in container.get("envFrom", []):
        assert "secretRef" not in source, "a whole Secret in the environment leaks REDIS_PASSWORD"


@pytest.mark.parametrize("worker", support.WORKERS)
def test_settings_come_from_the_config_map(manifests: list[dict[str, Any]], worker: str) -> None:
    """The shared settings arrive through envFrom of the printery-config ConfigMap."""
    container = _container(_deployment(manifests, worker))
    names = [source["configMapRef"]["name"] for source in container["envFrom"]]
    assert len(names) == 1
    assert names[0].startswith("printery-config")
    config_maps = support.by_kind(manifests, "ConfigMap")
    if config_maps:  # rendered: the generated name (with its hash) must exist
        assert names[0] in config_maps


@pytest.mark.parametrize("worker", support.WORKERS)
def test_probes(manifests: list[dict[str, Any]], worker: str) -> None:
    """Startup and liveness on /health, readiness on /ready, all on port 8080."""
    container = _container(_deployment(manifests, worker))
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8080}
    expected = {"startupProbe": "/health", "livenessProbe": "/health", "readinessProbe": "/ready"}
    for probe, path in expected.items():
        http_get = container[probe]["httpGet"]
        assert path == http_get["path"], probe
        assert ports.get(http_get["port"], http_get["port"]) == 8080, probe


@pytest.mark.parametrize("worker", support.WORKERS)
def test_grace_period_outlasts_the_drain(manifests: list[dict[str, Any]], worker: str) -> None:
    """SIGKILL comes only after SHUTDOWN_TIMEOUT plus a margin of at least 10 s."""
    pod = _deployment(manifests, worker)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= int(SETTINGS["SHUTDOWN_TIMEOUT"]) + 10


@pytest.mark.parametrize("worker", support.WORKERS)
def test_pod_meets_restricted_pod_security(manifests: list[dict[str, Any]], worker: str) -> None:
    """Nothing the restricted Pod Security Standard rejects; UID 10001 as in the image."""
    pod = _deployment(manifests, worker)["spec"]["template"]["spec"]
    assert support.restricted_violations(pod) == []
    assert pod["securityContext"]["runAsUser"] == 10001
    container = _container(_deployment(manifests, worker))
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("worker", support.WORKERS)
def test_tmp_is_writable(manifests: list[dict[str, Any]], worker: str) -> None:
    """With a read-only root filesystem, /tmp is an emptyDir."""
    pod = _deployment(manifests, worker)["spec"]["template"]["spec"]
    mounts = {
        m["mountPath"]: m["name"]
        for m in _container(_deployment(manifests, worker))["volumeMounts"]
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("worker", support.WORKERS)
def test_requests_and_limits(manifests: list[dict[str, Any]], worker: str) -> None:
    """CPU and memory are requested and limited, and no request exceeds its limit."""
    resources = _container(_deployment(manifests, worker))["resources"]
    for resource in ("cpu", "memory"):
        request = support.quantity(resources["requests"][resource])
        limit = support.quantity(resources["limits"][resource])
        assert 0 < request <= limit, resource


@pytest.mark.parametrize("worker", support.WORKERS)
def test_rollout_keeps_a_consumer(manifests: list[dict[str, Any]], worker: str) -> None:
    """A new pod is up before an old one drains; KEDA, not the manifest, sets replicas."""
    spec = _deployment(manifests, worker)["spec"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "replicas" not in spec
    assert support.selects(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])


@pytest.mark.parametrize("worker", support.WORKERS)
def test_budget_covers_each_worker(manifests: list[dict[str, Any]], worker: str) -> None:
    """A PodDisruptionBudget selects the worker's pods and lets one go at a time."""
    labels = _deployment(manifests, worker)["spec"]["template"]["metadata"]["labels"]
    budgets = [
        pdb
        for pdb in support.by_kind(manifests, "PodDisruptionBudget").values()
        if support.selects(pdb["spec"]["selector"]["matchLabels"], labels)
    ]
    assert len(budgets) == 1
    assert budgets[0]["spec"]["maxUnavailable"] == 1


def test_metrics_service_reaches_every_pod(manifests: list[dict[str, Any]]) -> None:
    """The headless metrics Service selects all workers' pods, ready or not, on 8080."""
    service = support.by_kind(manifests, "Service")["printery-metrics"]
    spec = service["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is True
    assert [(p["name"], p["port"], p["targetPort"]) for p in spec["ports"]] == [
        ("http", 8080, "http")
    ]
    for worker in support.WORKERS:
        labels = _deployment(manifests, worker)["spec"]["template"]["metadata"]["labels"]
        assert support.selects(spec["selector"], labels), worker


def test_network_policy(manifests: list[dict[str, Any]]) -> None:
    """In: 8080 from the monitoring namespace only. Out: Redis, DNS, HTTP on 80/443/8080 only."""
    policies = list(support.by_kind(manifests, "NetworkPolicy").values())
    assert len(policies) == 1
    spec = policies[0]["spec"]
    for worker in support.WORKERS:
        labels = _deployment(manifests, worker)["spec"]["template"]["metadata"]["labels"]
        assert support.selects(spec["podSelector"]["matchLabels"], labels), worker
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                }
            ],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }
    ]
    egress_ports = {
        (port["port"], port.get("protocol", "TCP"))
        for rule in spec["egress"]
        for port in rule["ports"]
    }
    assert {
        (6379, "TCP"),
        (53, "UDP"),
        (53, "TCP"),
        (80, "TCP"),
        (443, "TCP"),
        (8080, "TCP"),
    } == egress_ports


def test_restricted_check_catches_violations() -> None:
    """The Pod Security checker itself: a root, privileged, hostPath pod fails it."""
    pod = {
        "hostNetwork": True,
        "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
        "containers": [
            {
                "name": "bad",
                "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}},
            }
        ],
    }
    assert support.restricted_violations(pod) == [
        "hostNetwork is set",
        "volume host is of type ['hostPath']",
        "bad: privileged",
        "bad: allowPrivilegeEscalation is not false",
        "bad: runAsNonRoot is not true",
        "bad: seccompProfile is None",
        "bad: capabilities do not drop ALL",
        "bad: adds capabilities ['SYS_ADMIN']",
    ]


def _readme_health_urls() -> list[str]:
    """The --health-url examples of the README that point into a cluster (not the quickstart's)."""
    readme = (support.REPO / "README.md").read_text(encoding="utf-8")
    urls = sorted(set(re.findall(r"--health-url (\S+)", readme)))
    return [u for u in urls if urlsplit(u).hostname not in {"localhost", "127.0.0.1"}]


def test_the_readmes_health_url_is_allowed_and_reachable(manifests: list[dict[str, Any]]) -> None:
    """Its host passes the base's HEALTH_CHECK_ALLOWED_HOSTS, its port the NetworkPolicy."""
    urls = _readme_health_urls()
    assert urls, "the README shows no in-cluster health URL"
    globs = tuple(SETTINGS["HEALTH_CHECK_ALLOWED_HOSTS"].split(","))
    [policy] = support.by_kind(manifests, "NetworkPolicy").values()
    egress = {port["port"] for rule in policy["spec"]["egress"] for port in rule["ports"]}
    for url in urls:
        parts = urlsplit(url)
        assert None is url_problem(url, globs), url
        assert (parts.port or {"http": 80, "https": 443}[parts.scheme]) in egress, url
