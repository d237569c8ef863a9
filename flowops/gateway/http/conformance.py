"""RFC 9112's checks of a request head, and the refusal the listener answers with.

What is checked, and the status each failure gets, is said in
:mod:`flowops.gateway.http.listener`'s docstring and in docs/gateway.md ("Limits and
conformance").
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Final

import orjson
from multidict import CIMultiDict

__all__ = ["codings", "http_date", "nonconforming", "refusal_answer"]

REASONS: Final = {status.value: status.phrase for status in HTTPStatus}


def refusal_answer(status: int, reason: str) -> bytes:
    """A refusal's whole answer, ``Connection: close`` included."""
    code = REASONS[status].lower().replace(" ", "_").replace("-", "_")
    body = orjson.dumps({"error": code, "reason": reason})
    head = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nDate: {http_date()}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def nonconforming(method: str, version: str, headers: CIMultiDict[str]) -> tuple[int, str] | None:
    """Why a head cannot be served (RFC 9112), as a status and a reason; None if it can."""
    if version not in ("1.1", "1.0"):
        if version.startswith("0."):
            return 400, "HTTP/0.9 requests are not served"
        return 505, f"HTTP/{version} is not served here (HTTP/1.1 is)"
    if method == "CONNECT":  # nginx's answer too; llhttp would take it for an upgrade
        return 400, "CONNECT is not served: the gateway is no forward proxy"
    hosts = headers.getall("Host", ())
    if len(hosts) != 1:
        if hosts:
            return 400, "a request has one Host header (RFC 9112, 3.2)"
        if version == "1.1":
            return 400, "an HTTP/1.1 request names its Host (RFC 9112, 3.2)"
    elif hosts[0] not in _HOSTS_SEEN and not _valid_host(hosts[0]):
        return 400, f"not a valid Host: {hosts[0]!r}"
    if "Transfer-Encoding" in headers:
        if version == "1.0":  # RFC 9112, 6.1: the framing is faulty
            return 400, "an HTTP/1.0 request has no Transfer-Encoding (RFC 9112, 6.1)"
        if codings(headers) != ["chunked"]:
            return 501, "only the chunked transfer coding is understood"
    return None


def _valid_host(host: str) -> bool:
    """Whether ``host`` is RFC 3986's ``host [ ":" port ]``, remembered when it is: a
    worker sees few hosts, and the set's lookup costs a tenth of the match's."""
    if _HOST.fullmatch(host) is None:
        return False
    if len(_HOSTS_SEEN) >= 1024:  # a client sending many hosts only costs the match
        _HOSTS_SEEN.clear()
    _HOSTS_SEEN.add(host)
    return True


_HOSTS_SEEN: Final[set[str]] = set()
_HOST: Final = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")
"""RFC 3986's ``host [ ":" port ]``: an IP literal, or a registered name."""


def codings(headers: CIMultiDict[str]) -> list[str]:
    """A request's transfer codings, in order (``gzip, chunked``: ``["gzip", "chunked"]``).

    The parser undoes ``chunked`` only: a body with another coding would be forwarded
    still coded and no longer saying so, hence the 501 (RFC 9112, 6.1) for any other.
    """
    return [
        coding.strip().lower()
        for value in headers.getall("Transfer-Encoding")
        for coding in value.split(",")
        if coding.strip()
    ]


_date_cache: list[object] = [0, ""]


def http_date() -> str:
    """The ``Date`` header's value, made at most once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0], _date_cache[1] = now, formatdate(now, usegmt=True)
    return str(_date_cache[1])
