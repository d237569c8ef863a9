"""What a request says about itself: who it is from, and which model it asks for.

**Callers.** Rate limits count per caller, and A/B splits stick to one.

A route names its caller key in a word (``rate_limit.key``, ``split.sticky``):

* ``api_key``: the identity auth found (an API key's name, a JWT subject), else the
  client's address;
* ``client``: the client's address;
* ``header:<name>``: a digest of that header's value (it may be a credential), else
  the address.

The kinds never collide:

>>> key = CallerKey.parse("header:X-User")
>>> key.of(identity=None, address="10.0.0.7", headers={"X-User": "ann"})[:2]
'h:'
>>> CallerKey.parse("api_key").of(identity="key:ci", address="10.0.0.7", headers={})
'id:key:ci'
>>> CallerKey.parse("api_key").of(identity=None, address="10.0.0.7", headers={})
'ip:10.0.0.7'

**Models.** Routes that share a prefix may each serve one model (``match_model``); the
gateway reads the model's name where ``gateway.model_from`` says: ``header:<name>``, or
``body:<field>``, a top-level string of a JSON object body.

>>> ModelSelector.parse("body:model").of({}, b'{"model": "iris", "instances": []}')
'iris'
>>> ModelSelector.parse("header:X-Model").of({"X-Model": "credit"}, b"")
'credit'

Some protocols name the model in the path too (KServe v1 ``/v1/models/{m}:predict``,
Open Inference / KServe v2 ``/v2/models/{m}/infer``); :func:`models_in_path` reads them,
so that the proxy can refuse a request whose header or body names another model than its
path (authorised as one model, served by another).

>>> models_in_path("/v1/models/credit:predict"), models_in_path("/v2/models/iris/versions/2/infer")
(['credit'], ['iris'])
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import orjson

__all__ = ["CallerKey", "KeySource", "ModelSelector", "models_in_path"]

KeySource: TypeAlias = Literal["api_key", "client", "header"]

_HEADER_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token (RFC 9110)
_MODEL_IN_PATH: Final = re.compile(r"/v1/models/([^/:]+)|/v2/models/([^/]+)")


def models_in_path(path: str) -> list[str]:
    """The models a (decoded, normalised) path names in KServe v1 or v2 form, in order;
    empty for paths of other protocols.

    >>> models_in_path("/models/iris/invocations")
    []
    """
    if "/models/" not in path:
        return []
    return [v1 or v2 for v1, v2 in _MODEL_IN_PATH.findall(path)]


@dataclass(frozen=True, slots=True)
class CallerKey:
    """How a route tells its callers apart."""

    source: KeySource
    header: str | None = None

    @classmethod
    def parse(cls, text: str) -> CallerKey:
        """``api_key``, ``client`` or ``header:<name>``; ValueError for anything else.

        >>> CallerKey.parse("header:")
        Traceback (most recent call last):
        ...
        ValueError: expected api_key, client or header:<name>, got 'header:'
        """
        if text == "api_key":
            return cls("api_key")
        if text == "client":
            return cls("client")
        name = text.removeprefix("header:")
        if name != text and _HEADER_NAME.match(name):
            return cls("header", name)
        raise ValueError(f"expected api_key, client or header:<name>, got {text!r}")

    def of(self, *, identity: str | None, address: str | None, headers: Mapping[str, str]) -> str:
        """The caller's key; ``headers`` should be case-insensitive (aiohttp's are)."""
        if self.source == "api_key" and identity:
            return "id:" + identity
        if self.header is not None:
            value = headers.get(self.header)
            if value:
                return "h:" + hashlib.blake2b(value.encode(), digest_size=16).hexdigest()
        return "ip:" + (address or "unknown")


@dataclass(frozen=True, slots=True)
class ModelSelector:
    """Where a request names its model: a header, or a field of its JSON body."""

    where: Literal["header", "body"]
    name: str

    @classmethod
    def parse(cls, text: str) -> ModelSelector:
        """``header:<name>`` or ``body:<field>``; ValueError for anything else.

        >>> ModelSelector.parse("query:model")
        Traceback (most recent call last):
        ...
        ValueError: expected header:<name> or body:<field>, got 'query:model'
        """
        where, _, name = text.partition(":")
        if where == "header" and _HEADER_NAME.match(name):
            return cls("header", name)
        if where == "body" and name:
            return cls("body", name)
        raise ValueError(f"expected header:<name> or body:<field>, got {text!r}")

    @property
    def needs_body(self) -> bool:
        """Whether the body must be read before the route is known."""
        return self.where == "body"

    def of(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """The model the request names, or None (no such header, not JSON, no field)."""
        if self.where == "header":
            return headers.get(self.name) or None
        try:
            payload: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        value = payload.get(self.name) if isinstance(payload, dict) else None
        return value if isinstance(value, str) and value else None
