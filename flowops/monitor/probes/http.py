"""The one HTTP request of the monitor's HTTP probes (FlowOps services and model servers).

:func:`fetch` never raises for the server's faults: it answers :class:`Unreachable` with
what a person should look at, or the :class:`HttpAnswer`.

>>> check_http_url("http://127.0.0.1:8080/")
'http://127.0.0.1:8080'
>>> HttpAnswer(503, b'{"status": "unready"}', 0.01).json()
{'status': 'unready'}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson

from flowops._version import __version__
from flowops.monitor.checks import Stopwatch

__all__ = ["USER_AGENT", "HttpAnswer", "Unreachable", "check_http_url", "fetch"]

USER_AGENT: Final = f"flowops-monitor/{__version__}"
_EXCERPT: Final = 200
"""Characters of a body quoted in a detail."""


def check_http_url(value: str) -> str:
    """The URL without a trailing slash; a ValueError unless it is http(s)."""
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """An HTTP answer: its status, its body, and how long it took."""

    status: int
    body: bytes
    seconds: float

    def excerpt(self) -> str:
        """The start of the body on one line, for a detail."""
        text = " ".join(self.body.decode(errors="replace").split())
        return text if len(text) <= _EXCERPT else f"{text[:_EXCERPT]}..."

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


@dataclass(frozen=True, slots=True)
class Unreachable:
    """A request that got no HTTP answer; ``detail`` says why and what to look at."""

    detail: str
    seconds: float


async def fetch(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    timeout: float,
    body: bytes | None = None,
) -> HttpAnswer | Unreachable:
    """``method url`` (a JSON ``body`` if given) within ``timeout`` seconds."""
    watch = Stopwatch()
    headers = {"User-Agent": USER_AGENT}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        async with session.request(
            method,
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=max(timeout, 0.001)),
            allow_redirects=False,
        ) as response:
            found = await response.read()
    except aiohttp.ClientConnectorError as exc:
        return Unreachable(_connect_detail(exc), watch.elapsed())
    except TimeoutError:
        detail = f"no answer from {url} within {timeout:.3g} s: the server is hung or overloaded"
        return Unreachable(detail, watch.elapsed())
    except (aiohttp.ClientError, ValueError) as exc:
        detail = f"{method} {url} failed: {type(exc).__name__}: {exc}"
        return Unreachable(detail, watch.elapsed())
    return HttpAnswer(response.status, found, watch.elapsed())


def _connect_detail(exc: aiohttp.ClientConnectorError) -> str:
    where = f"{exc.host}:{exc.port}"
    if isinstance(exc.os_error, ConnectionRefusedError):
        return f"cannot connect to {where}: connection refused; is the server running there?"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve {exc.host}: check the host name in the URL"
    reason = exc.os_error.strerror or str(exc.os_error)
    return f"cannot connect to {where}: {reason}"
