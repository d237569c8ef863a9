"""The ``monitor`` section of the settings: what to probe, how often, where to say so.

Each target's model lives beside its probe (``probes/mlflow.py``, ``probes/dvc.py``,
``probes/serving.py``, ``probes/kafka.py``, ``probes/service.py``), the alert rules in
``alerts.py`` and the health events in ``health_events.py``; this module puts them
together. The smallest useful file::

    monitor:
      mlflow:
        - url: http://127.0.0.1:5000
      model_servers:
        - name: iris
          url: http://127.0.0.1:9001
          protocol: kserve_v2     # or mlflow, or http
      dvc:
        - path: /srv/models-repo

>>> from flowops.config import load_settings
>>> monitor_settings(load_settings(overrides={"monitor": {"interval": 0}}))
Traceback (most recent call last):
...
flowops.errors.ConfigError: config: monitor.interval: Input should be greater than or equal to 1
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowops.config import Settings, check_listen, section
from flowops.monitor.agent import RoundListener
from flowops.monitor.alerts import AlertSettings
from flowops.monitor.checks import Probe
from flowops.monitor.health_events import HealthEventSettings
from flowops.monitor.listeners import listening
from flowops.monitor.metrics import MonitorMetrics
from flowops.monitor.probes.dvc import DvcProbe, DvcTargetSettings
from flowops.monitor.probes.kafka import KafkaProbe, KafkaProbeSettings
from flowops.monitor.probes.mlflow import MlflowProbe, MlflowTargetSettings
from flowops.monitor.probes.service import ServiceProbe, ServiceSettings
from flowops.monitor.probes.serving import ModelServerProbe, ModelServerSettings

__all__ = ["MonitorSettings", "build_listeners", "build_probes", "monitor_settings"]


class MonitorSettings(BaseModel):
    """``flowops monitor``: the targets, the beat, the alerts and the health events."""

    model_config = ConfigDict(extra="forbid")

    listen: str = Field("127.0.0.1:9108", description="host:port of /metrics and /status")
    interval: float = Field(15.0, ge=1, le=3600, description="seconds between two rounds")
    max_connections: int = Field(
        100, ge=1, le=10_000, description="HTTP connections the probes share at most"
    )
    mlflow: list[MlflowTargetSettings] = Field(
        default_factory=list, description="MLflow tracking servers"
    )
    dvc: list[DvcTargetSettings] = Field(default_factory=list, description="DVC repositories")
    model_servers: list[ModelServerSettings] = Field(
        default_factory=list, description="model servers (KServe v2, MLflow, plain HTTP)"
    )
    kafka: KafkaProbeSettings | None = Field(
        None, description="Kafka: metadata, topics, consumer lag; none: not probed"
    )
    services: list[ServiceSettings] = Field(
        default_factory=list, description="FlowOps services' readiness (gateway, workers)"
    )
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    health_events: HealthEventSettings = Field(default_factory=HealthEventSettings)

    _check_listen = field_validator("listen")(check_listen)


def monitor_settings(settings: Settings) -> MonitorSettings:
    """The ``monitor`` section, checked; a bad value is a ConfigError naming its key."""
    return section(MonitorSettings, settings.monitor, "monitor")


def build_probes(
    settings: Settings, monitor: MonitorSettings, session: aiohttp.ClientSession
) -> list[Probe]:
    """One probe per configured target, HTTP ones sharing ``session``."""
    probes: list[Probe] = []
    probes += [MlflowProbe(target, session) for target in monitor.mlflow]
    probes += [DvcProbe(target) for target in monitor.dvc]
    probes += [ModelServerProbe(target, session) for target in monitor.model_servers]
    if monitor.kafka is not None:
        probes.append(KafkaProbe(monitor.kafka, settings))
    probes += [ServiceProbe(target, session) for target in monitor.services]
    return probes


@asynccontextmanager
async def build_listeners(
    settings: Settings,
    monitor: MonitorSettings,
    session: aiohttp.ClientSession,
    metrics: MonitorMetrics,
) -> AsyncIterator[list[RoundListener]]:
    """The alert rules and health events the section asks for, started and stopped."""
    async with listening(
        settings.kafka, monitor.alerts, monitor.health_events, session, metrics
    ) as listeners:
        yield listeners
