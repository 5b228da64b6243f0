"""One source for Redis: printery's REDIS_URL and KEDA's scalers name the same server and user.

The address, scheme and database live in the ConfigMap, the user and password in
the Secret; each Deployment builds REDIS_URL from them with Kubernetes' ``$(VAR)``
expansion, and KEDA reads the same keys. These tests expand the URL as the
kubelet would and compare it, field by field, with what each scaler uses.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from printery.settings import load_settings
from tests.deploy import support

SECRET = {"REDIS_USERNAME": "printery", "REDIS_PASSWORD": "0f3a9c", "NOTIFY_WEBHOOK_SECRET": "x"}


def _config(manifests: list[dict[str, Any]]) -> dict[str, str]:
    config_maps = list(support.by_kind(manifests, "ConfigMap").values())
    if config_maps:
        [config] = config_maps
        return dict(config["data"])
    return support.read_env_file(support.K8S_BASE / "printery.env")


def expanded_env(container: dict[str, Any], config: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom, then env with $(VAR)."""
    env = dict(config)  # the one envFrom: printery-config
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: env.get(m.group(1), m.group(0)),
                entry["value"],
            )
        elif "secretKeyRef" in entry["valueFrom"]:
            assert "printery-secrets" == entry["valueFrom"]["secretKeyRef"]["name"]
            env[entry["name"]] = SECRET[entry["valueFrom"]["secretKeyRef"]["key"]]
    return env


@pytest.mark.parametrize("worker", support.WORKERS)
def test_printery_and_keda_reach_the_same_redis_as_the_same_user(
    all_manifests: list[dict[str, Any]], worker: str
) -> None:
    """Host, port, database, TLS, user and password agree between REDIS_URL and the scaler."""
    config = _config(all_manifests)
    deployment = support.by_kind(all_manifests, "Deployment")[f"printery-{worker}"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = expanded_env(container, config)
    url = urlsplit(env["REDIS_URL"])
    assert "$(" not in env["REDIS_URL"], env["REDIS_URL"]
    settings = load_settings({}, {"REDIS_URL": env["REDIS_URL"]})  # printery accepts it
    assert settings.redis_url == env["REDIS_URL"]

    scaled = support.by_kind(all_manifests, "ScaledObject")[f"printery-{worker}"]
    for trigger in scaled["spec"]["triggers"]:
        metadata = trigger["metadata"]
        auth = support.by_kind(all_manifests, "TriggerAuthentication")[
            trigger["authenticationRef"]["name"]
        ]
        login = {ref["parameter"]: SECRET[ref["key"]] for ref in auth["spec"]["secretTargetRef"]}
        if trigger["type"] == "redis-cluster-streams":
            # The nodes, REDIS_URL's among them; a cluster has database 0 only.
            address = url.netloc.rpartition("@")[2]
            assert address in env[metadata["addressesFromEnv"]].split(",")
            assert ("0", "cluster") == (url.path.lstrip("/"), env["REDIS_MODE"])
            where = (address, "0")
        else:
            where = (env[metadata["addressFromEnv"]], metadata["databaseIndex"])
        assert (
            *where,
            metadata["enableTLS"],
            login["username"],
            login["password"],
        ) == (
            url.netloc.rpartition("@")[2],
            url.path.lstrip("/"),
            "true" if url.scheme == "rediss" else "false",
            url.username,
            url.password,
        )


def test_stream_names_and_database_follow_the_config_map(tmp_path: Path) -> None:
    """An overlay that sets STREAM_PREFIX and REDIS_DB gets them in every ScaledObject."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    k8s = support.DEPLOY / "k8s"
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources: [{k8s / 'base'}]\n"
        f"components: [{k8s / 'components' / 'keda'}]\n"
        "configMapGenerator:\n"
        "  - name: printery-config\n"
        "    behavior: merge\n"
        "    literals: [STREAM_PREFIX=staging, REDIS_DB=3]\n",
        encoding="utf-8",
    )
    if shutil.which("kustomize") is None:  # kubectl kustomize refuses paths outside the root
        shutil.copytree(k8s, overlay / "k8s")
        (overlay / "kustomization.yaml").write_text(
            (overlay / "kustomization.yaml").read_text(encoding="utf-8").replace(str(k8s), "k8s"),
            encoding="utf-8",
        )
    rendered = support.render(overlay)
    triggers = {
        name: scaled["spec"]["triggers"][0]["metadata"]
        for name, scaled in support.by_kind(rendered, "ScaledObject").items()
    }
    assert {
        f"printery-{worker}": (stream.replace("printery:", "staging:", 1), "3")
        for worker, stream in support.WORKER_STREAMS.items()
    } == {name: (m["stream"], m["databaseIndex"]) for name, m in triggers.items()}
