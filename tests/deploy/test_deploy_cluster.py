"""deploy/: the cluster overlay's KEDA triggers and the compose file's cluster profile."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from printery.redis.keys import Keys, Partitions
from tests.deploy import support

OVERLAY = support.DEPLOY / "k8s" / "overlays" / "cluster"
GROUPS = {
    "validator": "started",
    "dependency-checker": "validated",
    "health-monitor": "dependencies_satisfied",
    "notifier": "notifications",
}


def _triggers_module() -> Any:
    spec = importlib.util.spec_from_file_location("triggers", OVERLAY / "triggers.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_trigger_patch_is_what_triggers_py_generates() -> None:
    """scaledobjects-cluster.yaml is the generator's output: the tags cannot drift."""
    expected = _triggers_module().render()
    assert expected == (OVERLAY / "scaledobjects-cluster.yaml").read_text(encoding="utf-8")


def test_each_stage_scales_on_every_partition_stream() -> None:
    """Rendered: each ScaledObject has one redis-cluster-streams trigger per partition stream."""
    docs = support.render(OVERLAY)
    parts = Partitions(Keys("printery"), 12).all
    for group, attribute in GROUPS.items():
        [scaled] = [
            d for d in docs if d["kind"] == "ScaledObject" and d["metadata"]["name"].endswith(group)
        ]
        triggers = scaled["spec"]["triggers"]
        assert {"redis-cluster-streams"} == {t["type"] for t in triggers}
        assert [getattr(k, attribute) for k in parts] == [t["metadata"]["stream"] for t in triggers]
        assert {group} == {t["metadata"]["consumerGroup"] for t in triggers}
        assert {"REDIS_ADDRESSES"} == {t["metadata"]["addressesFromEnv"] for t in triggers}
    [config] = [
        d for d in docs if d["kind"] == "ConfigMap" and "printery-config" in d["metadata"]["name"]
    ]
    assert ("cluster", "12") == (config["data"]["REDIS_MODE"], config["data"]["PARTITIONS"])


def test_compose_cluster_profile_runs_a_daemon_on_three_nodes() -> None:
    """The optional profile: three cluster-enabled nodes, a one-shot join, a cluster-mode daemon."""
    compose = support.load_docs(support.DEPLOY / "docker-compose.yml")[0]
    services: dict[str, Any] = compose["services"]
    profiled = sorted(n for n, s in services.items() if "cluster" in s.get("profiles", []))
    assert [
        "printery-cluster",
        "redis-cluster-init",
        "redis-node-1",
        "redis-node-2",
        "redis-node-3",
    ] == profiled
    for n in (1, 2, 3):
        command = services[f"redis-node-{n}"]["command"]
        assert "yes" == command[command.index("--cluster-enabled") + 1]
    init = " ".join(services["redis-cluster-init"]["command"])
    assert "--cluster create redis-node-1:6379 redis-node-2:6379 redis-node-3:6379" in init
    env = services["printery-cluster"]["environment"]
    assert ("cluster", "redis://redis-node-1:6379/0") == (env["REDIS_MODE"], env["REDIS_URL"])
    # The default services stay outside the profile: `docker compose up` is unchanged.
    assert "profiles" not in services["redis"]
    assert "profiles" not in services["validator"]


def test_overlay_directory_is_complete() -> None:
    """The overlay ships its kustomization, the generated patch and the generator."""
    names = sorted(p.name for p in Path(OVERLAY).iterdir() if p.is_file())
    assert ["kustomization.yaml", "scaledobjects-cluster.yaml", "triggers.py"] == names
