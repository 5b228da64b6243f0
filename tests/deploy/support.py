"""Helpers of the deploy checks: the files under deploy/, loaded, and kustomizations rendered.

These tests check files, not a running system: the Kubernetes manifests, the
compose file, the Prometheus rules and the Grafana dashboard. `bash
deploy/check` installs what they need and runs them next to the external
validators (hadolint, kubernetes-validate, promtool, check-jsonschema).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip(
    "yaml", reason="deploy checks need PyYAML (bash deploy/check installs it)"
)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_BASE = DEPLOY / "k8s" / "base"
K8S_COMPONENTS = sorted(p for p in (DEPLOY / "k8s" / "components").iterdir() if p.is_dir())
K8S_OVERLAYS = sorted(p for p in (DEPLOY / "k8s" / "overlays").iterdir() if p.is_dir())

# docs/events.md: each worker and the stream its consumer group reads.
WORKER_STREAMS = {
    "validator": "printery:deployment:started",
    "dependency-checker": "printery:deployment:validated",
    "health-monitor": "printery:deployment:dependencies-satisfied",
    "notifier": "printery:notifications",
}
WORKERS = tuple(WORKER_STREAMS)


def load_docs(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document in ``path``."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def read_env_file(path: Path) -> dict[str, str]:
    """A kustomize ``envs:`` file as a dict (``KEY=value`` lines, ``#`` comments)."""
    settings: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        assert sep, f"{path.name}: {line!r} is not KEY=value"
        settings[key] = value
    return settings


def kustomize_command() -> list[str] | None:
    """The command that renders a kustomization on this machine, if there is one."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render(kustomization_dir: Path) -> list[dict[str, Any]]:
    """The rendered manifests of a kustomization; skips when no renderer is installed."""
    command = kustomize_command()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed; the static checks still ran")
    return [doc for doc in yaml.safe_load_all(_rendered(tuple(command), kustomization_dir)) if doc]


@functools.cache
def _rendered(command: tuple[str, ...], kustomization_dir: Path) -> str:
    """kustomize's output, once per directory per session: a render takes about a second."""
    result = subprocess.run(
        [*command, str(kustomization_dir)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def listed_docs(directory: Path) -> list[dict[str, Any]]:
    """The resources a kustomization or component lists, as written (without kustomize)."""
    kustomization = load_docs(directory / "kustomization.yaml")[0]
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        docs.extend(load_docs(directory / resource))
    return docs


def base_docs() -> list[dict[str, Any]]:
    """The base's resources as written, without kustomize (every file it lists)."""
    return listed_docs(K8S_BASE)


def full_docs() -> list[dict[str, Any]]:
    """The base and every optional component, as written: what a cluster with both gets."""
    return [doc for d in (K8S_BASE, *K8S_COMPONENTS) for doc in listed_docs(d)]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The documents of one kind, by metadata.name."""
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


# Pod Security Standards, "restricted" profile (which includes "baseline"):
# https://kubernetes.io/docs/concepts/security/pod-security-standards/
_RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def restricted_violations(pod_spec: dict[str, Any]) -> list[str]:
    """What in ``pod_spec`` the restricted Pod Security Standard would reject."""
    problems: list[str] = []
    pod_ctx = pod_spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(field):
            problems.append(f"{field} is set")
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} is of type {sorted(kinds)}")
    if pod_ctx.get("runAsUser") == 0:
        problems.append("pod runAsUser is 0")
    if pod_ctx.get("sysctls"):
        problems.append("pod sets sysctls")
    containers = [
        *pod_spec.get("initContainers", []),
        *pod_spec.get("containers", []),
        *pod_spec.get("ephemeralContainers", []),
    ]
    for container in containers:
        name = container["name"]
        ctx = container.get("securityContext") or {}
        if ctx.get("privileged"):
            problems.append(f"{name}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        run_as_non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
        if run_as_non_root is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if ctx.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser is 0")
        seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{name}: seccompProfile is {seccomp!r}")
        capabilities = ctx.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {capabilities['add']}")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"{name}: uses a hostPort")
        if ctx.get("procMount", "Default") != "Default":
            problems.append(f"{name}: procMount is {ctx['procMount']}")
    return problems


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector selects an object with ``labels``."""
    return all(labels.get(key) == value for key, value in selector.items())


_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(value: str | int | float) -> float:
    """A Kubernetes CPU or memory quantity as a number (cores, bytes)."""
    text = str(value)
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    for suffix, factor in _BINARY_SUFFIXES.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)
