"""Each module's ``__all__`` lists exactly the names it means users to import.

The modules are found by walking the packages, so a new module is checked without
being listed here; the few skipped are in ``NOT_CHECKED``, each with its reason.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import MappingProxyType, ModuleType
from typing import TypeAlias

import pytest

ROOTS = ("flowops", "streams")

NOT_CHECKED = {
    # the `python -m flowops` entry point: runs the CLI, has no names to import
    "flowops.__main__",
    # click.option(...) decorators: their home is click's module, not this one
    "flowops.cli.options",
}
"""Modules the walk skips, each for the reason beside it. Private modules (a part that
starts with ``_``) are skipped by rule: their surface is their package's."""


def _walk() -> list[str]:
    """Every module of ``ROOTS``, found by importing the packages (as pkgutil does)."""
    names: list[str] = []
    for root in ROOTS:
        package = importlib.import_module(root)
        names.append(root)
        found = pkgutil.walk_packages(package.__path__, f"{root}.", onerror=_raise)
        names.extend(info.name for info in found)
    return sorted(name for name in names if name not in NOT_CHECKED and not _private(name))


def _raise(name: str) -> None:
    raise ImportError(f"cannot import {name} to walk it")


def _private(name: str) -> bool:
    return any(part.startswith("_") for part in name.split("."))


MODULES = _walk()


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
            and _home(value).startswith(home)
        }
        | {name for name in module.__all__ if name == "__version__" or _is_alias(module, name)}
        | _constants(module)
    )


def _home(value: object) -> str:
    """Where ``value`` was defined: a click command where the function it wraps was (the
    object itself is an instance of click's class)."""
    callback = getattr(value, "callback", None)
    if callable(callback) and hasattr(value, "params"):
        return getattr(callback, "__module__", "")
    return getattr(value, "__module__", "")


def _constants(module: ModuleType) -> set[str]:
    """UPPER_CASE values without a home module of their own (numbers, strings, bytes,
    tuples, frozensets, read-only mappings)."""
    return {
        name
        for name, value in vars(module).items()
        if name.isupper()
        and not name.startswith("_")
        and isinstance(value, int | float | str | bytes | tuple | frozenset | MappingProxyType)
        and not isinstance(value, bool)  # TYPE_CHECKING
    }


def _is_alias(module: ModuleType, name: str) -> bool:
    """A type alias (``Kind = Literal[...]``, ``TestName = str``, or a string annotated
    ``TypeAlias`` for a forward reference) has no home module of its own."""
    value = getattr(module, name, None)
    homes = ("typing", "types", "collections.abc", "builtins")
    annotated = getattr(module, "__annotations__", {}).get(name) in ("TypeAlias", TypeAlias)
    return getattr(value, "__module__", None) in homes or annotated


def test_the_walk_finds_the_modules() -> None:
    assert {"flowops.formats.rows", "streams.worker", "flowops.cli.gate"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    if not hasattr(module, "__all__"):  # a package that only documents its modules
        assert _public_names_without_all(module) == set()
        return
    assert sorted(module.__all__) == sorted(set(module.__all__)), "no duplicates"
    for exported in module.__all__:  # first, so that names a package imports lazily are bound
        assert hasattr(module, exported)
    assert set(module.__all__) == _public_names(module)


def _public_names_without_all(module: ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    } - {"annotations"}


def test_version_is_exported() -> None:
    import flowops

    assert flowops.__version__.count(".") == 2
