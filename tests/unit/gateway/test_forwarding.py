"""What the upstream is told (flowops/gateway/forwarding.py): forwarding headers by
trust, and the underscore twins of the headers the gateway reads or sets."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from flowops.gateway.forwarding import Forwarding


def forward(
    forwarding: Forwarding, peer: str, pairs: list[tuple[str, str]], *, strip: bool = True
) -> CIMultiDict[str]:
    headers = CIMultiDict(pairs)
    client = forwarding.client_of(peer, headers)
    sent = forwarding.headers(
        headers, peer=peer, client=client, scheme="http", request_id="r1", strip_credentials=strip
    )
    return CIMultiDict(sent)


SPOOFED = [
    ("X-Forwarded-For", "1.2.3.4"),
    ("Forwarded", "for=1.2.3.4"),
    ("X-Real-IP", "1.2.3.4"),
    ("X-Request-ID", "r0"),
]


def test_from_an_untrusted_peer_forwarding_headers_are_replaced_by_the_peer() -> None:
    sent = forward(Forwarding(["10.0.0.0/8"]), "203.0.113.9", SPOOFED)
    assert sent.getall("X-Forwarded-For") == ["203.0.113.9"]
    assert sent.getall("Forwarded") == ["for=203.0.113.9"]
    assert sent.getall("X-Real-IP") == ["203.0.113.9"]
    assert sent.getall("X-Request-ID") == ["r1"]


def test_from_a_trusted_proxy_they_are_appended_to_and_name_the_client() -> None:
    forwarding = Forwarding(["10.0.0.0/8", "::1/128"])
    pairs = [("X-Forwarded-For", "198.51.100.1, 1.2.3.4"), ("X-Forwarded-For", "10.0.0.2")]
    sent = forward(forwarding, "10.0.0.1", [*pairs, ("Forwarded", "for=1.2.3.4")])
    assert sent.getall("X-Forwarded-For") == ["198.51.100.1, 1.2.3.4, 10.0.0.2, 10.0.0.1"]
    assert sent.getall("Forwarded") == ["for=1.2.3.4, for=10.0.0.1"]
    assert sent.getall("X-Real-IP") == ["1.2.3.4"]  # rightmost untrusted, not the leftmost
    ipv6 = forward(forwarding, "::1", [("Forwarded", "for=x")])
    assert ipv6.getall("Forwarded") == ['for=x, for="[::1]"']


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", "10.0.0.7, 10.0.0.8", "10.0.0.7"),  # all trusted: the leftmost
        ("10.0.0.1", "not-an-ip, 10.0.0.8", "10.0.0.8"),  # garbage stops the walk
        ("10.0.0.1", "192.0.2.1, junk", "10.0.0.1"),
        ("192.0.2.50", "10.0.0.7", "192.0.2.50"),  # an untrusted peer's header is ignored
        (None, "1.2.3.4", "unknown"),
    ],
)
def test_the_client_address(peer: str | None, forwarded_for: str | None, client: str) -> None:
    assert Forwarding(["10.0.0.0/8"]).client(peer, forwarded_for) == client


def test_underscore_twins_of_headers_the_gateway_reads_or_sets_are_dropped() -> None:
    pairs = [
        ("X_Api_Key", "k"),
        ("x_forwarded_for", "1.2.3.4"),
        ("X_Real_IP", "1.2.3.4"),
        ("X_Model", "credit"),
        ("Transfer_Encoding", "chunked"),
        ("X_Custom_Thing", "kept"),
        ("X-Model", "iris"),
    ]
    sent = forward(Forwarding(consumed=["X-Model"]), "203.0.113.9", pairs)
    names = {name.lower() for name in sent}
    assert not {"x_api_key", "x_forwarded_for", "x_real_ip", "x_model", "transfer_encoding"} & names
    assert sent["X_Custom_Thing"] == "kept"
    assert sent["X-Model"] == "iris"


def test_credentials_are_dropped_only_on_routes_the_gateway_authenticated() -> None:
    pairs = [("X-API-Key", "k"), ("Authorization", "Bearer t")]
    assert "X-API-Key" not in forward(Forwarding(), "203.0.113.9", pairs)
    kept = forward(Forwarding(), "203.0.113.9", pairs, strip=False)
    assert (kept["X-API-Key"], kept["Authorization"]) == ("k", "Bearer t")
