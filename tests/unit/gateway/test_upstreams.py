"""flowops.gateway.upstreams: balancing policies, outlier ejection and the pool's
bookkeeping, on a fake clock with seeded randomness (real upstream servers are in
tests/integration/test_gateway_health.py)."""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flowops.gateway.policies.balancing.base import BalancingPolicy, BalancingSettings
from flowops.gateway.policies.breaker import BreakerSettings
from flowops.gateway.upstreams import (
    OutlierSettings,
    Pool,
    Upstream,
    UpstreamEvent,
    UpstreamSettings,
    UpstreamStatus,
    outcome_of_status,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_pool(
    *upstreams: str | dict[str, Any],
    policy: BalancingPolicy = "round_robin",
    clock: Clock | None = None,
    events: list[UpstreamEvent] | None = None,
    seed: int = 7,
    **settings: Any,
) -> Pool:
    urls = upstreams or ("http://a:1", "http://b:1", "http://c:1")
    return Pool(
        "iris",
        list(urls),
        balancing=BalancingSettings(policy=policy),
        clock=clock or Clock(),
        rng=random.Random(seed),
        on_event=None if events is None else events.append,
        **settings,
    )


def name(upstream: Upstream | None) -> str:
    assert upstream is not None
    return upstream.url.removeprefix("http://").removesuffix(":1")


def picks(pool: Pool, n: int, finish: bool = True) -> list[str]:
    """``n`` requests, each finished as ``ok`` before the next (when ``finish``)."""
    chosen = []
    for _ in range(n):
        lease = pool.acquire()
        assert lease is not None
        chosen.append(name(lease.upstream))
        if finish:
            lease.finish("ok", latency=0.01)
    return chosen


def fail(pool: Pool, upstream: Upstream, times: int, outcome: Any = "http_error") -> None:
    for _ in range(times):
        pool.started(upstream).finish(outcome)


# --- settings ---------------------------------------------------------------------------


def test_a_route_needs_no_settings() -> None:
    assert BalancingSettings().policy == "round_robin"
    assert OutlierSettings().enabled
    assert UpstreamSettings.model_validate("http://127.0.0.1:9001/").url == "http://127.0.0.1:9001"


def test_short_forms_of_upstreams_and_balancing() -> None:
    assert UpstreamSettings.model_validate({"url": "https://m.example:8443/v2", "weight": 3}) == (
        UpstreamSettings(url="https://m.example:8443/v2", weight=3)
    )
    assert BalancingSettings.model_validate("ewma") == BalancingSettings(policy="ewma")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:9001", "expected http://host"),
        ("ftp://models:21", "expected http://host"),
        ("http://user:secret@models:9001", "credentials"),
        ("http://models:9001/?version=2", "no query"),
        ("http://models:99999", "not a URL"),
        ("http://models:0", "port 0"),
    ],
)
def test_bad_upstream_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        UpstreamSettings.model_validate(url)

    error = caught.value.errors()[0]
    assert error["loc"] == ("url",)
    assert message in error["msg"]
    assert "secret" not in str(caught.value.errors()[0]["msg"])


class Route(BaseModel):
    """How the gateway's config nests these models; the loc becomes the dotted key."""

    model_config = ConfigDict(extra="forbid")

    upstreams: list[UpstreamSettings] = Field(min_length=1)
    balancing: BalancingSettings = Field(default_factory=BalancingSettings)
    outlier: OutlierSettings = Field(default_factory=OutlierSettings)


@pytest.mark.parametrize(
    ("route", "loc"),
    [
        ({"balancing": "fastest"}, ("balancing", "policy")),
        ({"balancing": {"policy": "ewma", "decay": 3}}, ("balancing", "decay")),
        ({"upstreams": ["http://a:1", {"url": "http://b:1", "weight": 0}]},
         ("upstreams", 1, "weight")),
        ({"outlier": {"base_ejection_time": 60, "max_ejection_time": 30}},
         ("outlier", "max_ejection_time")),
        ({"outlier": {"consecutive_failures": 0}}, ("outlier", "consecutive_failures")),
    ],
)  # fmt: skip
def test_invalid_settings_name_their_key(route: dict[str, Any], loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        Route.model_validate({"upstreams": ["http://a:1"]} | route)

    assert caught.value.errors()[0]["loc"] == loc


def test_a_pool_needs_an_upstream() -> None:
    with pytest.raises(ValueError, match="at least one upstream"):
        Pool("iris", [])


@pytest.mark.parametrize(
    ("status", "outcome"), [(200, "ok"), (302, "ok"), (429, "ok"), (500, "http_error")]
)
def test_outcome_of_status(status: int, outcome: str) -> None:
    assert outcome_of_status(status) == outcome


# --- policies ---------------------------------------------------------------------------


def test_round_robin_takes_each_in_turn() -> None:
    assert picks(make_pool(), 7) == ["a", "b", "c", "a", "b", "c", "a"]


def test_weighted_is_smooth_as_nginx() -> None:
    pool = make_pool(
        {"url": "http://a:1", "weight": 5}, "http://b:1", "http://c:1", policy="weighted"
    )

    assert picks(pool, 14) == list("aabacaa" * 2)


POLICIES: list[BalancingPolicy] = ["round_robin", "weighted", "least_request", "ewma"]


@pytest.mark.parametrize("policy", POLICIES)
def test_equal_weights_spread_evenly(policy: BalancingPolicy) -> None:
    pool = make_pool(policy=policy)

    counts = Counter(picks(pool, 9000))

    for upstream in "abc":
        assert counts[upstream] == pytest.approx(3000, rel=0.05), counts


@pytest.mark.parametrize("policy", ["weighted", "least_request"])
def test_spread_follows_the_weights(policy: BalancingPolicy) -> None:
    pool = make_pool(
        {"url": "http://a:1", "weight": 6},
        {"url": "http://b:1", "weight": 3},
        {"url": "http://c:1", "weight": 1},
        policy=policy,
    )

    counts = Counter(picks(pool, 10_000))

    assert counts["a"] == pytest.approx(6000, rel=0.03), counts
    assert counts["b"] == pytest.approx(3000, rel=0.05), counts
    assert counts["c"] == pytest.approx(1000, rel=0.1), counts


def test_least_request_never_picks_the_busy_one_while_others_are_idle() -> None:
    pool = make_pool(policy="least_request")
    busy = pool.upstreams[0]
    for _ in range(10):
        pool.started(busy)

    counts = Counter(picks(pool, 1000))

    assert counts["a"] == 0
    assert counts["b"] + counts["c"] == 1000


def test_least_request_keeps_requests_in_flight_level() -> None:
    pool = make_pool(policy="least_request")

    picks(pool, 300, finish=False)

    in_flight = [u.outstanding for u in pool.upstreams]
    assert sum(in_flight) == 300
    assert max(in_flight) - min(in_flight) <= 2, in_flight


def serve(pool: Pool, clock: Clock, latencies: dict[str, float], n: int) -> Counter[str]:
    """``n`` requests one after the other, each taking its upstream's latency."""
    counts: Counter[str] = Counter()
    for _ in range(n):
        lease = pool.acquire()
        assert lease is not None
        took = latencies[name(lease.upstream)]
        clock.now += took
        lease.finish("ok")
        counts[name(lease.upstream)] += 1
    return counts


def test_ewma_prefers_the_fast_upstream() -> None:
    clock = Clock()
    pool = make_pool("http://fast:1", "http://slow:1", policy="ewma", clock=clock)

    counts = serve(pool, clock, {"fast": 0.010, "slow": 0.100}, 2000)

    assert counts["slow"] >= 1  # measured once: an unmeasured upstream is tried
    assert counts["fast"] / 2000 > 0.99, counts


def test_ewma_sends_to_the_slow_upstream_when_the_fast_one_is_loaded() -> None:
    clock = Clock()
    pool = make_pool("http://fast:1", "http://slow:1", policy="ewma", clock=clock)
    serve(pool, clock, {"fast": 0.010, "slow": 0.100}, 10)

    counts = Counter(picks(pool, 55, finish=False))

    # latency x (outstanding + 1): 0.010 x 10 = 0.100 x 1, so about one in ten goes slow
    assert 3 <= counts["slow"] <= 8, counts
    assert counts["fast"] + counts["slow"] == 55


def test_ewma_latency_jumps_up_and_decays() -> None:
    upstream = Upstream("http://a:1")
    upstream.observe(0.010, now=0.0, decay=10.0)
    upstream.observe(0.200, now=1.0, decay=10.0)

    assert upstream.latency(1.0, 10.0) == pytest.approx(0.200)  # the peak, at once
    upstream.observe(0.010, now=11.0, decay=10.0)
    # one time constant later, the average has moved most of the way back down
    expected = 0.200 * math.exp(-1) + 0.010 * (1 - math.exp(-1))
    assert upstream.latency(11.0, 10.0) == pytest.approx(expected, rel=1e-3)


def test_ewma_an_unmeasured_upstream_gets_one_request_at_a_time() -> None:
    clock = Clock()
    pool = make_pool("http://old:1", "http://new:1", policy="ewma", clock=clock)
    old, new = pool.upstreams
    pool.started(old).finish("ok", latency=0.5)

    first = pool.acquire()
    second = pool.acquire()

    assert first is not None
    assert second is not None
    assert (first.upstream, second.upstream) == (new, old)


# --- availability and exclusion ---------------------------------------------------------


def test_exclude_prefers_another_upstream() -> None:
    pool = make_pool(policy="least_request")
    a, b, c = pool.upstreams

    chosen = {pool.pick(exclude={a, b}) for _ in range(50)}

    assert chosen == {c}


def test_exclude_falls_back_to_a_tried_upstream_when_nothing_else_is_up() -> None:
    pool = make_pool("http://a:1", "http://b:1")
    a, b = pool.upstreams
    pool.set_health(b, False)

    assert pool.pick(exclude={a}) is a


def test_unhealthy_upstreams_get_nothing_and_none_left_means_none() -> None:
    events: list[UpstreamEvent] = []
    pool = make_pool(events=events)
    a, b, c = pool.upstreams

    pool.set_health(a, False, "HTTP 503")
    pool.set_health(a, False, "HTTP 503")  # no change, no event
    assert set(picks(pool, 20)) == {"b", "c"}

    pool.set_health(b, False)
    pool.set_health(c, False)
    assert pool.pick() is None
    assert pool.acquire() is None
    assert events[0] == UpstreamEvent("iris", "http://a:1", "unhealthy", "HTTP 503")
    assert [e.kind for e in events] == ["unhealthy"] * 3


# --- outlier detection ------------------------------------------------------------------


NO_BREAKER = BreakerSettings(enabled=False)  # here failures go on past its threshold
OUTLIER = OutlierSettings(
    consecutive_failures=3, base_ejection_time=10, max_ejection_time=25, max_ejected_percent=100
)


@pytest.mark.parametrize("outcome", ["http_error", "connect_error", "reset", "timeout"])
def test_consecutive_failures_eject(outcome: str) -> None:
    events: list[UpstreamEvent] = []
    pool = make_pool(outlier=OUTLIER, breaker=NO_BREAKER, events=events)
    a = pool.upstreams[0]

    fail(pool, a, 3, outcome)

    assert a not in pool.available()
    assert events == [
        UpstreamEvent(
            "iris", "http://a:1", "ejected", f"3 failures in a row, last {outcome}; out for 10 s"
        )
    ]


@pytest.mark.parametrize("between", ["ok", "cancelled"])
def test_a_success_resets_the_count_and_a_cancel_is_no_verdict(between: str) -> None:
    pool = make_pool(outlier=OUTLIER, breaker=NO_BREAKER)
    a = pool.upstreams[0]

    fail(pool, a, 2)
    pool.started(a).finish(between)  # type: ignore[arg-type]
    fail(pool, a, 1)

    assert (a in pool.available()) is (between == "ok")


def test_ejection_ends_by_time_and_grows_each_time_up_to_the_cap() -> None:
    clock = Clock()
    events: list[UpstreamEvent] = []
    pool = make_pool(outlier=OUTLIER, breaker=NO_BREAKER, clock=clock, events=events)
    a = pool.upstreams[0]

    durations = []
    for _ in range(4):
        start = clock.now
        fail(pool, a, 3)
        assert a not in pool.available()
        while a not in pool.available():
            clock.now += 1
        durations.append(clock.now - start)

    assert durations == [10, 20, 25, 25]
    kinds = [e.kind for e in events]
    assert kinds == ["ejected", "returned"] * 4


def test_time_back_in_the_pool_forgives_past_ejections() -> None:
    clock = Clock()
    pool = make_pool(outlier=OUTLIER, breaker=NO_BREAKER, clock=clock)
    a = pool.upstreams[0]
    fail(pool, a, 3)  # out for 10 s
    clock.now += 10
    assert a in pool.available()
    fail(pool, a, 3)  # at once again: out for 20 s
    clock.now += 20
    assert a in pool.available()

    clock.now += 10  # one base_ejection_time back in the pool forgives one ejection
    fail(pool, a, 3)

    assert a.ejections == 2
    assert pool.snapshot()[0].ejected_for == 20


def test_never_ejects_the_last_available_upstream() -> None:
    pool = make_pool("http://a:1", "http://b:1", outlier=OUTLIER, breaker=NO_BREAKER)
    a, b = pool.upstreams

    fail(pool, a, 3)
    fail(pool, b, 10)

    assert pool.available() == [b]
    assert b.ejections == 0


def test_never_ejects_when_the_others_are_unhealthy() -> None:
    pool = make_pool("http://a:1", "http://b:1", outlier=OUTLIER, breaker=NO_BREAKER)
    a, b = pool.upstreams
    pool.set_health(b, False)

    fail(pool, a, 10)

    assert pool.available() == [a]


def test_a_single_upstream_is_never_ejected() -> None:
    pool = make_pool("http://a:1", outlier=OUTLIER, breaker=NO_BREAKER)

    fail(pool, pool.upstreams[0], 100, "connect_error")

    assert pool.upstreams[0].ejections == 0


def test_at_most_max_ejected_percent_of_the_pool() -> None:
    settings = OUTLIER.model_copy(update={"max_ejected_percent": 50})
    pool = make_pool(
        "http://a:1", "http://b:1", "http://c:1", "http://d:1", outlier=settings, breaker=NO_BREAKER
    )

    for upstream in pool.upstreams:
        fail(pool, upstream, 3)

    assert [u.ejections for u in pool.upstreams] == [1, 1, 0, 0]


def test_outlier_detection_can_be_turned_off() -> None:
    pool = make_pool(outlier=OutlierSettings(enabled=False), breaker=NO_BREAKER)

    fail(pool, pool.upstreams[0], 100)

    assert len(pool.available()) == 3


# --- breakers in the pool ---------------------------------------------------------------


BREAKER = BreakerSettings(failure_threshold=2, cool_down=5)
NO_OUTLIERS = OutlierSettings(enabled=False)


def test_an_open_breaker_takes_the_upstream_out_and_all_open_means_none() -> None:
    clock = Clock()
    events: list[UpstreamEvent] = []
    pool = make_pool(
        "http://a:1", "http://b:1", breaker=BREAKER, outlier=NO_OUTLIERS, clock=clock, events=events
    )
    a, b = pool.upstreams

    fail(pool, a, 2, "connect_error")
    assert pool.available() == [b]
    fail(pool, b, 2, "timeout")

    assert pool.acquire() is None
    assert [(e.upstream, e.kind) for e in events] == [
        ("http://a:1", "breaker_open"),
        ("http://b:1", "breaker_open"),
    ]


def test_half_open_lets_one_trial_through_and_its_success_closes() -> None:
    clock = Clock()
    pool = make_pool("http://a:1", breaker=BREAKER, outlier=NO_OUTLIERS, clock=clock)
    (a,) = pool.upstreams
    fail(pool, a, 2)
    clock.now += 5

    trial = pool.acquire()
    assert trial is not None
    assert pool.acquire() is None  # the one trial is in flight
    trial.finish("ok")

    assert a.breaker.state == "closed"
    assert pool.acquire() is not None


def test_a_request_from_before_the_breaker_opened_does_not_close_it() -> None:
    clock = Clock()
    pool = make_pool("http://a:1", breaker=BREAKER, outlier=NO_OUTLIERS, clock=clock)
    (a,) = pool.upstreams
    slow = pool.started(a)
    fail(pool, a, 2)
    clock.now += 5

    slow.finish("ok")

    assert a.breaker.state == "half_open"


# --- leases and snapshots ---------------------------------------------------------------


def test_a_lease_left_unfinished_is_cancelled() -> None:
    pool = make_pool("http://a:1", outlier=OUTLIER)
    a = pool.upstreams[0]

    in_flight = []

    def proxy_fails() -> None:
        with pool.started(a):
            in_flight.append(a.outstanding)
            raise RuntimeError("the proxy failed")

    with pytest.raises(RuntimeError):
        proxy_fails()

    assert in_flight == [1]

    assert a.outstanding == 0
    assert a.consecutive_failures == 0
    assert a.latency(0.0, 10.0) is None


def test_finishing_twice_counts_once() -> None:
    pool = make_pool("http://a:1", outlier=OUTLIER)
    a = pool.upstreams[0]

    lease = pool.started(a)
    lease.finish("http_error")
    lease.finish("http_error")

    assert (a.outstanding, a.consecutive_failures) == (0, 1)


def test_latency_defaults_to_the_time_since_the_start() -> None:
    clock = Clock()
    pool = make_pool("http://a:1", clock=clock)
    a = pool.upstreams[0]

    lease = pool.started(a)
    clock.now += 0.25
    lease.finish("ok")

    assert a.latency(clock.now, 10.0) == pytest.approx(0.25)


def test_snapshot_reports_every_upstream() -> None:
    clock = Clock()
    pool = make_pool("http://a:1", {"url": "http://b:1", "weight": 2}, outlier=OUTLIER, clock=clock)
    a, b = pool.upstreams
    fail(pool, a, 3, "connect_error")
    clock.now += 4
    pool.started(b)

    assert pool.snapshot() == [
        UpstreamStatus(
            url="http://a:1", weight=1, available=False, healthy=None, ejected_for=6.0,
            ejections=1, breaker="closed", outstanding=0, latency_ewma=None,
        ),
        UpstreamStatus(
            url="http://b:1", weight=2, available=True, healthy=None, ejected_for=0.0,
            ejections=0, breaker="closed", outstanding=1, latency_ewma=None,
        ),
    ]  # fmt: skip
