"""The gateway's request handler: its own endpoints, the proxy, and their lifecycle.

:class:`Gateway` owns what lives as long as the server: the upstream client (keep-alive
connection pools, :mod:`flowops.gateway.http.client`), the health checks' aiohttp session, the
routes' pools and health checkers, the rate-limit stores, the traffic publisher and the
metrics. Its own endpoints:

* ``GET /healthz``: 200 while the process serves, with its pid (which worker answered);
* ``GET /readyz``: 200 when every route has an upstream it may send to, else 503 naming
  the routes that have none;
* ``GET /metrics``: Prometheus text format (:mod:`flowops.gateway.metrics`); with
  ``metrics_across`` (the workers' shared directory), the whole gateway's;
* ``GET /admin/upstreams``: every upstream's state as JSON, for an identity listed in
  ``gateway.admin_identities`` as ``key:<name>`` or ``jwt:<subject>`` (401 without
  credentials, 403 for anyone else);
* ``/admin/routes`` and below: the A/B splits' weights, read and changed by the same
  identities (:mod:`~flowops.gateway.admin`).

They answer GET and HEAD (``/admin/routes`` PUT and POST too); every other request goes
to :class:`~flowops.gateway.proxy.Proxy`. With ``leader`` (the only worker, or worker 0)
and a route with ``variant_policy``, the gateway also reads the alerts for it
(:mod:`~flowops.gateway.variant_policy`). :meth:`Gateway.handle` is what the
:class:`~flowops.gateway.http.listener.Listener` calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Final

import aiohttp

from flowops.config import Settings
from flowops.events import TrafficRow
from flowops.gateway.admin import ADMIN_ROUTES as _ADMIN_ROUTES
from flowops.gateway.admin import RoutesAdmin
from flowops.gateway.auth import Authenticator, AuthFailure, Identity, credential_files
from flowops.gateway.config import GatewaySettings, gateway_settings
from flowops.gateway.event_publisher import GatewayEventPublisher
from flowops.gateway.health import HealthChecker
from flowops.gateway.http.client import OriginOptions, UpstreamClient
from flowops.gateway.http.messages import Request, Response, json_response
from flowops.gateway.http.tls import ServerTls
from flowops.gateway.metrics import GatewayMetrics
from flowops.gateway.policies.ratelimit.limiter import RateLimiters
from flowops.gateway.proxy import Proxy, bad_target
from flowops.gateway.publisher import TrafficPublisher
from flowops.gateway.reload import FileWatcher
from flowops.gateway.target import BadTarget, request_target
from flowops.gateway.variant_policy import AlertWatcher, VariantPolicy
from flowops.gateway.weights import VariantWeights, WeightBoard

if TYPE_CHECKING:
    from flowops.gateway.policies.ratelimit.shared_store import SharedTable

__all__ = ["METRICS_REFRESH", "Gateway"]

log = logging.getLogger("flowops.gateway")

_METRICS_TYPE: Final = "text/plain; version=0.0.4"
_CONNECTIONS_PER_HOST: Final = 256
METRICS_REFRESH: Final = 1.0  # seconds between a worker's writes of its upstreams' state


class Gateway:
    """Builds the application from settings; :meth:`start` and :meth:`stop` its parts."""

    def __init__(
        self,
        settings: Settings,
        *,
        say: Callable[[str], None] = log.info,
        shared: SharedTable | None = None,
        metrics_across: Path | None = None,
        weights: WeightBoard | None = None,
        leader: bool = True,
    ) -> None:
        self.settings = settings
        self.gateway = gateway_settings(settings)
        self.say = say
        self.metrics = GatewayMetrics(metrics_across)
        self._metrics_shared = metrics_across is not None
        self._refreshing: asyncio.Task[None] | None = None
        self._jwks: asyncio.Task[None] | None = None  # fetches jwks_url at its interval
        self.limiters = RateLimiters(shared=shared)
        self.publisher = TrafficPublisher.for_kafka(settings.kafka, self.gateway.publish)
        self.events = GatewayEventPublisher.for_kafka(settings.kafka, self.gateway.publish)
        self.board = weights or WeightBoard()  # the workers': made before they fork
        self.weights = VariantWeights(self.board, lambda: self.gateway, self.events.offer)
        self.policy = VariantPolicy(self.weights)
        self._leader = leader
        self._watcher: AlertWatcher | None = None
        self.admin = RoutesAdmin(self.weights, self._admin_identity, self._policy_state)
        self.session: aiohttp.ClientSession | None = None
        self.client: UpstreamClient | None = None
        self.proxy: Proxy | None = None
        self.checkers: list[HealthChecker] = []
        self._retired_checkers: list[HealthChecker] = []  # of pools a reload dropped
        self.authenticator: Authenticator | None = None
        self.tls: ServerTls | None = None
        """The listener's TLS context (``gateway.tls``), reloaded when its files change."""
        self._watchers: list[FileWatcher] = []
        self._upstream_tls: dict[str, ssl.SSLContext] = {}  # shared with the health checks
        self._own: dict[str, Callable[[Request], Awaitable[Response]]] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/metrics": self._metrics,
            "/admin/upstreams": self._admin_upstreams,
        }

    async def start(self) -> None:
        """Load credentials, make the upstream clients, start checks and the publisher.

        Raises :class:`~flowops.errors.ConfigError` for credentials or TLS files it
        cannot load (before anything is opened).
        """
        # the files' fingerprints before they are read: a change meanwhile is not missed
        self._watch(credential_files(self.gateway.auth), "gateway credentials", self._reload_auth)
        tls_files = [path for _, u in self.gateway.all_upstreams() if u.tls for path in u.tls.files]
        self._watch(sorted(set(tls_files)), "upstream TLS files", self._reload_upstream_tls)
        if self.gateway.tls is not None:
            tls = self.gateway.tls
            self._watch(tls.files, "gateway.tls certificate", self._reload_tls)
            self.tls = ServerTls(tls)
        self.authenticator = await Authenticator.from_settings(self.gateway.auth)
        client = UpstreamClient(
            limit_per_host=_CONNECTIONS_PER_HOST,
            idle_timeout=self.gateway.upstream_pool.idle_timeout,
        )
        self._apply_upstream_options(client, self._upstream_options(self.gateway))
        self.client = client
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=_CONNECTIONS_PER_HOST)
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        self.proxy = Proxy(
            self.gateway,
            client=self.client,
            authenticator=self.authenticator,
            limiters=self.limiters,
            metrics=self.metrics,
            publish=self._publish,
            weights=self.board,
        )
        self._check_health(self.proxy)
        await self.publisher.start()
        await self.events.start()
        self._watch_alerts()
        for watcher in self._watchers:
            watcher.start()
        if self._metrics_shared:  # other workers answer scrapes too: keep this one's state there
            self._refreshing = asyncio.create_task(self._refresh_metrics(), name="metrics")
        jwt = self.gateway.auth.jwt
        if jwt is not None and jwt.jwks_url is not None:
            self._jwks = asyncio.create_task(self._refresh_jwks(jwt.jwks_refresh), name="jwks")

    def _check_health(self, proxy: Proxy) -> None:
        """A health checker for each of ``proxy``'s pools (kept for a pool that has one:
        a route a reload left unchanged); the metrics watch these pools from now on."""
        assert self.session is not None
        pools = [pool for route in proxy.routes for pool in route.pools]
        self.metrics.watch(pools, self.publisher, self._weights_now)
        checked = {id(checker.pool): checker for checker in self.checkers}
        self.checkers = []
        for route in proxy.routes:
            for pool in route.pools:
                checker = checked.pop(id(pool), None)
                if checker is None:
                    checker = HealthChecker(
                        pool, route.settings.health_check, self.session, tls=self._upstream_tls
                    )
                    checker.start()
                self.checkers.append(checker)
        self._retired_checkers.extend(checked.values())

    async def reload_routes(self, settings: Settings) -> None:
        """Serve the routes of ``settings`` (``gateway.routes`` and ``model_from``) from
        the next request on; requests under way finish on the routes they began with.

        Everything is built before the swap, so a ConfigError (a bad key, an unreadable
        upstream TLS file) leaves the routes as they were. A route whose settings did not
        change keeps its upstreams' health, breakers and ejections. Other keys of the
        section (listen, limits, tls, auth...) keep their values until a restart."""
        assert self.proxy is not None, "start() first"
        assert self.client is not None
        config = gateway_settings(settings)
        update = {"routes": config.routes, "model_from": config.model_from}
        merged = self.gateway.model_copy(update=update)
        options = self._upstream_options(merged)
        proxy = Proxy(
            merged,
            client=self.client,
            authenticator=self.proxy.authenticator,
            limiters=self.limiters,
            metrics=self.metrics,
            publish=self._publish,
            previous=self.proxy,
            weights=self.board,
        )
        self._apply_upstream_options(self.client, options)
        self.gateway, self.proxy = merged, proxy  # the old one's requests hold it meanwhile
        self._check_health(proxy)
        self._watch_alerts()
        retired, self._retired_checkers = self._retired_checkers, []
        for checker in retired:
            await checker.stop()

    def _watch_alerts(self) -> None:
        """Read the alerts for the variant policy, in the leader, once a route has one
        (a reload that removes every policy leaves the watcher on: it then acts on none)."""
        if not self._leader or self._watcher is not None:
            return
        if any(route.variant_policy is not None for route in self.gateway.routes):
            self._watcher = AlertWatcher(self.settings.kafka, self.policy)
            self._watcher.start()

    def _weights_now(self) -> list[tuple[str, str, float]]:
        """Every split route's variants' weights, from the board (for the metrics)."""
        try:
            overrides = self.board.read()
        except TimeoutError:
            return []
        return [
            (route.name, variant, weight)
            for route in self.gateway.routes
            if route.variants
            for variant, weight in self.weights.weights(route, overrides)
        ]

    def _policy_state(self) -> dict[str, object]:
        if not any(route.variant_policy is not None for route in self.gateway.routes):
            return {"state": "off"}
        if not self._leader:
            return {"state": "in worker 0", "pid": os.getpid()}
        return self.policy.state

    def _upstream_options(self, config: GatewaySettings) -> dict[str, OriginOptions]:
        """Each upstream's idle timeout and TLS context, by URL, for those that set
        either (TLS files read now: a bad one is a ConfigError naming its key)."""
        options: dict[str, OriginOptions] = {}
        default_idle = config.upstream_pool.idle_timeout
        for key, upstream in config.all_upstreams():
            if upstream.url in options or (upstream.tls is None and upstream.idle_timeout is None):
                continue
            context = None if upstream.tls is None else upstream.tls.context(f"{key}.tls")
            idle = upstream.idle_timeout or default_idle
            options[upstream.url] = OriginOptions(idle_timeout=idle, tls=context)
        return options

    def _apply_upstream_options(
        self, client: UpstreamClient, options: dict[str, OriginOptions]
    ) -> None:
        """The client's connections made from now on, and the health checks, use them."""
        for url, option in options.items():
            client.configure(url, option)
            if option.tls is not None:
                self._upstream_tls[url] = option.tls

    async def _reload_upstream_tls(self) -> None:
        """An upstream's CA, certificate or key file changed: every context made anew,
        then used for new connections (one bad file raises before any is used)."""
        assert self.client is not None
        self._apply_upstream_options(self.client, self._upstream_options(self.gateway))

    async def _reload_tls(self) -> None:
        assert self.tls is not None
        await self.tls.reload()

    def _watch(self, files: list[Path], what: str, reload: Callable[[], Awaitable[None]]) -> None:
        """Re-read ``files`` when they change (``gateway.reload``), once started."""
        if files and self.gateway.reload.enabled:
            watcher = FileWatcher(what, files, reload, interval=self.gateway.reload.interval)
            self._watchers.append(watcher)

    async def _reload_auth(self) -> None:
        """The credential files changed: load them all anew, then swap (a failure raises
        before anything is swapped, and the watcher keeps the previous ones)."""
        authenticator = await Authenticator.from_settings(self.gateway.auth)
        self.authenticator = authenticator
        if self.proxy is not None:
            self.proxy.authenticator = authenticator

    async def _refresh_jwks(self, interval: float) -> None:
        """Fetch the JWKS URL every ``jwks_refresh`` seconds (into the authenticator of
        the moment: a reload of the credential files makes a new one)."""
        while True:
            await asyncio.sleep(interval)
            if self.authenticator is not None:
                await self.authenticator.refetch_keys(unknown_kid=False)

    async def _refresh_metrics(self) -> None:
        while True:
            await asyncio.sleep(METRICS_REFRESH)
            self.metrics.refresh()

    async def stop(self) -> None:
        """Stop checks, deliver what the publisher holds (bounded), close connections."""
        for watcher in self._watchers:
            await watcher.stop()
        if self._watcher is not None:
            await self._watcher.stop()
        for task in (self._refreshing, self._jwks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for checker in self.checkers:
            await checker.stop()
        if self.proxy is not None:
            await self.proxy.close()
        unsent = await self.publisher.stop()
        if unsent:
            self.say(f"publisher: {unsent} traffic events not delivered at shutdown")
        unsent = await self.events.stop()
        if unsent:
            self.say(f"publisher: {unsent} gateway events not delivered at shutdown")
        await self.limiters.close()
        if self.client is not None:
            await self.client.close()
        if self.session is not None:
            await self.session.close()

    async def handle(self, request: Request) -> Response | None:
        """One request: the gateway's own endpoint for its path, else the proxy. The
        target is normalised here, once, so that ``/./metrics`` is ``/metrics`` too."""
        assert self.proxy is not None, "start() first"
        try:
            target = request_target(request.method, request.target, request.headers.get("Host"))
        except BadTarget as refused:
            return bad_target(refused)
        if request.method in ("GET", "HEAD"):
            own = self._own.get(target.path)
            if own is not None:
                return await own(request)
        if target.path == _ADMIN_ROUTES or target.path.startswith(_ADMIN_ROUTES + "/"):
            return await self.admin.handle(request, target.path)
        return await self.proxy.handle(request, target)

    def _publish(self, rows: list[TrafficRow]) -> None:
        for row in rows:
            self.publisher.offer(row)

    async def _healthz(self, request: Request) -> Response:
        return json_response({"status": "ok", "pid": os.getpid()})

    async def _readyz(self, request: Request) -> Response:
        assert self.proxy is not None
        down = [route.settings.name for route in self.proxy.routes if not route.available()]
        if down:
            return json_response({"status": "unready", "routes_without_upstream": down}, status=503)
        return json_response({"status": "ready"})

    async def _metrics(self, request: Request) -> Response:
        return Response(200, self.metrics.render(), [("Content-Type", _METRICS_TYPE)])

    def _admin_identity(self, request: Request) -> Identity | Response:
        """The request's identity when it is an admin's, else the refusal to send."""
        assert self.authenticator is not None
        try:
            identity = self.authenticator.authenticate(request.headers)
        except AuthFailure as failure:
            return _refused(failure)
        if identity.key not in self.gateway.admin_identities:
            return json_response(
                {"error": "forbidden", "reason": "not in gateway.admin_identities"},
                status=403,
            )
        return identity

    async def _admin_upstreams(self, request: Request) -> Response:
        assert self.proxy is not None
        identity = self._admin_identity(request)
        if isinstance(identity, Response):
            return identity
        routes = {
            pool.route: [asdict(status) for status in pool.snapshot()]
            for route in self.proxy.routes
            for pool in route.pools
        }
        return json_response({"routes": routes, "publisher": asdict(self.publisher.stats())})


def _refused(failure: AuthFailure) -> Response:
    challenge = failure.www_authenticate
    return json_response(
        {"error": failure.code, "reason": failure.reason},
        status=failure.status,
        headers=[("WWW-Authenticate", challenge)] if challenge else (),
    )
