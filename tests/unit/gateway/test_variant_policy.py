"""flowops.gateway.variant_policy: which alerts set which variant aside, idempotence, the
operator's later word, and the last variant with weight kept."""

from __future__ import annotations

from typing import Any

import pytest

from flowops.config import load_settings
from flowops.events import DriftAlert, VariantWeightEvent
from flowops.gateway.config import GatewaySettings, gateway_settings
from flowops.gateway.variant_policy import POLICY, VariantPolicy, alert_kind
from flowops.gateway.weights import VariantWeights, WeightBoard


def config(policy: dict[str, Any] | None = None, **route: Any) -> GatewaySettings:
    credit = {
        "name": "credit",
        "prefix": "/models/credit",
        "variants": [
            {"name": "champion", "version": "1", "weight": 9, "upstreams": ["http://127.0.0.1:1"]},
            {
                "name": "challenger",
                "version": "2",
                "weight": 1,
                "upstreams": ["http://127.0.0.1:2"],
            },
        ],
        "variant_policy": {} if policy is None else policy,
        **route,
    }
    return gateway_settings(load_settings(overrides={"gateway": {"routes": [credit]}}))


def alert(**fields: Any) -> DriftAlert:
    values: dict[str, Any] = {
        "alert_id": "a1",
        "model": "credit",
        "version": "2",
        "feature": "age",
        "test": "ks",
        "statistic": 0.3,
        "pvalue": 0.001,
        "threshold": 0.05,
        "window_start": 0.0,
        "window_end": 60.0,
        "window_index": 0,
        "n_reference": 1000,
        "n_current": 500,
        "severity": "critical",
        "reference": "profile",
        "detected_at": 1000.0,
        **fields,
    }
    return DriftAlert(**values)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def policy_for(
    settings: GatewaySettings, now: float = 2000.0
) -> tuple[VariantPolicy, list[VariantWeightEvent], Clock]:
    events: list[VariantWeightEvent] = []
    clock = Clock(now)
    weights = VariantWeights(WeightBoard(4096), lambda: settings, events.append, clock=clock)
    return VariantPolicy(weights), events, clock


def weight_of(policy: VariantPolicy, variant: str) -> float:
    route = policy.weights.routes()[0]
    return dict(policy.weights.weights(route, policy.weights.board.read()))[variant]


def test_an_alert_on_a_variants_version_sets_it_aside_naming_the_alert() -> None:
    policy, events, _ = policy_for(config())
    changes = policy.act(alert())
    assert [(c.variant, c.old, c.new, c.by, c.alert_id) for c in changes] == [
        ("challenger", 1.0, 0.0, POLICY, "a1")
    ]
    assert weight_of(policy, "challenger") == 0.0
    assert weight_of(policy, "champion") == 9.0
    assert events[0].action == "policy"
    assert events[0].alert_id == "a1"
    assert "alert a1" in events[0].reason


def test_the_same_alert_twice_changes_nothing() -> None:
    policy, events, _ = policy_for(config())
    assert len(policy.act(alert())) == 1
    assert policy.act(alert()) == []
    assert len(events) == 1


@pytest.mark.parametrize(
    ("policy", "fields", "acts"),
    [
        ({}, {}, True),
        ({}, {"severity": "warning"}, False),
        ({"min_severity": "warning"}, {"severity": "warning"}, True),
        ({}, {"feature": "performance", "test": "accuracy"}, True),
        ({"alerts": ["drift"]}, {"feature": "performance", "test": "accuracy"}, False),
        ({"alerts": ["performance"]}, {}, False),
        ({}, {"feature": "requests", "test": "error_rate"}, False),
        ({"alerts": ["error_rate"]}, {"feature": "requests", "test": "error_rate"}, True),
        ({"tests": ["psi"]}, {}, False),
        ({"tests": ["psi", "ks"]}, {}, True),
        ({}, {"model": "other"}, False),
        ({}, {"version": "3"}, False),
        ({}, {"feature": "prediction"}, True),
    ],
)
def test_what_the_policy_acts_on(
    policy: dict[str, Any], fields: dict[str, Any], acts: bool
) -> None:
    acting, _, _ = policy_for(config(policy))
    assert bool(acting.act(alert(**fields))) is acts


def test_kinds_of_alert() -> None:
    assert alert_kind(alert(feature="performance", test="roc_auc")) == "performance"
    assert alert_kind(alert(feature="requests", test="error_rate")) == "error_rate"
    assert alert_kind(alert(feature="prediction", test="psi")) == "drift"


def test_an_operator_restore_is_not_undone_by_an_old_alert_but_is_by_a_newer_one() -> None:
    policy, events, clock = policy_for(config())
    policy.act(alert(alert_id="a1", detected_at=1000.0))
    clock.now = 2100.0
    policy.weights.restore("credit", by="key:ops", reason="looked: fine")
    assert weight_of(policy, "challenger") == 1.0
    # another alert of that old window (another feature, read late): the operator decided
    assert policy.act(alert(alert_id="a2", feature="income", detected_at=1500.0)) == []
    assert weight_of(policy, "challenger") == 1.0
    # a window judged after the operator's word: set aside again
    assert len(policy.act(alert(alert_id="a3", detected_at=2200.0))) == 1
    assert weight_of(policy, "challenger") == 0.0
    assert [e.action for e in events] == ["policy", "restore", "policy"]


def test_the_last_variant_with_weight_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    policy, events, _ = policy_for(config())
    policy.weights.set("credit", "champion", 0.0, by="key:ops", reason="drain")
    assert policy.act(alert()) == []
    assert weight_of(policy, "challenger") == 1.0
    assert any("kept" in r.getMessage() and "no variant" in r.getMessage() for r in caplog.records)
    assert len(events) == 1  # the operator's only


def test_a_route_without_the_policy_is_left_alone() -> None:
    settings = config()
    plain = settings.model_copy(
        update={"routes": [settings.routes[0].model_copy(update={"variant_policy": None})]}
    )
    policy, events, _ = policy_for(plain)
    assert policy.act(alert()) == []
    assert events == []


def test_a_policy_needs_two_variants() -> None:
    from flowops.errors import ConfigError

    route = {
        "name": "m",
        "prefix": "/m",
        "upstreams": ["http://127.0.0.1:1"],
        "variant_policy": {},
    }
    with pytest.raises(ConfigError, match="variant_policy needs at least two variants"):
        gateway_settings(load_settings(overrides={"gateway": {"routes": [route]}}))
    with pytest.raises(ConfigError, match=r"gateway.routes.0.variant_policy.alerts"):
        config({"alerts": ["latency"]})
