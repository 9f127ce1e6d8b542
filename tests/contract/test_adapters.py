"""No adapter escapes its contract suite: every adapter module is listed, every listed adapter is what it says.

An adapter is one module under ``headway/routers``, ``providers``, ``platforms`` or ``stores`` (one file per
adapter). A new file there fails this test until it is listed in `tests.contract.adapters` (or the providers'
`PROVIDERS`), which runs it through the suite, or named below as a part that is not an adapter, saying why.
Run backends live in their runtimes, so they are found by the docstring every one of them carries.
"""

from __future__ import annotations

import ast
import pkgutil
from collections.abc import Iterable
from pathlib import Path

import pytest

import headway
from headway.engine.runs import RunBackend
from headway.platforms.base import Platform
from headway.providers.base import MetricProvider
from headway.routers.base import TrafficRouter
from headway.stores.base import StatusStore
from tests.contract import adapters
from tests.contract.test_metric_providers import PROVIDERS

NOT_ADAPTERS = {
    "headway.routers.base": "the TrafficRouter Protocol",
    "headway.routers.drift": "read-back comparison shared by the routers",
    "headway.routers.proxy_readback": "the proxy router's read-back, pure functions over its admin API",
    "headway.providers.base": "the MetricProvider Protocol",
    "headway.providers.registry": "the table from provider type to provider",
    "headway.platforms.base": "the Platform Protocol",
    "headway.platforms.local_process": "one replica process of the local platform",
    "headway.platforms.local_spec": "what a local replica runs, read from the pod template",
    "headway.platforms.local_state": "the local platform's bookkeeping file",
    "headway.stores.base": "the StatusStore Protocol",
}

LISTS: dict[str, tuple[type, list[type]]] = {
    "routers": (TrafficRouter, [entry.implementation for entry in adapters.ROUTERS]),
    "providers": (MetricProvider, [entry.implementation for entry in PROVIDERS]),
    "platforms": (Platform, [entry.implementation for entry in adapters.PLATFORMS]),
    "stores": (StatusStore, [entry.implementation for entry in adapters.STORES]),
}
SOURCE = Path(headway.__file__).resolve().parent


def modules(package: str) -> set[str]:
    return {f"headway.{package}.{module.name}" for module in pkgutil.iter_modules([str(SOURCE / package)])}


def module_names(classes: Iterable[type]) -> set[str]:
    return {cls.__module__ for cls in classes}


@pytest.mark.parametrize("package", sorted(LISTS))
def test_every_adapter_module_is_in_its_contract_suite(package: str) -> None:
    _, listed = LISTS[package]
    unlisted = modules(package) - set(NOT_ADAPTERS) - module_names(listed)

    assert not unlisted, f"adapters run by no contract suite (list them in tests/contract/adapters.py): {unlisted}"
    assert module_names(listed) <= modules(package), "a listed adapter lives outside its package"


@pytest.mark.parametrize("package", sorted(LISTS))
def test_every_listed_adapter_implements_its_protocol(package: str) -> None:
    protocol, listed = LISTS[package]
    members = [name for name in vars(protocol) if not name.startswith("_") and callable(getattr(protocol, name))]

    for cls in listed:
        assert all(callable(getattr(cls, name, None)) for name in members), (cls, members)


def test_the_modules_said_not_to_be_adapters_exist() -> None:
    every = set().union(*(modules(package) for package in LISTS))

    assert set(NOT_ADAPTERS) <= every, "a module named in NOT_ADAPTERS was removed: drop it from the list"


def implementers_of(marker: str) -> set[str]:
    """``module.Class`` of every class under ``headway`` whose docstring says it implements ``marker``."""
    found: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        module = ".".join(("headway", *path.relative_to(SOURCE).with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and marker in (ast.get_docstring(node) or ""):
                found.add(f"{module}.{node.name}")
    return found


def test_every_run_backend_is_in_the_contract_suite() -> None:
    backends = implementers_of("`headway.engine.runs.RunBackend`")
    listed = {f"{entry.implementation.__module__}.{entry.implementation.__name__}" for entry in adapters.RUN_BACKENDS}

    assert backends == listed
    members = [name for name in vars(RunBackend) if not name.startswith("_") and callable(getattr(RunBackend, name))]
    for entry in adapters.RUN_BACKENDS:
        assert all(callable(getattr(entry.implementation, name, None)) for name in members), entry.name
