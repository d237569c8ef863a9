"""The request target, normalised once: the one path that routing, authorisation, rate
limits, traffic events and the upstream all see.

A gateway that routes on one reading of a path and forwards another lets a client name
route ``a`` to the gateway and model ``b`` to the upstream: ``/models/a/../b/x`` matched
``a``, and nginx, Go and Java servers behind it resolved it to ``/models/b/x``.
:func:`parse_target` removes that gap. For an origin-form target (``/path?query``):

* percent-encoded *unreserved* characters (``%2e``, ``%41``...) are decoded, as RFC 3986
  §6.2.2.2 says they may always be: ``%2e%2e`` is ``..`` before anything looks at it;
* runs of slashes become one (nginx's ``merge_slashes``, on by default): ``/models//b``
  could otherwise miss route ``b``'s prefix here and reach it behind a server that
  merges them;
* then dot segments are removed (RFC 3986 §5.2.4); a ``..`` at the root stays there;
* an encoded slash (``%2f``), a backslash (``\\`` or ``%5c``), an encoded control
  character (``%00``-``%1f``, ``%7f``), a broken escape (``%zz``), a dot segment with
  parameters (``..;``, which Tomcat and Jetty resolve as ``..``) or a fragment (``#``)
  is refused (:class:`BadTarget`, a 400). Decoding ``%2f`` would split a segment the client said was
  one, and leaving it encoded lets servers that decode it (some Java, IIS, ASP.NET ones)
  see a path the routing never did; backslashes are separators to Windows-minded servers.
  No model server names a model or a verb with these, so refusing costs honest clients
  nothing, and one spelling of a path is simpler to reason about than two.

The query is kept as sent. The result has the path twice: ``path`` decoded (what routes
are written in, and what is matched) and ``encoded`` (what is forwarded; other escapes,
``%20`` or ``%c3%a9``, stay as they were, so the upstream decodes exactly what routing
decoded). Since a slash is never decoded, the two have the same segments, which is what
lets :func:`strip_segments` take a route's prefix off the encoded one.

The absolute form (``GET http://host/path``, RFC 9112 §3.2.2) is reduced to its path and
query, its authority returned for the caller to compare with ``Host``; the authority
form (``CONNECT host:port``) and the asterisk form (``OPTIONS *``) are refused: the
gateway tunnels nothing and answers for no server as a whole.

A target with no ``%``, ``\\``, ``//`` or ``/.`` in its path, nearly all of them, is
taken as it is after four scans in C.

>>> parse_target("/models/a/../b/x?q=1")
Target(path='/models/b/x', encoded='/models/b/x', query='?q=1', authority=None)
>>> parse_target("/models/a/%2e%2e/b").path
'/models/b'
>>> parse_target("/models/a%2f..%2fb")
Traceback (most recent call last):
...
flowops.gateway.target.BadTarget: an encoded slash (%2F) in the path is not accepted
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple
from urllib.parse import unquote, urlsplit

__all__ = [
    "BadTarget",
    "Target",
    "parse_target",
    "remove_dot_segments",
    "request_target",
    "strip_segments",
]

_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE: Final = re.compile(r"%(.{0,2})", re.DOTALL)
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_REFUSED: Final = {
    "2f": "an encoded slash (%2F)",
    "5c": "an encoded backslash (%5C)",
}


class BadTarget(ValueError):  # noqa: N818 - an answer for the client (400), not a fault
    """A request target the gateway will not route, answered with ``status`` (400, or
    405 for ``CONNECT``)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


class Target(NamedTuple):
    """A normalised request target (a tuple: one is made for every request, and a
    tuple is made five times faster than a frozen dataclass).

    ``path`` is decoded (routing), ``encoded`` is what the upstream gets (before any
    prefix is stripped), ``query`` is ``""`` or ``"?..."`` as sent, ``authority`` the
    host of an absolute-form target (else None).
    """

    path: str
    encoded: str
    query: str
    authority: str | None = None


def request_target(method: str, target: str, host: str | None) -> Target:
    """The target of a request as the gateway routes it: :func:`parse_target`, ``CONNECT``
    refused (405), and an absolute form's host required to be the ``Host`` header's.

    RFC 9112 §3.2.2 lets a server ignore ``Host`` for an absolute-form target; two hosts
    that disagree are refused instead, since a part behind the gateway could believe
    either.

    >>> request_target("GET", "http://a.test/x", "b.test")
    Traceback (most recent call last):
    ...
    flowops.gateway.target.BadTarget: the target's host a.test is not the Host header's b.test
    """
    if method == "CONNECT":
        raise BadTarget("CONNECT is not served: the gateway tunnels nothing", 405)
    parsed = parse_target(target)
    authority = parsed.authority
    if authority is not None and host is not None:
        scheme = target[:5].lower()
        if _without_default_port(host.strip().lower(), scheme) != _without_default_port(
            authority, scheme
        ):
            raise BadTarget(
                f"the target's host {authority} is not the Host header's {host.strip()}"
            )
    return parsed


def _without_default_port(authority: str, scheme: str) -> str:
    """``host:80`` for http (``:443`` for https) is ``host``."""
    default = ":443" if scheme == "https" else ":80"
    return authority.removesuffix(default)


def parse_target(target: str) -> Target:
    """The normalised form of a request target; :class:`BadTarget` when refused.

    >>> parse_target("http://example.test/a/./b?x")
    Target(path='/a/b', encoded='/a/b', query='?x', authority='example.test')
    >>> parse_target("/caf%C3%A9/%7e").encoded
    '/caf%C3%A9/~'
    """
    if not target.startswith("/"):
        return _absolute(target)
    if "#" in target:
        raise BadTarget("a fragment (#) does not belong in a request target")
    raw, mark, query = target.partition("?")
    if mark:
        query = mark + query
    if "%" not in raw and "\\" not in raw and "//" not in raw and "/." not in raw:
        return Target(raw, raw, query)  # the fast path: nothing to decode or remove
    if "\\" in raw:
        raise BadTarget("a backslash in the path is not accepted")
    encoded = remove_dot_segments(_merge_slashes(_decode_unreserved(raw)))
    path = unquote(encoded) if "%" in encoded else encoded
    if ";" in path and any(_dot_with_parameters(segment) for segment in path.split("/")):
        raise BadTarget("a dot segment with parameters (..;) is not accepted")
    return Target(path, encoded, query)


def _dot_with_parameters(segment: str) -> bool:
    """``..;x`` or ``.;x``: a dot segment to servers that drop path parameters first
    (Tomcat, Jetty), a name to everything else."""
    name, semicolon, _ = segment.partition(";")
    return bool(semicolon) and name in (".", "..")


def _absolute(target: str) -> Target:
    """An absolute-form target reduced to its path; other forms refused."""
    if target == "*":
        raise BadTarget("the asterisk form (OPTIONS *) is not served")
    scheme = target.partition(":")[0].lower()
    if scheme not in ("http", "https") or not target[len(scheme) :].startswith("://"):
        raise BadTarget("expected a path starting with '/', or http(s)://host/path")
    try:
        parts = urlsplit(target)
    except ValueError as exc:
        raise BadTarget(f"not a URL: {exc}") from None
    if not parts.netloc or parts.fragment or "@" in parts.netloc:
        raise BadTarget("an absolute target needs a host, and no user or fragment")
    rest = target[len(scheme) + 3 + len(parts.netloc) :] or "/"
    if not rest.startswith(("/", "?")):
        raise BadTarget("expected http(s)://host/path")
    inner = parse_target(rest if rest.startswith("/") else "/" + rest)
    return Target(inner.path, inner.encoded, inner.query, parts.netloc.lower())


def _decode_unreserved(raw: str) -> str:
    """Decode escapes of unreserved characters (upper-casing the others' hex digits);
    refuse encoded slashes, backslashes and controls, and broken escapes."""
    if "%" not in raw:
        return raw
    return _ESCAPE.sub(_one_escape, raw)


def _one_escape(match: re.Match[str]) -> str:
    digits = match.group(1)
    if len(digits) != 2 or not (digits[0] in _HEX and digits[1] in _HEX):
        raise BadTarget(f"a broken percent escape in the path: %{digits}")
    refused = _REFUSED.get(digits.lower())
    if refused is not None:
        raise BadTarget(f"{refused} in the path is not accepted")
    code = int(digits, 16)
    if code < 0x20 or code == 0x7F:
        raise BadTarget(f"an encoded control character (%{digits.upper()}) in the path")
    char = chr(code)
    return char if char in _UNRESERVED else "%" + digits.upper()


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path: ``.`` and ``..`` segments resolved, ``..``
    never above the root; a path that ended in a dot segment ends in ``/``.

    >>> remove_dot_segments("/a/b/c/./../../g")
    '/a/g'
    >>> remove_dot_segments("/../x/..")
    '/'
    """
    segments = path.split("/")
    out: list[str] = []
    for segment in segments[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    if segments[-1] in (".", ".."):
        out.append("")  # "/a/b/.." is the directory "/a/"
    return "/" + "/".join(out)


def _merge_slashes(path: str) -> str:
    while "//" in path:
        path = path.replace("//", "/")
    return path


def strip_segments(encoded: str, prefix: str) -> str:
    """``encoded`` without the leading segments that the decoded ``prefix`` has (the path
    is known to match the prefix once decoded), never empty.

    >>> strip_segments("/models/iris/invocations", "/models/iris")
    '/invocations'
    >>> strip_segments("/models/caf%C3%A9", "/models/café")
    '/'
    """
    if prefix == "/":
        return encoded
    if encoded.startswith(prefix):
        rest = encoded[len(prefix) :]
    else:  # an escape within the prefix: count segments instead of characters
        parts = encoded.split("/", prefix.count("/") + 1)
        rest = "/" + parts[-1] if len(parts) > prefix.count("/") + 1 else ""
    return rest if rest.startswith("/") else "/" + rest
