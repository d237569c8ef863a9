"""The ``gateway`` section of the settings: where it listens, its routes, its policies.

Each policy's model lives beside the code that applies it (``upstreams.py``,
``breaker.py``, ``retry.py``, ``health.py``, ``auth.py``, ``ratelimit.py``,
``publisher.py``); this module puts them together. The smallest useful file::

    kafka:
      bootstrap: 127.0.0.1:9092
    gateway:
      listen: 127.0.0.1:8080
      routes:
        - name: iris
          prefix: /models/iris
          upstreams: [http://127.0.0.1:9001, http://127.0.0.1:9002]
          balancing: round_robin
          retryable: true    # POST may be retried on another upstream

>>> route = RouteSettings(name="iris", prefix="/models/iris", upstreams=["http://127.0.0.1:9001"])
>>> route.model_name, route.balancing.policy, route.timeout.total
('iris', 'round_robin', 30.0)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from flowops.config import Settings, check_listen, section
from flowops.gateway.auth import AuthSettings
from flowops.gateway.callers import CallerKey, ModelSelector
from flowops.gateway.health import HealthCheckSettings
from flowops.gateway.http.client import IDLE_TIMEOUT as _IDLE_TIMEOUT
from flowops.gateway.http.tls import TlsSettings
from flowops.gateway.policies.balancing.base import BalancingSettings
from flowops.gateway.policies.breaker import BreakerSettings
from flowops.gateway.policies.ratelimit.limiter import RateLimitSettings
from flowops.gateway.policies.retry import RetrySettings
from flowops.gateway.publisher import PublishSettings
from flowops.gateway.reload import ReloadSettings
from flowops.gateway.split import ShadowSettings, VariantSettings
from flowops.gateway.upstreams import OutlierSettings, UpstreamSettings
from flowops.gateway.variant_policy import VariantPolicySettings

__all__ = [
    "RESERVED_PREFIXES",
    "GatewaySettings",
    "LimitSettings",
    "RouteSettings",
    "TimeoutSettings",
    "UpstreamPoolSettings",
    "gateway_settings",
]

_NAME: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
RESERVED_PREFIXES: Final = ("/healthz", "/readyz", "/metrics", "/admin")
"""Paths the gateway answers itself; no route may claim them."""


class TimeoutSettings(BaseModel):
    """How long a request may take at an upstream (``routes[].timeout``)."""

    model_config = ConfigDict(extra="forbid")

    connect: float = Field(2.0, gt=0, le=600, description="seconds to connect to an upstream")
    per_try: float = Field(10.0, gt=0, le=3600, description="seconds one try may take in all")
    total: float = Field(30.0, gt=0, le=3600, description="seconds for all tries together")


class LimitSettings(BaseModel):
    """What one client may hold of a worker (``gateway.limits``), each checked as bytes
    arrive; the defaults and the answers are nginx's (docs/gateway.md, "Limits").

    >>> LimitSettings().max_head_bytes, LimitSettings().head_timeout
    (32768, 60.0)
    """

    model_config = ConfigDict(extra="forbid")

    max_request_line_bytes: int = Field(
        8192, ge=64, le=2**20, description="the request target; past it, 414 and the close"
    )
    max_header_bytes: int = Field(
        8192, ge=64, le=2**20, description="one header line; past it, 431 and the close"
    )
    max_head_bytes: int = Field(
        32768, ge=128, le=2**22, description="request line and headers; past it, 431"
    )
    head_timeout: float = Field(
        60.0, gt=0, le=3600, description="seconds for a head once begun; then 408, close"
    )
    body_timeout: float = Field(
        60.0, gt=0, le=3600, description="seconds between two reads of a body; then 408, close"
    )
    send_timeout: float = Field(
        60.0, gt=0, le=3600, description="seconds a client may leave an answer unread; close"
    )
    keep_alive_timeout: float = Field(
        75.0, gt=0, le=3600, description="seconds an idle connection is kept open"
    )
    max_connections: int = Field(
        1024, ge=1, le=2**20, description="connections a worker holds; past it, none accepted"
    )
    max_body_buffer_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        le=2**40,
        description="request body bytes a worker holds at once; past it, 503 and the close",
    )

    @model_validator(mode="after")
    def _head_holds_its_lines(self) -> LimitSettings:
        line = max(self.max_request_line_bytes, self.max_header_bytes)
        if self.max_head_bytes < line:
            raise ValueError(
                f"max_head_bytes ({self.max_head_bytes}) must hold a request line and a "
                f"header line of the largest size allowed ({line})"
            )
        return self


class UpstreamPoolSettings(BaseModel):
    """The gateway's connections to its upstreams (``gateway.upstream_pool``)."""

    model_config = ConfigDict(extra="forbid")

    idle_timeout: float = Field(
        _IDLE_TIMEOUT,
        gt=0,
        le=3600,
        description="seconds an idle upstream connection is kept; keep it below the "
        "servers' own keep-alive timeout (uvicorn's is 5)",
    )


class RouteSettings(BaseModel):
    """One route: a path prefix, the model servers behind it, and its policies."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME, description="the route's name, in metrics and logs")
    prefix: str = Field(description="path prefix it serves, e.g. /models/iris")
    strip_prefix: bool = Field(False, description="forward the path without the prefix")
    upstreams: list[UpstreamSettings] = Field(
        default_factory=list, description="the model servers (or variants: an A/B split)"
    )
    variants: list[VariantSettings] = Field(
        default_factory=list, description="an A/B split between model versions, by weight"
    )
    sticky: str | None = Field(
        None, description="api_key, client or header:<name>: a caller keeps its variant"
    )
    shadow: ShadowSettings | None = Field(None, description="a candidate that gets copies")
    variant_policy: VariantPolicySettings | None = Field(
        None, description="set a variant's weight to 0 on an alert on its version; none: off"
    )
    match_model: str | None = Field(
        None, description="serve only requests naming this model (gateway.model_from)"
    )
    balancing: BalancingSettings = Field(default_factory=BalancingSettings)
    retryable: bool = Field(
        False, description="retry any method (POST included), not only idempotent ones"
    )
    timeout: TimeoutSettings = Field(default_factory=TimeoutSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    outlier: OutlierSettings = Field(default_factory=OutlierSettings)
    health_check: HealthCheckSettings = Field(default_factory=HealthCheckSettings)
    rate_limit: RateLimitSettings | None = Field(None, description="none: no limit")
    auth: bool = Field(False, description="require an identity (gateway.auth) on this route")
    model: str | None = Field(
        None, pattern=_NAME, description="model name in traffic events; default: the name"
    )
    version: str = Field("1", min_length=1, description="model version in traffic events")
    features: list[str] | None = Field(
        None, description="feature names for payloads that carry none (lists of values)"
    )
    publish: bool = Field(True, description="publish this route's traffic to Kafka")

    @property
    def model_name(self) -> str:
        """The model name its traffic events carry."""
        return self.model or self.name

    def all_upstreams(self) -> Iterator[tuple[str, UpstreamSettings]]:
        """Every upstream of the route (its own, its variants', its shadow's), with the
        dotted key of its settings below the route's."""
        for i, upstream in enumerate(self.upstreams):
            yield f"upstreams.{i}", upstream
        for v, variant in enumerate(self.variants):
            for i, upstream in enumerate(variant.upstreams):
                yield f"variants.{v}.upstreams.{i}", upstream
        if self.shadow is not None:
            for i, upstream in enumerate(self.shadow.upstreams):
                yield f"shadow.upstreams.{i}", upstream

    @field_validator("sticky")
    @classmethod
    def _check_sticky(cls, value: str | None) -> str | None:
        if value is not None:
            CallerKey.parse(value)
        return value

    @model_validator(mode="after")
    def _upstreams_or_variants(self) -> RouteSettings:
        if bool(self.upstreams) == bool(self.variants):
            raise ValueError("give either upstreams or variants (an A/B split), not both")
        if self.sticky is not None and not self.variants:
            raise ValueError("sticky applies to variants; this route has none")
        if self.variant_policy is not None and len(self.variants) < 2:
            raise ValueError("variant_policy needs at least two variants to choose between")
        _unique("name", [variant.name for variant in self.variants], among="variants")
        return self

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"a prefix starts with '/', got {value!r}")
        trimmed = value.rstrip("/") or "/"
        if any(_covers(reserved, trimmed) for reserved in RESERVED_PREFIXES):
            raise ValueError(f"{trimmed} is the gateway's own ({', '.join(RESERVED_PREFIXES)})")
        return trimmed


class GatewaySettings(BaseModel):
    """``flowops gateway``: the listen address, the routes, auth, traffic publishing."""

    model_config = ConfigDict(extra="forbid")

    listen: str = Field("127.0.0.1:8080", description="host:port the gateway serves on")
    workers: int = Field(
        1, ge=1, le=64, description="processes serving the port together (SO_REUSEPORT)"
    )
    uvloop: bool = Field(True, description="run on uvloop's event loop when it is installed")
    routes: list[RouteSettings] = Field(default_factory=list, description="longest prefix wins")
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1, le=2**31, description="larger request bodies get 413"
    )
    capture_bytes: int = Field(
        1024 * 1024,
        ge=0,
        le=2**31,
        description="response bytes kept to read the prediction; larger ones are not parsed",
    )
    model_from: str | None = Field(
        None,
        description="where requests name their model, for routes' match_model: "
        "header:<name> or body:<field>",
    )
    limits: LimitSettings = Field(default_factory=LimitSettings)
    tls: TlsSettings | None = Field(None, description="terminate TLS (HTTPS); omitted: HTTP")
    auth: AuthSettings = Field(default_factory=AuthSettings)
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="CIDRs of proxies whose X-Forwarded-For names the client; "
        "from anyone else it is replaced by the peer's address",
    )
    publish: PublishSettings = Field(default_factory=PublishSettings)
    upstream_pool: UpstreamPoolSettings = Field(default_factory=UpstreamPoolSettings)
    reload: ReloadSettings = Field(default_factory=ReloadSettings)
    admin_identities: list[str] = Field(
        default_factory=list,
        description=(
            "who may read /admin/upstreams and read and change /admin/routes: "
            "'key:<API key name>' or 'jwt:<token subject>'"
        ),
    )

    @field_validator("admin_identities")
    @classmethod
    def _check_admins(cls, value: list[str]) -> list[str]:
        for identity in value:
            kind, sep, name = identity.partition(":")
            if not (sep and name and kind in ("key", "jwt")):
                raise ValueError(
                    f"expected 'key:<API key name>' or 'jwt:<subject>', got {identity!r}"
                )
        return value

    _check_listen = field_validator("listen")(check_listen)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"expected a CIDR such as 10.0.0.0/8, got {cidr!r}") from None
        return value

    @field_validator("model_from")
    @classmethod
    def _check_model_from(cls, value: str | None) -> str | None:
        if value is not None:
            ModelSelector.parse(value)
        return value

    def all_upstreams(self) -> Iterator[tuple[str, UpstreamSettings]]:
        """Every upstream of every route, with the dotted key of its settings."""
        for r, route in enumerate(self.routes):
            for key, upstream in route.all_upstreams():
                yield f"gateway.routes.{r}.{key}", upstream

    @model_validator(mode="after")
    def _one_connection_setting_a_url(self) -> GatewaySettings:
        seen: dict[str, tuple[object, object]] = {}
        for _, upstream in self.all_upstreams():
            setting = (upstream.idle_timeout, upstream.tls)
            if seen.setdefault(upstream.url, setting) != setting:
                raise ValueError(
                    f"upstream {upstream.url} is given twice with different idle_timeout or "
                    "tls: its connections are shared, so give them once alike"
                )
        return self

    @model_validator(mode="after")
    def _unique_routes(self) -> GatewaySettings:
        _unique("name", [route.name for route in self.routes])
        _unique("prefix and match_model", [(r.prefix, r.match_model) for r in self.routes])
        if self.model_from is None:
            for route in self.routes:
                if route.match_model is not None:
                    raise ValueError(
                        f"route {route.name} has match_model: set model_from "
                        "(header:<name> or body:<field>) to say where requests name it"
                    )
        return self

    @property
    def host(self) -> str:
        """The host part of ``listen``."""
        return self.listen.rpartition(":")[0]

    @property
    def port(self) -> int:
        """The port part of ``listen``."""
        return int(self.listen.rpartition(":")[2])


def gateway_settings(settings: Settings) -> GatewaySettings:
    """The ``gateway`` section, checked; a bad value is a ConfigError naming its key.

    The section stays a plain mapping in :class:`~flowops.config.Settings` so that
    commands other than the gateway neither import its policies nor fail on them.

    >>> from flowops.config import load_settings
    >>> gateway_settings(load_settings(overrides={"gateway": {"listen": "8080"}}))
    Traceback (most recent call last):
    ...
    flowops.errors.ConfigError: config: gateway.listen: Value error, expected host:port, got '8080'
    """
    return section(GatewaySettings, settings.gateway, "gateway")


def _covers(prefix: str, path: str) -> bool:
    """Whether ``prefix`` matches ``path`` on a segment boundary."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def _unique(what: str, values: list[Any], among: str = "routes") -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"two {among} have the {what} {value!r}")
        seen.add(value)
