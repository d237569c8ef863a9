"""The start-up rules of ``flowops gateway`` that need no process: workers and limits,
the event loop, the listening socket."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from flowops.broker import free_port
from flowops.errors import ConfigError
from flowops.gateway import server
from flowops.gateway.config import GatewaySettings
from flowops.gateway.server import _listen, _loop_factory, check_workers

REDIS = {"rate": 10, "store": "redis", "redis_url": "redis://127.0.0.1:6379/0"}


def _route(name: str, rate_limit: dict[str, Any] | None) -> dict[str, Any]:
    route: dict[str, Any] = {
        "name": name,
        "prefix": f"/{name}",
        "upstreams": ["http://127.0.0.1:9001"],
    }
    if rate_limit is not None:
        route["rate_limit"] = rate_limit
    return route


@pytest.mark.parametrize(
    ("workers", "limits"),
    [
        (1, [{"rate": 10}]),  # one process: the memory store is exact
        (4, [None]),
        (4, [REDIS, None]),
    ],
)
def test_workers_are_accepted_with_limits_every_worker_shares(
    workers: int, limits: list[dict[str, Any] | None]
) -> None:
    routes = [_route(f"r{i}", limit) for i, limit in enumerate(limits)]
    check_workers(GatewaySettings(workers=workers, routes=routes))


def test_a_memory_limit_with_workers_names_the_route_and_the_way_out() -> None:
    routes = [_route("a", REDIS), _route("b", {"rate": 10, "store": "memory"})]
    with pytest.raises(ConfigError) as caught:
        check_workers(GatewaySettings(workers=3, routes=routes))
    assert caught.value.key == "gateway.routes[1].rate_limit.store"
    assert "gateway.workers is 3" in caught.value.reason
    assert "3 times the rate of route b" in caught.value.reason
    assert "store: redis" in caught.value.reason


@pytest.mark.parametrize(("wanted", "name"), [(True, "uvloop"), (False, "asyncio")])
def test_the_loop_is_uvloop_when_wanted(wanted: bool, name: str) -> None:
    factory, said = _loop_factory(wanted)
    loop = factory()
    try:
        assert said == name
        assert ("uvloop" in type(loop).__module__) is wanted
        assert isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()


def test_sockets_with_reuse_port_share_a_port() -> None:
    port = free_port()
    first = _listen(GatewaySettings(listen=f"127.0.0.1:{port}"), reuse_port=True)
    try:
        second = _listen(GatewaySettings(listen=f"127.0.0.1:{port}"), reuse_port=True)
        second.close()
    finally:
        first.close()


def test_a_taken_port_is_a_config_error_naming_listen() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="Address already in use") as caught:
            _listen(GatewaySettings(listen=f"127.0.0.1:{port}"), reuse_port=True)
    assert caught.value.key == "gateway.listen"


@pytest.mark.parametrize(
    ("limits", "set_to", "warns"),
    [
        ((4096, 8192), None, False),  # room enough already
        ((1024, 8192), (2304, 8192), False),  # raised to 2 a connection plus room
        ((1024, 1500), (1500, 1500), True),  # raised to the hard limit, and said
    ],
)
def test_the_open_file_limit_is_raised_for_max_connections(
    monkeypatch: pytest.MonkeyPatch,
    limits: tuple[int, int],
    set_to: tuple[int, int] | None,
    warns: bool,
) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(server.resource, "getrlimit", lambda _: limits)
    monkeypatch.setattr(server.resource, "setrlimit", lambda _, value: calls.append(value))
    said = server._file_room(1024)
    assert calls == ([] if set_to is None else [set_to])
    assert (said is not None and "gateway.limits.max_connections (1024)" in said) == warns


AUTH_ROUTE = {"name": "m", "prefix": "/m", "upstreams": ["http://127.0.0.1:9001"], "auth": True}


@pytest.mark.parametrize(
    ("settings", "warned"),
    [
        ({"listen": "0.0.0.0:8080", "routes": [AUTH_ROUTE]}, True),
        ({"listen": "10.1.2.3:8080", "admin_identities": ["key:ops"]}, True),
        ({"listen": "[::]:8080", "routes": [AUTH_ROUTE]}, True),
        ({"listen": "127.0.0.1:8080", "routes": [AUTH_ROUTE]}, False),
        ({"listen": "localhost:8080", "routes": [AUTH_ROUTE]}, False),
        ({"listen": "[::1]:8080", "routes": [AUTH_ROUTE]}, False),
        ({"listen": "0.0.0.0:8080", "routes": [_route("open", None)]}, False),
        (
            {
                "listen": "0.0.0.0:8443",
                "routes": [AUTH_ROUTE],
                "tls": {"cert_file": "c.pem", "key_file": "c.key"},
            },
            False,
        ),
    ],
)
def test_credentials_in_clear_text_on_a_network_are_warned_of(
    settings: dict[str, Any], warned: bool
) -> None:
    line = server.clear_text_warning(GatewaySettings(**settings))
    assert (line is not None) is warned
    if line is not None:
        assert settings["listen"] in line
        assert "gateway.tls" in line


def test_client_auth_needs_the_clients_ca() -> None:
    with pytest.raises(ValueError, match="client_auth: required needs ca_file"):
        GatewaySettings(tls={"cert_file": "c.pem", "key_file": "c.key", "client_auth": "required"})
