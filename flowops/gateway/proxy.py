"""The request path: route, authenticate, limit, forward with retries, stream back, record.

:class:`Proxy` handles every request that is not the gateway's own (``/healthz``,
``/metrics``, ...). For one request:

0. its target, normalised once (:mod:`~flowops.gateway.target`; 400 for what it
   refuses): the one path that the route, the identity's scope, the traffic event, the
   access log and the upstream all see; and its client's address
   (:mod:`~flowops.gateway.forwarding`, by ``trusted_proxies``), the one rate limits and
   sticky splits count. A model named by ``model_from`` and another by a KServe path: 400;
1. the route whose prefix is the longest match of the path (404 when none);
2. the caller's identity when the route requires one (401, 403), a token from the
   route's rate limit (429 with ``Retry-After`` and ``RateLimit-*``; 503 when a shared
   store is down and the limit is set to deny then);
3. the body, read whole up to ``max_body_bytes`` (413 past it): the traffic event needs
   it, and a retry sends it again;
4. tries: an upstream from the pool (another one for each retry), the request with
   the headers :class:`~flowops.gateway.forwarding.Forwarding` makes (hop-by-hop ones
   and underscore twins dropped, ``X-Forwarded-For``, ``X-Real-IP``,
   ``X-Forwarded-Proto`` and ``X-Request-ID`` set), within the per-try and total
   timeouts. A connect error or a retried status goes to
   :class:`~flowops.gateway.policies.retry.RetryPolicy`; when no upstream is left the client
   gets a 503 with a JSON body at once;
5. the response streamed back as it arrives, its first ``capture_bytes`` kept;
6. after the response is handed to the listener: the exchange set aside for its traffic
   event, made in the loop's next round (:mod:`~flowops.gateway.traffic`), and a copy
   sent to the route's shadow, if it has one (:mod:`~flowops.gateway.shadow`).

What the proxy keeps of a route and of a request is in :mod:`~flowops.gateway.state`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from typing import Any, Final

import orjson

from flowops.gateway import split as splitting
from flowops.gateway.auth import (
    Authenticator,
    AuthFailure,
    Identity,
)
from flowops.gateway.callers import CallerKey, ModelSelector, models_in_path
from flowops.gateway.config import GatewaySettings, RouteSettings
from flowops.gateway.forwarding import HOP_BY_HOP, Forwarding, named_in_connection
from flowops.gateway.http.client import Response as UpstreamResponse
from flowops.gateway.http.client import UpstreamClient, UpstreamConnectError, UpstreamError
from flowops.gateway.http.deadline import Deadlines
from flowops.gateway.http.messages import BodyTooLarge, Request, Response, json_response
from flowops.gateway.metrics import GatewayMetrics
from flowops.gateway.policies.ratelimit.limiter import RateLimiters, rate_limit_headers
from flowops.gateway.policies.retry import RetryPolicy
from flowops.gateway.shadow import Shadows
from flowops.gateway.state import Exchange, RouteState, Variant
from flowops.gateway.target import BadTarget, Target, request_target, strip_segments
from flowops.gateway.traffic import Publish, Traffic
from flowops.gateway.upstreams import Lease, Outcome, Pool, UpstreamEvent, outcome_of_status
from flowops.gateway.weights import SplitSync, WeightBoard

__all__ = ["HOP_BY_HOP", "VARIANT_HEADER", "Proxy", "bad_target"]

log = logging.getLogger("flowops.gateway")
access_log = logging.getLogger("flowops.gateway.access")

VARIANT_HEADER: Final = "X-FlowOps-Variant"
"""Tells the client which side of an A/B split answered."""
_NOT_RELAYED: Final = HOP_BY_HOP | {
    "host",
    "content-length",
    "x-request-id",
    VARIANT_HEADER.lower(),
}
"""Upstream headers the client does not get: hop-by-hop ones, and those the gateway sets."""


class Proxy:
    """Forwards requests to the routes' pools; ``publish`` takes each request's events."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        client: UpstreamClient,
        authenticator: Authenticator,
        limiters: RateLimiters,
        metrics: GatewayMetrics,
        publish: Publish | None = None,
        previous: Proxy | None = None,
        weights: WeightBoard | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.authenticator = authenticator
        self.metrics = metrics
        kept: dict[str, RouteState] = {}
        if previous is not None:
            kept = {route.settings.name: route for route in previous.routes}
        self.routes: list[RouteState] = [
            _unchanged(kept.get(route.name), route) or self._route_state(route, limiters)
            for route in settings.routes
        ]
        # longest prefix first, and a route for one model before one for any
        self._by_prefix = sorted(
            self.routes,
            key=lambda r: (len(r.settings.prefix), r.settings.match_model is not None),
            reverse=True,
        )
        self._model_from = (
            None if settings.model_from is None else ModelSelector.parse(settings.model_from)
        )
        self.forwarding = Forwarding(settings.trusted_proxies, _headers_read(settings))
        self._deadlines = Deadlines()  # each try's: one timer for all, not one each
        self.traffic = Traffic(publish)
        self.shadows = Shadows(
            client, self._deadlines, metrics, self.traffic, capture_bytes=settings.capture_bytes
        )
        self._splits = None if weights is None else SplitSync(weights)
        if self._splits is not None:  # weights set at run time hold for new routes too
            self._splits.sync(self.routes, force=True)

    def _route_state(self, route: RouteSettings, limiters: RateLimiters) -> RouteState:
        def variant(name: str | None, version: str, upstreams: Any) -> Variant:
            pool = Pool(
                route.name if name is None else f"{route.name}/{name}",
                upstreams,
                balancing=route.balancing,
                outlier=route.outlier,
                breaker=route.breaker,
                on_event=self._upstream_event,
            )
            return Variant(name, version, pool)

        if route.variants:
            split = splitting.Split(
                [(variant(v.name, v.model_version, v.upstreams), v.weight) for v in route.variants]
            )
        else:
            split = splitting.Split([(variant(None, route.version, route.upstreams), 1.0)])
        limiter = (
            None if route.rate_limit is None else limiters.limiter(route.name, route.rate_limit)
        )
        shadow = route.shadow
        return RouteState(
            route,
            split,
            RetryPolicy(route.retry, retryable=route.retryable),
            limiter,
            sticky=None if route.sticky is None else CallerKey.parse(route.sticky),
            shadow=None
            if shadow is None
            else variant(splitting.SHADOW, shadow.version, shadow.upstreams),
        )

    def _upstream_event(self, event: UpstreamEvent) -> None:
        detail = f" ({event.detail})" if event.detail else ""
        log.log(
            event.level,
            "route %s: upstream %s %s%s",
            event.route,
            event.upstream,
            event.kind,
            detail,
        )
        self.metrics.upstream_event(event)

    def match(self, path: str, model: str | None = None) -> RouteState | None:
        """The route whose prefix is the longest match of ``path`` on a segment boundary,
        among those serving ``model`` (a route with no ``match_model`` serves any)."""
        for route in self._by_prefix:
            prefix, wanted = route.settings.prefix, route.settings.match_model
            if wanted is not None and wanted != model:
                continue
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return route
        return None

    # -- one request ----------------------------------------------------------------

    async def handle(self, request: Request, target: Target | None = None) -> Response | None:
        """Answer a proxied request: a whole response, or None when it was streamed.
        ``target`` is the request's, normalised (:func:`~flowops.gateway.target.request_target`);
        it is made here when not given."""
        # 128 random bits in hex, as uuid4().hex without building a UUID (2% of a request)
        # nor a getrandom() call: random's generator, reseeded in each forked worker
        request_id = request.headers.get("X-Request-ID") or f"{random.getrandbits(128):032x}"
        try:
            if target is None:
                target = _target_of(request)
            model, body = await self._model(request, target)
        except _Refusal as refusal:
            return refusal.response(request_id)
        route = self.match(target.path, model)
        if route is None:
            named = "" if self._model_from is None else f" for model {model!r}"
            return _error(404, "no_route", f"no route serves {target.path}{named}", request_id)
        client = self.forwarding.client_of(request.remote, request.headers)
        exchange = Exchange(
            route, route.split.items[0], request_id, time.monotonic(), target, client
        )
        try:
            response = await self._serve(request, exchange, body)
        except _Refusal as refusal:
            response = refusal.response(request_id)
            exchange.status = response.status
        self._finish(request, exchange)
        if route.shadow is not None and exchange.upstream is not None:
            self.shadows.mirror(request, exchange)
        return response

    async def _model(self, request: Request, target: Target) -> tuple[str | None, bytes | None]:
        """The model the request names by ``model_from`` (None without it), and its body
        when reading the name took it; a 400 when the path names another model."""
        if self._model_from is None:
            return None, None
        body = None
        if self._model_from.needs_body:  # the route depends on it: read it first
            body = await _read_body(request, self.settings.max_body_bytes)
        model = self._model_from.of(request.headers, body or b"")
        if model is not None and any(named != model for named in models_in_path(target.path)):
            reason = f"the request names model {model!r} but its path names another"
            raise _Refusal(400, "model_mismatch", reason)
        return model, body

    async def _serve(
        self, request: Request, exchange: Exchange, body: bytes | None
    ) -> Response | None:
        route = exchange.route
        try:
            exchange.identity = self._identify(request, route)
        except _UnknownKid:  # the issuer may have a new key: fetch its JWKS, try again
            await self.authenticator.refetch_keys()
            exchange.identity = self._identify(request, route, retry_kid=False)
        await self._limit(request, exchange)
        exchange.body = (
            await _read_body(request, self.settings.max_body_bytes) if body is None else body
        )
        exchange.variant = self._variant(request, exchange)
        route.retry.on_request()
        return await self._forward(request, exchange)

    def _variant(self, request: Request, exchange: Exchange) -> Variant:
        """The side of the route's split that answers this request."""
        route = exchange.route
        if len(route.split.items) == 1:
            return route.split.items[0]
        if self._splits is not None:
            self._splits.sync(self.routes)
        caller = None
        if route.sticky is not None:
            identity = None if exchange.identity.anonymous else exchange.identity.key
            caller = route.sticky.of(
                identity=identity, address=exchange.client, headers=request.headers
            )
        return route.split.choose(splitting.Split.point(route.settings.name, caller))

    def _identify(self, request: Request, route: RouteState, *, retry_kid: bool = True) -> Identity:
        settings = route.settings
        try:
            return self.authenticator.check(
                request.headers, settings.name, settings.model_name, required=settings.auth
            )
        except AuthFailure as failure:
            if retry_kid and failure.code == "unknown_kid" and self.authenticator.refetches:
                raise _UnknownKid from None
            self.metrics.auth_failure(settings.name, failure.code)
            headers = (
                {"WWW-Authenticate": failure.www_authenticate} if failure.www_authenticate else {}
            )
            raise _Refusal(failure.status, failure.code, failure.reason, headers) from None

    async def _limit(self, request: Request, exchange: Exchange) -> None:
        limiter = exchange.route.limiter
        if limiter is None:
            return
        identity = None if exchange.identity.anonymous else exchange.identity.key
        key = limiter.key_for(identity=identity, address=exchange.client, headers=request.headers)
        decision = await limiter.acquire(key)
        if not decision.allowed and decision.degraded:  # the shared store is down: not 429
            raise _Refusal(
                503,
                "rate_limit_unavailable",
                "the rate limit's store cannot be reached; try again shortly",
                rate_limit_headers(decision),
            )
        if not decision.allowed:
            self.metrics.rate_limited(exchange.route.settings.name)
            raise _Refusal(
                429,
                "rate_limited",
                "too many requests; see Retry-After",
                rate_limit_headers(decision),
            )

    async def _forward(self, request: Request, exchange: Exchange) -> Response | None:
        route = exchange.route
        timeout = route.settings.timeout
        deadline = exchange.started + timeout.total
        headers = self.forwarding.headers(
            request.headers,
            peer=request.remote,
            client=exchange.client,
            scheme=request.scheme,
            request_id=exchange.request_id,
            strip_credentials=route.settings.auth,
        )
        path = _upstream_path(exchange.target, route.settings)
        exchange.forwarded = (path, headers)
        tried: list[Any] = []
        while True:
            lease = exchange.variant.pool.acquire(exclude=tried)
            if lease is None:
                raise _Refusal(
                    503,
                    "no_upstream",
                    f"no upstream of route {exchange.variant.pool.route} is available",
                )
            tried.append(lease.upstream)
            exchange.tries += 1
            exchange.upstream = lease.upstream.url
            remaining = deadline - time.monotonic()
            outcome, upstream_response = await self._try(
                request, lease, path, headers, exchange, min(timeout.per_try, remaining)
            )
            status = upstream_response.status if upstream_response is not None else None
            if upstream_response is not None and status not in route.settings.retry.statuses:
                return await self._relay(request, lease, upstream_response, exchange, deadline)
            decision = route.retry.should_retry(
                method=request.method,
                attempt=exchange.tries,
                outcome=outcome,
                status=status,
                remaining=deadline - time.monotonic(),
            )
            if not decision.retry:
                if upstream_response is not None:  # a 5xx not retried: the client gets it
                    return await self._relay(request, lease, upstream_response, exchange, deadline)
                lease.finish(outcome)
                raise _failure_refusal(outcome, route.settings.name)
            self.metrics.retry(route.settings.name, outcome)
            if upstream_response is not None:
                upstream_response.release()
            lease.finish(outcome)
            await asyncio.sleep(decision.delay)

    async def _try(
        self,
        request: Request,
        lease: Lease,
        path: str,
        headers: list[tuple[str, str]],
        exchange: Exchange,
        budget: float,
    ) -> tuple[Outcome, UpstreamResponse | None]:
        """One try, up to the response's headers: its outcome, and the response if any."""
        try:
            async with self._deadlines.after(budget):
                response = await self.client.request(
                    request.method,
                    lease.upstream.url,
                    path,
                    headers,
                    exchange.body,
                    connect_timeout=exchange.route.settings.timeout.connect,
                    replayable=exchange.route.settings.retryable,
                )
        except TimeoutError:  # a connect timeout too (UpstreamConnectTimeoutError)
            return "timeout", None
        except UpstreamConnectError:
            return "connect_error", None
        except UpstreamError:
            return "reset", None
        exchange.headers_at = time.monotonic()
        return outcome_of_status(response.status), response

    async def _relay(
        self,
        request: Request,
        lease: Lease,
        upstream: UpstreamResponse,
        exchange: Exchange,
        deadline: float,
    ) -> Response | None:
        """The upstream's response to the client, keeping its first bytes: whole, in one
        write, when its body came with its head; else streamed as it comes."""
        latency = (exchange.headers_at or time.monotonic()) - lease.started_at
        lease.finish(outcome_of_status(upstream.status), latency)
        headers = _downstream_headers(upstream)
        headers.append(("X-Request-ID", exchange.request_id))
        if exchange.variant.name is not None:
            headers.append((VARIANT_HEADER, exchange.variant.name))
        exchange.status = upstream.status
        exchange.response_type = upstream.header("Content-Type")
        capture = self.settings.capture_bytes
        keep = upstream.header("Content-Encoding") is None and capture > 0
        body = upstream.body_if_complete() if request.method != "HEAD" else None
        if body is not None:  # head and body in one write
            exchange.captured = bytearray(body) if keep and len(body) <= capture else None
            return Response(upstream.status, body, headers, upstream.reason)
        exchange.captured = bytearray() if keep else None
        try:
            stream = await request.stream(
                upstream.status,
                headers,
                reason=upstream.reason,
                content_length=upstream.content_length,
            )
            async with self._deadlines.after(deadline - time.monotonic()):
                async for chunk in upstream:
                    await stream.write(chunk)
                    if exchange.captured is not None:
                        room = capture - len(exchange.captured)
                        if room < len(chunk):
                            exchange.captured = None  # too large to parse: not kept
                        else:
                            exchange.captured += chunk
            await stream.end()
        except (UpstreamError, TimeoutError, ConnectionResetError) as exc:
            # the client's connection is closed: its answer is cut short, visibly
            exchange.notes.append(f"response cut short: {type(exc).__name__}")
            exchange.captured = None
        finally:
            upstream.release()
        return None

    # -- after the response -----------------------------------------------------------

    def _finish(self, request: Request, exchange: Exchange) -> None:
        elapsed = time.monotonic() - exchange.started
        route = exchange.route.settings.name
        self.metrics.request(route, exchange.status, exchange.upstream, elapsed)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(_access_line(request, exchange, elapsed))
        self.traffic.set_aside(exchange, request, elapsed)

    async def close(self) -> None:
        """Cancel the shadow copies still under way (the gateway is stopping) and publish
        the exchanges still set aside."""
        await self.shadows.close()
        self.traffic.publish_pending()


# -- refusals ---------------------------------------------------------------------------


class _Refusal(Exception):  # noqa: N818 - not an error: an answer the gateway gives itself
    """An answer the gateway gives without (or instead of) an upstream's."""

    def __init__(
        self, status: int, code: str, reason: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason
        self.headers = dict(headers or {})

    def response(self, request_id: str) -> Response:
        return _error(self.status, self.code, self.reason, request_id, self.headers)


class _UnknownKid(Exception):  # noqa: N818 - a condition, handled at once
    """A token names a key id the JWKS held does not: worth one refetch."""


def _unchanged(state: RouteState | None, route: RouteSettings) -> RouteState | None:
    """A route's state from before a reload of the routes, when its settings are the
    same: its upstreams keep their health, breakers and outlier ejections."""
    return state if state is not None and state.settings == route else None


def _failure_refusal(outcome: Outcome, route: str) -> _Refusal:
    if outcome == "timeout":
        return _Refusal(
            504, "upstream_timeout", f"the upstream of route {route} did not answer in time"
        )
    return _Refusal(
        502, "upstream_unreachable", f"the upstream of route {route} could not be reached"
    )


def _target_of(request: Request) -> Target:
    """The request's normalised target; a refusal for one the gateway will not route."""
    try:
        return request_target(request.method, request.target, request.headers.get("Host"))
    except BadTarget as refused:
        raise _Refusal(refused.status, "bad_target", str(refused), _allow(refused)) from None


def _allow(refused: BadTarget) -> dict[str, str]:
    """The methods a 405 says the gateway serves."""
    return (
        {"Allow": "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"} if refused.status == 405 else {}
    )


def bad_target(refused: BadTarget, request_id: str | None = None) -> Response:
    """The answer to a target the gateway refuses (400, or 405 for ``CONNECT``)."""
    return _error(refused.status, "bad_target", str(refused), request_id, _allow(refused))


def _error(
    status: int,
    code: str,
    reason: str,
    request_id: str | None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    if request_id is None:
        return json_response(
            {"error": code, "reason": reason}, status=status, headers=[*(headers or {}).items()]
        )
    return json_response(
        {"error": code, "reason": reason, "request_id": request_id},
        status=status,
        headers=[*(headers or {}).items(), ("X-Request-ID", request_id)],
    )


# -- headers, paths, bodies -------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    """The whole request body; 413 as soon as it is known to pass ``limit``."""
    try:
        return await request.read(limit)
    except BodyTooLarge as exc:
        raise _Refusal(413, "body_too_large", str(exc)) from None


def _upstream_path(target: Target, route: RouteSettings) -> str:
    """The path (and query) the upstream gets: the normalised one routing matched, with
    or without the route's prefix."""
    path = target.encoded
    if route.strip_prefix and route.prefix != "/":
        path = strip_segments(path, route.prefix)
    return path + target.query


def _downstream_headers(upstream: UpstreamResponse) -> list[tuple[str, str]]:
    """The upstream's headers less hop-by-hop ones and those the gateway sets."""
    dropped = _NOT_RELAYED
    named = upstream.header("Connection")
    if named:
        dropped = dropped | named_in_connection(named)
    return [(k, v) for k, v in upstream.headers if k.lower() not in dropped]


def _headers_read(settings: GatewaySettings) -> list[str]:
    """The request headers the settings make the gateway read (``model_from``, callers
    keyed by a header): their underscore twins are not forwarded either."""
    named = [settings.model_from] if settings.model_from else []
    for route in settings.routes:
        named.append(route.sticky or "")
        if route.rate_limit is not None:
            named.append(route.rate_limit.key)
    return [text.partition(":")[2] for text in named if text.startswith("header:")]


def _access_line(request: Request, exchange: Exchange, elapsed: float) -> str:
    entry: dict[str, Any] = {
        "ts": round(time.time(), 3),
        "request_id": exchange.request_id,
        "method": request.method,
        "path": exchange.target.path,
        "route": exchange.route.settings.name,
        "status": exchange.status,
        "upstream": exchange.upstream,
        "tries": exchange.tries,
        "ms": round(elapsed * 1000, 2),
        "identity": exchange.identity.key,
        "client": exchange.client,
    }
    if exchange.notes:
        entry["notes"] = exchange.notes
    return orjson.dumps(entry).decode()
