"""The request target's normal form (flowops/gateway/target.py): what routing, auth,
limits, traffic events and the upstream all see."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowops.gateway.target import (
    BadTarget,
    parse_target,
    remove_dot_segments,
    request_target,
    strip_segments,
)


@pytest.mark.parametrize(
    ("target", "path", "encoded"),
    [
        ("/models/a/x", "/models/a/x", "/models/a/x"),
        ("/models/a/../b/x", "/models/b/x", "/models/b/x"),
        ("/models/a/%2e%2e/b/x", "/models/b/x", "/models/b/x"),
        ("/models/a/%2E%2e/b/x", "/models/b/x", "/models/b/x"),
        ("/models/a/.%2E/b", "/models/b", "/models/b"),
        ("/models/./a/./x", "/models/a/x", "/models/a/x"),
        ("/models//b/x", "/models/b/x", "/models/b/x"),
        ("/../../etc/passwd", "/etc/passwd", "/etc/passwd"),
        ("/models/a/..", "/models/", "/models/"),
        ("/models/%61/x", "/models/a/x", "/models/a/x"),
        ("/models/caf%c3%a9", "/models/café", "/models/caf%C3%A9"),
        ("/models/a%20b", "/models/a b", "/models/a%20b"),
        ("/.well-known/x", "/.well-known/x", "/.well-known/x"),
        ("/models/a/..%2e/b", "/models/a/.../b", "/models/a/.../b"),
    ],
)
def test_a_target_has_one_normal_form(target: str, path: str, encoded: str) -> None:
    parsed = parse_target(target)
    assert (parsed.path, parsed.encoded) == (path, encoded)


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("/models/a%2f..%2fb", "encoded slash"),
        ("/models/a/..%2fb", "encoded slash"),
        ("/models/a/..%2Fb", "encoded slash"),
        ("/models/a\\..\\b", "backslash"),
        ("/models/a/..%5cb", "encoded backslash"),
        ("/models/a%00", "control character"),
        ("/models/a%0d%0aX: y", "control character"),
        ("/models/a%zz", "broken percent escape"),
        ("/models/a%4", "broken percent escape"),
        ("/models/a/..;/b", "parameters"),
        ("/models/a/%2e%2e;x=1/b", "parameters"),
        ("/models/a/..%3B/b", "parameters"),
        ("/models/b#/../a", "fragment"),
        ("*", "asterisk"),
        ("example.test:443", "expected a path"),
        ("ftp://example.test/x", "expected a path"),
        ("http://user@example.test/x", "no user"),
    ],
)
def test_ambiguous_targets_are_refused_with_a_reason(target: str, words: str) -> None:
    with pytest.raises(BadTarget, match=words) as refused:
        parse_target(target)
    assert refused.value.status == 400


def test_the_query_is_kept_as_sent_and_never_normalised() -> None:
    parsed = parse_target("/a/../b?next=/x/../y&z=%2f")
    assert (parsed.path, parsed.query) == ("/b", "?next=/x/../y&z=%2f")


def test_an_absolute_target_is_reduced_to_its_path_and_its_host_checked() -> None:
    parsed = request_target("GET", "http://Gw.test:8080/models/a/../b?q", "gw.test:8080")
    assert (parsed.path, parsed.query, parsed.authority) == ("/models/b", "?q", "gw.test:8080")
    assert request_target("GET", "https://gw.test", None).path == "/"
    assert request_target("GET", "http://gw.test:80/a", "gw.test").path == "/a"
    assert request_target("GET", "https://gw.test/a", "gw.test:443").path == "/a"
    with pytest.raises(BadTarget, match="not the Host header's"):
        request_target("GET", "http://other.test/models/b", "gw.test")


def test_connect_is_refused_with_405() -> None:
    with pytest.raises(BadTarget) as refused:
        request_target("CONNECT", "upstream.test:443", "upstream.test:443")
    assert refused.value.status == 405


@pytest.mark.parametrize(
    ("encoded", "prefix", "rest"),
    [
        ("/models/iris", "/models/iris", "/"),
        ("/models/iris/", "/models/iris", "/"),
        ("/models/iris/v1/x", "/models/iris", "/v1/x"),
        ("/models/caf%C3%A9/x", "/models/café", "/x"),
        ("/anything", "/", "/anything"),
    ],
)
def test_strip_segments_takes_the_prefix_off_the_encoded_path(
    encoded: str, prefix: str, rest: str
) -> None:
    assert strip_segments(encoded, prefix) == rest


_SEGMENT = st.one_of(
    st.sampled_from([".", "..", "", "%2e", "%2E%2e", ".%2e", "a", "b", "%41", "%c3%a9", "%20"]),
    st.text(alphabet="abc.-_~", max_size=4),
)
_TARGETS = st.lists(_SEGMENT, max_size=8).map(lambda segments: "/" + "/".join(segments))


@given(_TARGETS)
def test_normalising_twice_is_normalising_once(target: str) -> None:
    once = parse_target(target)
    again = parse_target(once.encoded)
    assert (again.path, again.encoded) == (once.path, once.encoded)


@given(_TARGETS)
def test_a_normal_path_has_no_dot_segment_and_no_empty_one(target: str) -> None:
    parsed = parse_target(target)
    for path in (parsed.path, parsed.encoded):
        inner = path.split("/")[1:-1]  # the last one may be empty: a trailing slash
        assert not {".", "..", ""} & set(inner)
        assert path.split("/")[-1] not in (".", "..")
        assert path.startswith("/")


@given(_TARGETS)
def test_the_decoded_and_encoded_paths_have_the_same_segments(target: str) -> None:
    parsed = parse_target(target)
    assert parsed.path.count("/") == parsed.encoded.count("/")


@given(st.text(alphabet="/.ab", max_size=20).map(lambda p: "/" + p))
def test_remove_dot_segments_agrees_with_the_fast_path(path: str) -> None:
    # a path the fast path would take as it is must be its own normal form
    if "//" not in path and "/." not in path:
        assert remove_dot_segments(path) == path
