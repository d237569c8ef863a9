"""flowops.gateway.weights: the board shared by forked workers, the one checked path of
a change, and the splits a worker keeps at the board's weights."""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from typing import Any

import pytest

from flowops.config import load_settings
from flowops.events import VariantWeightEvent
from flowops.gateway.config import GatewaySettings, gateway_settings
from flowops.gateway.split import Split
from flowops.gateway.weights import (
    Override,
    SplitSync,
    VariantWeights,
    WeightBoard,
    WeightRefused,
    effective_weights,
)


def settings(**route: Any) -> GatewaySettings:
    credit = {
        "name": "credit",
        "prefix": "/models/credit",
        "variants": [
            {"name": "a", "version": "1", "weight": 3, "upstreams": ["http://127.0.0.1:9001"]},
            {"name": "b", "version": "2", "weight": 1, "upstreams": ["http://127.0.0.1:9002"]},
        ],
        **route,
    }
    iris = {"name": "iris", "prefix": "/models/iris", "upstreams": ["http://127.0.0.1:9003"]}
    return gateway_settings(load_settings(overrides={"gateway": {"routes": [credit, iris]}}))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def weights_of(config: GatewaySettings) -> tuple[VariantWeights, list[VariantWeightEvent]]:
    events: list[VariantWeightEvent] = []
    return VariantWeights(WeightBoard(4096), lambda: config, events.append, clock=Clock()), events


def current(weights: VariantWeights, config: GatewaySettings) -> dict[str, float]:
    return dict(weights.weights(config.routes[0], weights.board.read()))


def test_a_change_is_written_logged_and_published(caplog: pytest.LogCaptureFixture) -> None:
    config = settings()
    weights, events = weights_of(config)
    change = weights.set("credit", "b", 0.0, by="key:ops", reason="  latency  ")
    assert (change.old, change.new, change.configured, change.reason) == (1.0, 0.0, 1.0, "latency")
    assert current(weights, config) == {"a": 3.0, "b": 0.0}
    assert [(e.variant, e.old_weight, e.new_weight, e.by, e.action) for e in events] == [
        ("b", 1.0, 0.0, "key:ops", "set")
    ]
    assert events[0].version == "2"
    assert events[0].model == "credit"
    lines = [r.getMessage() for r in caplog.records if "variant weight" in r.getMessage()]
    assert lines == ["variant weight: route credit variant b 1 -> 0 by key:ops (set): latency"]


def test_restore_returns_to_the_configured_weights_and_keeps_who_did_it() -> None:
    config = settings()
    weights, events = weights_of(config)
    weights.set("credit", "b", 0.0, by="key:ops", reason="bad")
    weights.set("credit", "a", 7.0, by="key:ops", reason="more")
    changes = weights.restore("credit", by="jwt:alice", reason="fixed")
    assert current(weights, config) == {"a": 3.0, "b": 1.0}
    assert sorted((c.variant, c.old, c.new) for c in changes) == [("a", 7.0, 3.0), ("b", 0.0, 1.0)]
    last = weights.board.read()["credit"]["b"]
    assert (last.weight, last.by, last.reason) == (None, "jwt:alice", "fixed")
    # a variant already at its configured weight is not said to change
    assert weights.restore("credit", by="jwt:alice", reason="again") == []
    assert len(events) == 4


@pytest.mark.parametrize(
    ("route", "variant", "weight", "status", "code"),
    [
        ("nope", "b", 0.0, 404, "unknown_route"),
        ("iris", "b", 0.0, 404, "no_variants"),
        ("credit", "c", 0.0, 404, "unknown_variant"),
        ("credit", "b", -1.0, 400, "bad_weight"),
        ("credit", "b", float("nan"), 400, "bad_weight"),
        ("credit", "b", float("inf"), 400, "bad_weight"),
        ("credit", "b", 2e6, 400, "bad_weight"),
    ],
)
def test_bad_changes_are_refused_and_change_nothing(
    route: str, variant: str, weight: float, status: int, code: str
) -> None:
    config = settings()
    weights, events = weights_of(config)
    with pytest.raises(WeightRefused) as refused:
        weights.set(route, variant, weight, by="key:ops", reason="x")
    assert (refused.value.status, refused.value.code) == (status, code)
    assert weights.board.read() == {}
    assert events == []


@pytest.mark.parametrize("reason", ["", "   ", "a\nb", "x" * 501])
def test_a_reason_must_be_one_printable_line(reason: str) -> None:
    weights, _ = weights_of(settings())
    with pytest.raises(WeightRefused, match="reason must be printable"):
        weights.set("credit", "b", 0.0, by="key:ops", reason=reason)


def test_the_last_weight_of_a_route_cannot_go() -> None:
    config = settings()
    weights, events = weights_of(config)
    weights.set("credit", "b", 0.0, by="key:ops", reason="one")
    with pytest.raises(WeightRefused) as refused:
        weights.set("credit", "a", 0.0, by="key:ops", reason="two")
    assert (refused.value.status, refused.value.code) == (409, "no_weight_left")
    assert current(weights, config) == {"a": 3.0, "b": 0.0}
    assert len(events) == 1


def test_a_guard_sees_the_overrides_and_may_keep_them() -> None:
    config = settings()
    weights, events = weights_of(config)
    seen: list[dict[str, Any]] = []

    def guard(overrides: dict[str, Any]) -> None:
        seen.append(overrides)
        raise WeightRefused(409, "kept", "no")

    with pytest.raises(WeightRefused, match="no"):
        weights.set("credit", "b", 0.0, by="policy", reason="r", guard=guard)
    assert seen == [{}]
    assert weights.board.read() == {}
    assert events == []


def test_effective_weights_take_an_override_unless_it_was_restored() -> None:
    overrides = {"a": Override(0.0, "x", "r", 1.0), "b": Override(None, "x", "r", 2.0)}
    assert effective_weights([("a", 1.0), ("b", 2.0), ("c", 3.0)], overrides) == [
        ("a", 0.0),
        ("b", 2.0),
        ("c", 3.0),
    ]


def test_a_full_board_refuses_the_change_and_keeps_what_it_held() -> None:
    board = WeightBoard(size=128)
    board.write({"r": {"v": Override(1.0, "key:ops", "x", 1.0)}})
    with pytest.raises(WeightRefused) as refused:
        board.write({"r": {"v": Override(1.0, "key:ops", "x" * 200, 1.0)}})
    assert refused.value.status == 507
    assert board.read()["r"]["v"].reason == "x"


def _write_in_child(board: WeightBoard, done: Any) -> None:
    board.write({"credit": {"b": Override(0.0, f"key:{os.getpid()}", "from a child", 1.0)}})
    done.put(os.getpid())


def test_a_change_made_in_a_forked_worker_is_read_in_another() -> None:
    board = WeightBoard(4096)
    before = board.generation()
    context = multiprocessing.get_context("fork")
    done = context.SimpleQueue()
    child = context.Process(target=_write_in_child, args=(board, done))
    child.start()
    child.join(30)
    pid = done.get()
    done.close()
    assert child.exitcode == 0
    assert board.generation() == before + 1
    assert board.read()["credit"]["b"].by == f"key:{pid}"


class _Route:
    """What SplitSync reads of a route: its settings and its split."""

    def __init__(self, config: GatewaySettings, index: int) -> None:
        self.settings = config.routes[index]
        names = [v.name for v in self.settings.variants] or ["only"]
        weights = [v.weight for v in self.settings.variants] or [1.0]
        self.split: Split[str] = Split(list(zip(names, weights, strict=True)))


def test_splits_follow_the_board_and_skip_the_set_aside_variant() -> None:
    config = settings()
    weights, _ = weights_of(config)
    routes = [_Route(config, 0), _Route(config, 1)]
    sync = SplitSync(weights.board)
    sync.sync(routes, force=True)  # type: ignore[arg-type]
    assert routes[0].split.weights == [3.0, 1.0]
    weights.set("credit", "b", 0.0, by="key:ops", reason="bad")
    sync.sync(routes)  # type: ignore[arg-type]
    assert routes[0].split.weights == [3.0, 0.0]
    points = [i / 1000 for i in range(1000)] + [0.9999999999999999]
    assert Counter(routes[0].split.choose(p) for p in points) == {"a": 1001}
    assert routes[1].split.weights == [1.0]  # a route without variants is left alone
    weights.restore("credit", by="key:ops", reason="fixed")
    sync.sync(routes)  # type: ignore[arg-type]
    assert routes[0].split.weights == [3.0, 1.0]


def test_a_board_that_would_zero_every_variant_leaves_the_configured_weights() -> None:
    config = settings()
    board = WeightBoard(4096)
    board.write(
        {"credit": {n: Override(0.0, "key:ops", "r", 1.0) for n in ("a", "b")}}
    )  # as a reload that dropped the variant that had the weight could leave it
    routes = [_Route(config, 0)]
    SplitSync(board).sync(routes, force=True)  # type: ignore[arg-type]
    assert routes[0].split.weights == [3.0, 1.0]


def test_a_split_needs_some_weight() -> None:
    with pytest.raises(ValueError, match="weight above 0"):
        Split([("a", 0.0), ("b", 0.0)])
