"""``/admin/routes``: the A/B splits' weights, read and changed by an operator.

For an identity in ``gateway.admin_identities`` (401 without credentials, 403 for
anyone else, as ``/admin/upstreams``):

* ``GET /admin/routes``: every route; for a split, each variant's version, configured
  weight, current weight and its last change (who, why, when, the alert), and the
  variant policy's state (``watching`` once it reads the alerts topic);
* ``PUT /admin/routes/<route>/variants/<variant>`` with ``{"weight": W, "reason": "..."}``:
  that variant's weight from the next request on, in every worker; 200 with the change;
* ``POST /admin/routes/<route>/restore`` with ``{"reason": "..."}``: every variant of the
  route back to its configured weight.

A change goes through :class:`~flowops.gateway.weights.VariantWeights` (checked,
logged, published). Bad JSON or a missing reason is 400, an unknown route or variant
404, a weight that would leave the route with no weight 409, another method 405 with
``Allow``. The path is the normalised one (:mod:`~flowops.gateway.target`): ``..`` is
resolved before the match and ``%2f`` refused, so ``/models/x/../../admin/routes``
is this endpoint, with its credentials, and a route name holds no slash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Final

import orjson

from flowops.gateway.auth import Identity
from flowops.gateway.http.messages import BodyTooLarge, Request, Response, json_response
from flowops.gateway.weights import Change, Override, VariantWeights, WeightRefused

__all__ = ["ADMIN_ROUTES", "MAX_ADMIN_BODY", "RoutesAdmin"]

ADMIN_ROUTES: Final = "/admin/routes"
MAX_ADMIN_BODY: Final = 8192
"""Bytes an admin request's body may hold (a weight and a reason)."""

Authorize = Callable[[Request], "Identity | Response"]


class RoutesAdmin:
    """Answers ``/admin/routes`` and below; ``authorize`` gives the admin identity of a
    request or the refusal to send, ``policy`` the variant policy's state."""

    def __init__(
        self,
        weights: VariantWeights,
        authorize: Authorize,
        policy: Callable[[], dict[str, Any]],
    ) -> None:
        self.weights = weights
        self._authorize = authorize
        self._policy = policy

    async def handle(self, request: Request, path: str) -> Response:
        """A request to ``path`` (normalised, ``/admin/routes`` or below it)."""
        identity = self._authorize(request)
        if isinstance(identity, Response):
            return identity
        parts = path[len(ADMIN_ROUTES) :].strip("/").split("/") if path != ADMIN_ROUTES else []
        try:
            return await self._dispatch(request, parts, identity)
        except WeightRefused as refused:
            return _error(refused)

    async def _dispatch(self, request: Request, parts: list[str], identity: Identity) -> Response:
        method = request.method
        if not parts:
            _allow(method, "GET", "HEAD")
            return json_response({"routes": self.view(), "policy": self._policy()})
        if len(parts) == 2 and parts[1] == "restore":
            _allow(method, "POST")
            body = await _body(request)
            reason = _reason(body)
            changes = self.weights.restore(parts[0], by=identity.key, reason=reason)
            return json_response({"changes": [_change(c) for c in changes]})
        if len(parts) == 3 and parts[1] == "variants":
            _allow(method, "PUT", "POST")
            body = await _body(request)
            weight = body.get("weight")
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise WeightRefused(400, "bad_weight", "'weight' must be a number")
            change = self.weights.set(
                parts[0], parts[2], float(weight), by=identity.key, reason=_reason(body)
            )
            return json_response(_change(change))
        raise WeightRefused(404, "not_found", "no such admin resource")

    def view(self) -> dict[str, Any]:
        """Every route's variants: configured and current weights, the last change."""
        overrides = self.weights.board.read()
        routes: dict[str, Any] = {}
        for route in self.weights.routes():
            changed = overrides.get(route.name, {})
            current = dict(self.weights.weights(route, overrides))
            routes[route.name] = {
                "model": route.model_name,
                "variant_policy": route.variant_policy is not None,
                "variants": {
                    v.name: {
                        "version": v.model_version,
                        "configured_weight": v.weight,
                        "weight": current[v.name],
                        "last_change": _override(changed.get(v.name)),
                    }
                    for v in route.variants
                },
            }
        return routes


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise _MethodRefused(allowed)


class _MethodRefused(WeightRefused):
    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__(405, "method_not_allowed", f"use {' or '.join(allowed)}")
        self.allowed = allowed


async def _body(request: Request) -> dict[str, Any]:
    try:
        raw = await request.read(MAX_ADMIN_BODY)
    except BodyTooLarge:
        raise WeightRefused(413, "body_too_large", f"more than {MAX_ADMIN_BODY} bytes") from None
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise WeightRefused(400, "bad_json", f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise WeightRefused(400, "bad_json", "the body must be a JSON object")
    return body


def _reason(body: dict[str, Any]) -> str:
    reason = body.get("reason")
    if not isinstance(reason, str):
        raise WeightRefused(400, "bad_reason", "'reason' (why, in words) is required")
    return reason


def _change(change: Change) -> dict[str, Any]:
    return asdict(change)


def _override(override: Override | None) -> dict[str, Any] | None:
    return None if override is None else asdict(override)


def _error(refused: WeightRefused) -> Response:
    headers: list[tuple[str, str]] = []
    if isinstance(refused, _MethodRefused):
        headers.append(("Allow", ", ".join(refused.allowed)))
    body = {"error": refused.code, "reason": refused.reason}
    return json_response(body, status=refused.status, headers=headers)
