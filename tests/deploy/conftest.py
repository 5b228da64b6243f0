"""Fixtures of the deploy checks (helpers live in support.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_OVERLAYS = sorted(
    p.name
    for p in (Path(__file__).resolve().parents[2] / "deploy/k8s/overlays").iterdir()
    if p.is_dir()
)


@pytest.fixture(params=["base", *(f"overlays/{name}" for name in _OVERLAYS)])
def manifests(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """The base's documents as written, or an overlay's as kustomize renders them."""
    from tests.deploy import support

    if request.param == "base":
        return support.base_docs()
    return support.render(support.DEPLOY / "k8s" / request.param)


@pytest.fixture(params=["base+components", *(f"overlays/{name}" for name in _OVERLAYS)])
def all_manifests(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """The base with every optional component (KEDA, Prometheus Operator), or an overlay."""
    from tests.deploy import support

    if request.param == "base+components":
        return support.full_docs()
    return support.render(support.DEPLOY / "k8s" / request.param)
