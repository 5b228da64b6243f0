"""The public surface: every module's ``__all__`` is sorted and names only what exists."""

from __future__ import annotations

import importlib
import pkgutil
import re
from types import ModuleType

import pytest

import printery

pytestmark = pytest.mark.timeout(10)

MODULES = [
    "printery",
    *sorted(info.name for info in pkgutil.walk_packages(printery.__path__, "printery.")),
]


def isort_key(name: str) -> tuple[int, list[int | str]]:
    """The order of ruff's RUF022: CONSTANTS, then Classes, then the rest; naturally within each."""
    cased = [c for c in name if c.isalpha()]
    if len(name) > 1 and cased and all(c.isupper() for c in cased):
        kind = 0
    elif name[:1].isupper():
        kind = 1
    else:
        kind = 2
    natural = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    return kind, natural


def exported(module_name: str) -> tuple[ModuleType, list[str]]:
    module = importlib.import_module(module_name)
    return module, list(getattr(module, "__all__", []))


def test_every_module_declares_all() -> None:
    """Each module of the package says what it exports, so ``import *`` is never a guess."""
    missing = [name for name in MODULES if not hasattr(importlib.import_module(name), "__all__")]
    assert [] == missing


@pytest.mark.parametrize("module_name", MODULES, ids=MODULES)
def test_all_is_sorted(module_name: str) -> None:
    """``__all__`` is in ruff's isort-style order (constants, classes, the rest), no repeats."""
    _, names = exported(module_name)
    assert sorted(names, key=isort_key) == names
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("module_name", MODULES, ids=MODULES)
def test_all_names_exist(module_name: str) -> None:
    """Every name in ``__all__`` is an attribute of its module."""
    module, names = exported(module_name)
    assert [] == [name for name in names if not hasattr(module, name)]


def test_package_exports_its_version() -> None:
    """``printery.__all__`` exports ``__version__``, a non-empty string."""
    assert "__version__" in printery.__all__
    assert isinstance(printery.__version__, str)
    assert printery.__version__ != ""


def test_isort_key_orders_like_ruff() -> None:
    """The ordering used here puts constants first, then classes, then functions, naturally."""
    names = ["load_settings", "Settings", "WORKER_ALIASES", "BUILTIN_WORKERS", "Item10", "Item2"]
    expected = ["BUILTIN_WORKERS", "WORKER_ALIASES", "Item2", "Item10", "Settings", "load_settings"]
    assert expected == sorted(names, key=isort_key)
