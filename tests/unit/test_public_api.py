"""Each public package's ``__all__`` lists exactly the names it means users to import."""

from __future__ import annotations

import importlib
import inspect
from types import MappingProxyType, ModuleType

import pytest

PACKAGES = [
    "flowops",
    "flowops.drift",
    "flowops.drift.chisq",
    "flowops.drift.error_rate",
    "flowops.drift.finding",
    "flowops.drift.grid",
    "flowops.drift.js",
    "flowops.drift.ks",
    "flowops.drift.psi",
    "flowops.drift.registry",
    "flowops.drift.report",
    "flowops.drift.rules",
    "flowops.drift.wasserstein",
    "flowops.drift.window_test",
    "flowops.drift.window_tests",
    "flowops.predictions",
    "flowops.drift.partial",
    "flowops.errors",
    "flowops.config",
    "flowops.data",
    "flowops.reports",
    "flowops.reports.files",
    "flowops.reports.page",
    "flowops.reports.sketch",
    "flowops.reports.style",
    "flowops.reports.svg",
    "flowops.events",
    "flowops.events.codec",
    "flowops.events.headers",
    "flowops.events.non_finite",
    "flowops.events.partials",
    "flowops.events.producer",
    "flowops.events.schema_files",
    "flowops.events.schemas",
    "flowops.events.sender",
    "flowops.events.topics",
    "flowops.events.traffic",
    "flowops.events.labels",
    "flowops.quality",
    "flowops.quality.ab",
    "flowops.quality.cbpe",
    "flowops.quality.drop",
    "flowops.quality.join",
    "flowops.quality.metrics",
    "flowops.quality.store",
    "flowops.quality.upload",
    "flowops.quality.windows",
    "flowops.broker",
    "flowops.baseline",
    "flowops.mlflow",
    "flowops.watch",
    "flowops.logs",
    "flowops.gateway.app",
    "flowops.gateway.auth",
    "flowops.gateway.bearer",
    "flowops.gateway.breaker",
    "flowops.gateway.callers",
    "flowops.gateway.client",
    "flowops.gateway.csv_rows",
    "flowops.gateway.config",
    "flowops.gateway.deadline",
    "flowops.gateway.health",
    "flowops.gateway.listener",
    "flowops.gateway.metrics",
    "flowops.gateway.payloads",
    "flowops.gateway.proxy",
    "flowops.gateway.publisher",
    "flowops.gateway.ratelimit",
    "flowops.gateway.ratelimit_redis",
    "flowops.gateway.ratelimit_shared",
    "flowops.gateway.retry",
    "flowops.gateway.server",
    "flowops.gateway.split",
    "flowops.gateway.upstreams",
    "flowops.monitor.agent",
    "flowops.monitor.alerts",
    "flowops.monitor.checks",
    "flowops.monitor.config",
    "flowops.monitor.health_events",
    "flowops.monitor.listeners",
    "flowops.monitor.metrics",
    "flowops.monitor.server",
    "flowops.monitor.probes.dvc",
    "flowops.monitor.probes.kafka",
    "flowops.monitor.probes.mlflow",
    "flowops.cli.reference",
    "flowops.monitor.probes.http",
    "flowops.monitor.probes.service",
    "flowops.monitor.probes.serving",
    "flowops.ops.kustomize",
    "flowops.ops.manifests",
    "flowops.ops.cluster",
    "flowops.ops.deploy",
    "flowops.ops.fake_cluster",
    "flowops.ops.rollback",
    "flowops.ops.rollout",
    "flowops.ops.waiting",
    "flowops.ops.testing",
    "flowops.ops.contract",
    "flowops.ops.junit",
    "flowops.ops.build",
    "flowops.ops.builders",
]


def _public_names(module: ModuleType) -> set[str]:
    """Names without a leading underscore that the module defines or, for a package,
    re-exports from FlowOps modules. Plain modules' imports are not their surface.
    """
    home = module.__name__ if not hasattr(module, "__path__") else "flowops"
    return (
        {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and not inspect.ismodule(value)
            and getattr(value, "__module__", "").startswith(home)
        }
        | {name for name in module.__all__ if name == "__version__" or _is_alias(module, name)}
        | _constants(module)
    )


def _constants(module: ModuleType) -> set[str]:
    """UPPER_CASE values without a home module of their own (numbers, strings, tuples,
    frozensets, read-only mappings)."""
    return {
        name
        for name, value in vars(module).items()
        if name.isupper()
        and not name.startswith("_")
        and isinstance(value, int | float | str | tuple | frozenset | MappingProxyType)
        and not isinstance(value, bool)  # TYPE_CHECKING
    }


def _is_alias(module: ModuleType, name: str) -> bool:
    """A type alias (``Kind = Literal[...]``, ``TestName = str``) has no home module of
    its own."""
    value = getattr(module, name, None)
    homes = ("typing", "types", "collections.abc", "builtins")
    return getattr(value, "__module__", None) in homes


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    assert sorted(module.__all__) == sorted(set(module.__all__)), "no duplicates"
    for exported in module.__all__:  # first, so that names a package imports lazily are bound
        assert hasattr(module, exported)
    assert set(module.__all__) == _public_names(module)


def test_version_is_exported() -> None:
    import flowops

    assert flowops.__version__.count(".") == 2
