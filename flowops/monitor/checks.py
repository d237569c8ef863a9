"""What every probe returns, and the one interface the agent runs probes through.

A probe looks at one *target* (an MLflow server, a DVC repository, a model server, a
Kafka cluster, a service's ``/readyz``) and answers one or more :class:`CheckResult`,
one per *check* it makes there (``mlflow.health``, ``mlflow.backend``...). It never
raises for the target's faults: a refused connection, a timeout or a bad answer is a
failed check whose ``detail`` says what a person should look at. It has its own timeout,
and the agent runs every probe concurrently.

``values`` carries the numbers behind a check (files not in the DVC remote, a consumer
group's lag), which become detail gauges (``flowops_probe_value{check,target,name}``).

>>> result = CheckResult("mlflow.health", "http://127.0.0.1:5000", True, 0.012, "OK")
>>> result.as_json()["success"]
True
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

__all__ = ["TIMEOUT_GRACE", "CheckResult", "Probe", "Stopwatch"]

TIMEOUT_GRACE: Final = 1.0
"""Seconds the agent waits past a probe's ``timeout`` before it cancels the run: a probe
bounds its own requests by ``timeout``, so a slow target is reported by the probe, with
its detail, rather than cut off by the agent."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check of one target: did it pass, how long it took, and what to do about it."""

    check: str
    target: str
    success: bool
    duration_seconds: float
    detail: str
    values: Mapping[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The shape ``flowops monitor --once -o json`` prints for a check."""
        found: dict[str, Any] = {
            "check": self.check,
            "target": self.target,
            "success": self.success,
            "duration_seconds": round(self.duration_seconds, 6),
            "detail": self.detail,
        }
        if self.values:
            found["values"] = dict(self.values)
        return found


class Probe(Protocol):
    """Something the agent runs every interval; see the module's docstring."""

    @property
    def kind(self) -> str:
        """Its family (``mlflow``, ``dvc``, ``model_server``, ``kafka``, ``service``): the
        check named in the failed result the agent records when a run times out."""
        ...

    @property
    def target(self) -> str:
        """What it looks at, as people name it (a URL, a path, a bootstrap address)."""
        ...

    @property
    def timeout(self) -> float:
        """Seconds its checks may take; the agent cancels a run :data:`TIMEOUT_GRACE` later."""
        ...

    async def run(self) -> Sequence[CheckResult]:
        """Probe once; never raises for the target's faults."""
        ...


class Stopwatch:
    """Seconds since it was made, for a check's ``duration_seconds``.

    >>> watch = Stopwatch()
    >>> watch.elapsed() >= 0
    True
    """

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self._start
