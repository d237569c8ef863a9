"""Each public package's ``__all__`` lists exactly the names it means users to import."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import pytest

PACKAGES = ["flowops", "flowops.drift", "flowops.errors", "flowops.config"]


def _public_names(module: ModuleType) -> set[str]:
    """Names defined in or re-exported by the module that do not start with an underscore."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and name != "annotations"
        and (getattr(value, "__module__", "").startswith("flowops") or name in module.__all__)
    }


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    assert sorted(module.__all__) == sorted(set(module.__all__)), "no duplicates"
    assert set(module.__all__) == _public_names(module)
    for exported in module.__all__:
        assert hasattr(module, exported)


def test_version_is_exported() -> None:
    import flowops

    assert flowops.__version__.count(".") == 2
