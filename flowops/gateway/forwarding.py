"""What the upstream is told about a request: its headers, and who the client is.

**Who the client is.** The peer of the connection, unless the peer is one of
``gateway.trusted_proxies`` (CIDRs): then the address its ``X-Forwarded-For`` names, read
from the right and skipping the trusted proxies (nginx's ``real_ip_recursive``). That one
address is what rate limits, sticky splits and the access log count, so a client cannot
pick its own rate-limit bucket by sending ``X-Forwarded-For``.

**Forwarding headers.** From a trusted proxy, ``X-Forwarded-For`` and ``Forwarded`` are
kept and the peer appended; from anyone else they are replaced by the peer alone (a
``Forwarded`` only when the client sent one). ``X-Real-IP`` is always the client as
decided above; ``X-Forwarded-Proto`` and ``X-Request-ID`` are the gateway's.

**Headers dropped.** Hop-by-hop ones (RFC 9110 §7.6.1, and those ``Connection`` names),
``Host`` and ``Content-Length`` (the client's to set), the gateway's credentials on a
route it authenticated, and the *underscore twins* of every header the gateway reads or
sets: ``X_Api_Key``, ``X_Forwarded_For``, ``X_Model``... A server behind the gateway that
maps header names to CGI/WSGI variables (``HTTP_X_FORWARDED_FOR``) reads a twin as the
header itself, after the gateway checked (or replaced) the real one. nginx drops every
underscored name by default (``underscores_in_headers off``); the gateway drops only the
twins, because a name with an underscore is valid HTTP, and clients that use some for
their own purposes should not find them silently gone.

>>> forwarding = Forwarding(["10.0.0.0/8"])
>>> forwarding.client("10.1.2.3", "198.51.100.7, 10.9.9.9")
'198.51.100.7'
>>> forwarding.client("203.0.113.5", "198.51.100.7")
'203.0.113.5'
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

from multidict import CIMultiDict

from flowops.gateway.auth import CREDENTIAL_HEADERS as _CREDENTIAL_HEADERS

__all__ = ["FORWARDING_HEADERS", "HOP_BY_HOP", "Forwarding", "named_in_connection"]

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Headers that concern one connection only (RFC 9110 §7.6.1): never forwarded."""
FORWARDING_HEADERS: Final = frozenset(
    {"x-forwarded-for", "x-forwarded-proto", "x-request-id", "x-real-ip", "forwarded"}
)
"""Headers the gateway sets on each forwarded request, in place of the client's."""
_NOT_FORWARDED: Final = HOP_BY_HOP | {"host", "content-length"} | FORWARDING_HEADERS
_READ_OR_SET: Final = (
    _NOT_FORWARDED
    | _CREDENTIAL_HEADERS
    | {"x-forwarded-host", "x-forwarded-port", "x-flowops-variant", "content-type"}
)

_DROPPED: Final = {False: _NOT_FORWARDED, True: _NOT_FORWARDED | _CREDENTIAL_HEADERS}
"""Dropped from every request, by whether the route's credentials are stripped."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Forwarding:
    """The forwarding rules of one gateway: its trusted proxies, and the headers whose
    underscore twins are dropped (those it reads or sets, plus ``consumed``: the headers
    its settings name, such as ``model_from``'s)."""

    def __init__(self, trusted_proxies: Sequence[str] = (), consumed: Iterable[str] = ()) -> None:
        self.trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies
        )
        self.twins: frozenset[str] = _READ_OR_SET | {name.lower() for name in consumed}

    def trusts(self, address: str | None) -> bool:
        """Whether ``address`` is one of the trusted proxies."""
        if not self.trusted or address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def client_of(self, peer: str | None, headers: CIMultiDict[str]) -> str:
        """The client's address for a request from ``peer`` with these headers."""
        if not self.trusted:
            return peer or "unknown"
        return self.client(peer, _joined(headers, "X-Forwarded-For"))

    def client(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client's address: the peer's, or, from a trusted peer, the rightmost
        untrusted address of ``X-Forwarded-For`` (the leftmost if all are trusted; the
        last trusted one before an entry that is not an address)."""
        address = peer or "unknown"
        if not forwarded_for or not self.trusts(peer):
            return address
        for entry in reversed(forwarded_for.split(",")):
            candidate = entry.strip()
            try:
                ipaddress.ip_address(candidate)
            except ValueError:
                return address
            address = candidate
            if not self.trusts(candidate):
                return address
        return address

    def headers(
        self,
        request_headers: CIMultiDict[str],
        *,
        peer: str | None,
        client: str,
        scheme: str,
        request_id: str,
        strip_credentials: bool,
    ) -> list[tuple[str, str]]:
        """The headers the upstream gets (see the module's docstring)."""
        dropped = _DROPPED[strip_credentials]
        connection = request_headers.get("Connection")
        if connection is not None:
            dropped = dropped | named_in_connection(connection)
        twins = self.twins
        headers = [
            (name, value)
            for name, value in request_headers.items()
            if (lower := name.lower()) not in dropped
            and ("_" not in lower or lower.replace("_", "-") not in twins)
        ]
        hop = peer or "unknown"
        trusted = bool(self.trusted) and self.trusts(peer)
        earlier = _joined(request_headers, "X-Forwarded-For") if trusted else None
        headers.append(("X-Forwarded-For", f"{earlier}, {hop}" if earlier else hop))
        if "Forwarded" in request_headers:
            earlier = _joined(request_headers, "Forwarded") if trusted else None
            node = _forwarded_node(hop)
            headers.append(("Forwarded", f"{earlier}, for={node}" if earlier else f"for={node}"))
        headers.append(("X-Real-IP", client))
        headers.append(("X-Forwarded-Proto", scheme))
        headers.append(("X-Request-ID", request_id))
        return headers


def named_in_connection(value: str | None) -> frozenset[str]:
    """Headers a ``Connection`` header names, which are hop-by-hop too.

    >>> sorted(named_in_connection("keep-alive, X-Secret"))
    ['keep-alive', 'x-secret']
    """
    if not value:
        return frozenset()
    return frozenset(name.strip().lower() for name in value.split(",") if name.strip())


def _joined(headers: CIMultiDict[str], name: str) -> str | None:
    """Every value of a list-valued header, as one (several lines are one list)."""
    values = headers.getall(name, [])
    return ", ".join(values) if values else None


def _forwarded_node(address: str) -> str:
    """An address as RFC 7239 writes a node: IPv6 quoted in brackets."""
    return f'"[{address}]"' if ":" in address else address
