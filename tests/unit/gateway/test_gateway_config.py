"""The gateway section: the issue's minimal file as written, and each bad value named
by its key with the reason."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from flowops.config import load_settings
from flowops.errors import ConfigError
from flowops.gateway.callers import CallerKey, ModelSelector
from flowops.gateway.config import GatewaySettings, gateway_settings
from flowops.gateway.split import Split

MINIMAL = """
kafka:
  bootstrap: 127.0.0.1:9092
gateway:
  listen: 127.0.0.1:8080
  routes:
    - name: iris
      prefix: /models/iris
      upstreams: [http://127.0.0.1:9001, http://127.0.0.1:9002]
      balancing: round_robin
      retryable: true    # POST may be retried on another upstream
"""

A, B = "http://127.0.0.1:9001", "http://127.0.0.1:9002"


def settings(**gateway: Any) -> GatewaySettings:
    return gateway_settings(load_settings(overrides={"gateway": gateway}))


def refusal(**gateway: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        settings(**gateway)
    return caught.value


def test_the_minimal_file_as_written_has_defaults_for_the_rest(tmp_path: Any) -> None:
    path = tmp_path / "flowops.yaml"
    path.write_text(MINIMAL)
    gateway = gateway_settings(load_settings(str(path)))
    (route,) = gateway.routes
    assert [u.url for u in route.upstreams] == [A, B]
    assert (route.balancing.policy, route.retryable, route.auth, route.rate_limit) == (
        "round_robin",
        True,
        False,
        None,
    )
    assert (gateway.host, gateway.port, gateway.workers) == ("127.0.0.1", 8080, 1)
    assert yaml.safe_load(MINIMAL)["gateway"]["routes"][0]["name"] == route.name


@pytest.mark.parametrize(
    ("gateway", "key", "reason"),
    [
        ({"listen": "8080"}, "gateway.listen", "expected host:port"),
        ({"routes": [{"name": "a", "prefix": "/a"}]}, "gateway.routes.0", "either upstreams or"),
        (
            {
                "routes": [
                    {
                        "name": "a",
                        "prefix": "/a",
                        "upstreams": [A],
                        "variants": [{"name": "x", "weight": 1, "upstreams": [B]}],
                    }
                ]
            },
            "gateway.routes.0",
            "not both",
        ),
        (
            {"routes": [{"name": "a", "prefix": "/a", "upstreams": [A], "sticky": "client"}]},
            "gateway.routes.0",
            "sticky applies to variants",
        ),
        (
            {
                "routes": [
                    {
                        "name": "a",
                        "prefix": "/a",
                        "variants": [
                            {"name": "x", "weight": 1, "upstreams": [A]},
                            {"name": "x", "weight": 1, "upstreams": [B]},
                        ],
                    }
                ]
            },
            "gateway.routes.0",
            "two variants have the name 'x'",
        ),
        (
            {
                "routes": [
                    {
                        "name": "a",
                        "prefix": "/a",
                        "variants": [{"name": "x", "weight": 0, "upstreams": [A]}],
                    }
                ]
            },
            "gateway.routes.0.variants.0.weight",
            "greater than 0",
        ),
        (
            {"routes": [{"name": "a", "prefix": "/a", "upstreams": [A], "sticky": "cookie"}]},
            "gateway.routes.0.sticky",
            "expected api_key, client or header:<name>",
        ),
        (
            {"routes": [{"name": "a", "prefix": "/a", "upstreams": [A], "match_model": "m"}]},
            "gateway",
            "set model_from",
        ),
        ({"model_from": "query:model"}, "gateway.model_from", "expected header:<name> or body"),
        (
            {
                "routes": [
                    {"name": "a", "prefix": "/a", "upstreams": [A]},
                    {"name": "b", "prefix": "/a/", "upstreams": [B]},
                ]
            },
            "gateway",
            "two routes have the prefix and match_model ('/a', None)",
        ),
        ({"admin_identities": ["ops"]}, "gateway.admin_identities", "'key:<API key name>'"),
        ({"limits": {"head_timeout": 0}}, "gateway.limits.head_timeout", "greater than 0"),
        ({"limits": {"max_connections": 0}}, "gateway.limits.max_connections", "greater than"),
        (
            {"limits": {"max_head_bytes": 4096, "max_header_bytes": 8192}},
            "gateway.limits",
            "must hold a request line and a header line",
        ),
        ({"trusted_proxies": ["10.0.0.0/33"]}, "gateway.trusted_proxies", "expected a CIDR"),
        ({"upstream_pool": {"idle_timeout": 0}}, "gateway.upstream_pool.idle_timeout", "greater"),
        (
            {"routes": [{"name": "a", "prefix": "/a", "upstreams": [{"url": A, "tls": {}}]}]},
            "gateway.routes.0.upstreams.0",
            "tls applies to https:// upstreams",
        ),
        (
            {
                "routes": [
                    {
                        "name": "a",
                        "prefix": "/a",
                        "upstreams": [{"url": "https://m.test", "tls": {"cert_file": "c.pem"}}],
                    }
                ]
            },
            "gateway.routes.0.upstreams.0.tls",
            "give cert_file and key_file together",
        ),
        (
            {
                "routes": [
                    {"name": "a", "prefix": "/a", "upstreams": [A]},
                    {"name": "b", "prefix": "/b", "upstreams": [{"url": A, "idle_timeout": 1}]},
                ]
            },
            "gateway",
            "given twice with different idle_timeout or tls",
        ),
        (
            {
                "routes": [
                    {"name": "a", "prefix": "/a", "upstreams": [A], "shadow": {"percent": 0}},
                ]
            },
            "gateway.routes.0.shadow.upstreams",
            "Field required",
        ),
    ],
)
def test_a_bad_value_is_named_by_its_key(gateway: dict[str, Any], key: str, reason: str) -> None:
    error = refusal(**gateway)
    assert error.key == key
    assert reason in str(error)


def test_routes_may_share_a_prefix_when_they_serve_different_models() -> None:
    gateway = settings(
        model_from="header:X-Model",
        routes=[
            {"name": "a", "prefix": "/invocations", "match_model": "a", "upstreams": [A]},
            {"name": "b", "prefix": "/invocations", "match_model": "b", "upstreams": [B]},
            {"name": "any", "prefix": "/invocations", "upstreams": [B]},
        ],
    )
    assert [route.match_model for route in gateway.routes] == ["a", "b", None]


def test_a_split_route_names_each_variant_version() -> None:
    gateway = settings(
        routes=[
            {
                "name": "credit",
                "prefix": "/credit",
                "variants": [
                    {"name": "champion", "version": "7", "weight": 9, "upstreams": [A]},
                    {"name": "challenger", "weight": 1, "upstreams": [B]},
                ],
                "sticky": "api_key",
                "shadow": {"upstreams": [B], "percent": 10},
            }
        ]
    )
    (route,) = gateway.routes
    assert [v.model_version for v in route.variants] == ["7", "challenger"]
    assert route.shadow is not None
    assert (route.shadow.version, route.shadow.percent) == ("shadow", 10.0)


# --- the split and the caller keys --------------------------------------------------------


def test_a_split_gives_each_item_its_share_of_the_unit_interval() -> None:
    split = Split([("a", 1.0), ("b", 2.0), ("c", 1.0)])
    points = [i / 1000 for i in range(1000)]
    counts = {item: sum(split.choose(p) == item for p in points) for item in "abc"}
    assert counts == {"a": 250, "b": 500, "c": 250}
    assert split.choose(0.999_999_999_999) == "c"


def test_sticky_points_are_stable_per_route_and_spread_evenly() -> None:
    points = [Split.point("credit", f"h:{i}") for i in range(10_000)]
    assert points == [Split.point("credit", f"h:{i}") for i in range(10_000)]
    assert all(0 <= p < 1 for p in points)
    below = sum(p < 0.25 for p in points) / len(points)
    assert 0.23 < below < 0.27  # 0.25 expected, sd 0.0043
    assert Split.point("other", "h:1") != Split.point("credit", "h:1")


def test_an_empty_split_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one variant"):
        Split([])


def test_a_header_caller_key_is_a_digest_never_the_value() -> None:
    key = CallerKey.parse("header:Authorization")
    value = "Bearer secret-token-value"
    found = key.of(identity=None, address="10.0.0.1", headers={"Authorization": value})
    assert found.startswith("h:")
    assert "secret" not in found
    assert key.of(identity=None, address="10.0.0.1", headers={}) == "ip:10.0.0.1"


@pytest.mark.parametrize(
    ("body", "model"),
    [
        (b'{"model": "iris"}', "iris"),
        (b'{"model": 3}', None),
        (b'{"model": ""}', None),
        (b"[1, 2]", None),
        (b"not json", None),
        (b"", None),
    ],
)
def test_the_model_named_in_a_body(body: bytes, model: str | None) -> None:
    assert ModelSelector.parse("body:model").of({}, body) == model
