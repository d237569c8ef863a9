"""The readiness of a FlowOps service: the gateway's ``/readyz``, a stream worker's ``/metrics``.

One check, ``service.ready``, per service:

* ``protocol: readyz`` (the gateway, and any service with a readiness endpoint): ready when
  ``GET url`` answers 2xx; on any other status the detail carries the reason the JSON body
  gives (the gateway names the routes without an upstream);
* ``protocol: stream_worker``: a stream worker serves no ``/readyz``, only ``/metrics``
  (``streams.metrics_port``); it is ready when it answers and has partitions of
  ``flowops.traffic`` assigned (``flowops_stream_partitions``, 0 while it waits for its
  group). The check's values are ``partitions`` and ``lag`` (the worker's own
  ``flowops_stream_consumer_lag``, summed).

Its request is :func:`flowops.monitor.probes.http.fetch`, as the model servers' probe's.

>>> ServiceSettings(name="gateway", url="http://127.0.0.1:8080/readyz").protocol
'readyz'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowops.events import Topics
from flowops.monitor.checks import CheckResult
from flowops.monitor.probes.http import HttpAnswer, Unreachable, check_http_url, fetch

__all__ = [
    "ServiceProbe",
    "ServiceSettings",
    "unready_reason",
    "worker_samples",
]


class ServiceSettings(BaseModel):
    """A FlowOps service whose readiness the monitor checks."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="how people name it: the check's target")
    url: str = Field(
        description="its readiness endpoint (http://127.0.0.1:8080/readyz), or a stream "
        "worker's /metrics (http://127.0.0.1:6066/metrics)"
    )
    protocol: Literal["readyz", "stream_worker"] = Field(
        "readyz", description="readyz: 2xx is ready; stream_worker: partitions assigned"
    )
    timeout: float = Field(5.0, gt=0, le=600, description="seconds to wait for the answer")

    _check_url = field_validator("url")(check_http_url)


# -- the probe ---------------------------------------------------------------------------


class ServiceProbe:
    """``service.ready`` of one FlowOps service; see the module's docstring."""

    kind: Final = "service"

    def __init__(self, settings: ServiceSettings, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self._session = session

    @property
    def target(self) -> str:
        return self.settings.name

    @property
    def timeout(self) -> float:
        return self.settings.timeout

    async def run(self) -> Sequence[CheckResult]:
        url = self.settings.url
        found = await fetch(self._session, "GET", url, timeout=self.settings.timeout)
        if isinstance(found, Unreachable):
            return [self._result(False, found.seconds, found.detail)]
        if self.settings.protocol == "stream_worker":
            return [self._worker(found)]
        if 200 <= found.status < 300:
            return [self._result(True, found.seconds, f"ready ({found.status})")]
        reason = unready_reason(found)
        detail = f"not ready: {reason} (GET {url} answered {found.status}); see its log"
        return [self._result(False, found.seconds, detail)]

    def _worker(self, found: HttpAnswer) -> CheckResult:
        url = self.settings.url
        if found.status != 200:
            detail = f"GET {url} answered {found.status}: is this a stream worker's /metrics?"
            return self._result(False, found.seconds, detail)
        try:
            samples = worker_samples(found.body.decode(errors="replace"))
        except ValueError:
            samples = {}
        if "partitions" not in samples:
            detail = f"{url} has no flowops_stream_partitions: is it a stream worker's /metrics?"
            return self._result(False, found.seconds, detail)
        partitions = int(samples["partitions"])
        if partitions == 0:
            detail = (
                f"no partition of {Topics.TRAFFIC} assigned: the worker is joining its "
                "consumer group, or there are more workers than partitions (kafka.partitions)"
            )
            return self._result(False, found.seconds, detail, samples)
        detail = f"ready: {partitions} partition(s) of {Topics.TRAFFIC}, lag {samples['lag']:g}"
        return self._result(True, found.seconds, detail, samples)

    def _result(
        self, success: bool, seconds: float, detail: str, values: Mapping[str, float] | None = None
    ) -> CheckResult:
        return CheckResult("service.ready", self.target, success, seconds, detail, values or {})


def unready_reason(found: HttpAnswer) -> str:
    """Why a readiness endpoint says no, from its JSON body (``reason``, ``error``, or its
    other fields), else the body's start.

    >>> body = b'{"status": "unready", "routes_without_upstream": ["iris", "fraud"]}'
    >>> unready_reason(HttpAnswer(503, body, 0.0))
    'routes_without_upstream: iris, fraud'
    >>> unready_reason(HttpAnswer(503, b'{"reason": "warming up"}', 0.0))
    'warming up'
    """
    body = found.json()
    if not isinstance(body, dict):
        return found.excerpt() or "no reason given"
    for key in ("reason", "error", "message"):
        if isinstance(body.get(key), str):
            return str(body[key])
    parts = [f"{key}: {_text(value)}" for key, value in body.items() if key != "status"]
    return "; ".join(parts) or f"status {_text(body.get('status'))}"


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def worker_samples(page: str) -> dict[str, float]:
    """``partitions`` of ``flowops.traffic`` and the summed ``lag`` from a worker's page
    (``partitions`` absent when the page has no such gauge).

    >>> worker_samples('flowops_stream_partitions{topic="flowops.traffic"} 2.0\\n')
    {'lag': 0.0, 'partitions': 2.0}
    """
    found: dict[str, float] = {"lag": 0.0}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == "flowops_stream_partitions":
                if sample.labels.get("topic") == Topics.TRAFFIC:
                    found["partitions"] = sample.value
            elif sample.name == "flowops_stream_consumer_lag":
                found["lag"] += sample.value
    return found
