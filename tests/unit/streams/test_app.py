"""``streams.app.build_app``: the Faust app a worker runs, configured from settings."""

from __future__ import annotations

from pathlib import Path

from flowops.config import load_settings
from flowops.drift import ModelMonitor
from flowops.drift.rules import ErrorRateLevels, Rules, rules_from_settings
from flowops.events import Topics
from streams.app import build, build_app


def test_the_app_is_configured_from_the_settings(tmp_path: Path) -> None:
    settings = load_settings(
        overrides={
            "kafka": {"bootstrap": "10.0.0.1:9093,10.0.0.2:9093", "partitions": 6},
            "streams": {"app_id": "fleet", "metrics_port": 7001, "datadir": str(tmp_path)},
        }
    )
    app = build_app(settings)
    conf = app.conf
    assert conf.id == "fleet"
    assert [str(url) for url in conf.broker] == ["kafka://10.0.0.1:9093", "kafka://10.0.0.2:9093"]
    assert (conf.web_bind, conf.web_port) == ("127.0.0.1", 7001)
    assert conf.processing_guarantee.value == "at_least_once"  # no idempotent producer
    assert str(conf.store) == "memory:"
    assert conf.topic_partitions == 6


def test_metrics_listen_where_configured_for_a_container(tmp_path: Path) -> None:
    settings = load_settings(
        overrides={"streams": {"metrics_host": "0.0.0.0", "datadir": str(tmp_path)}}
    )
    conf = build_app(settings).conf
    assert (conf.web_bind, conf.web_port) == ("0.0.0.0", 6066)


def test_the_reference_table_reads_the_references_topic(tmp_path: Path) -> None:
    settings = load_settings(overrides={"streams": {"datadir": str(tmp_path)}})
    parts = build(settings)
    table = parts.app.tables["references"]
    assert table.is_global
    assert table.changelog_topic.get_topic_name() == Topics.REFERENCES
    assert table._changelog_topic_name() == Topics.REFERENCES  # what the assignor asks
    assert parts.traffic.group == "flowops-streams-traffic"
    assert parts.traffic.state_topic == "flowops-streams-monitors-changelog"
    assert parts.traffic.partials_topic == "flowops-streams-partials"
    merge = parts.app.tables["merge"]  # the merge agent's, over its own changelog
    assert not merge.is_global
    assert merge.changelog_topic.get_topic_name() == "flowops-streams-merge-changelog"


def test_both_stages_judge_by_the_drift_settings(tmp_path: Path) -> None:
    drift = {
        "tests": {"numeric": ["psi", "wasserstein"]},
        "min_effect": {"psi": 0.3},
        "critical_effect": {"wasserstein": 0.9},
        "verdict": "share:0.5",
        "error_rate": {"alpha": 0.01, "min_increase": 0.1, "history": 3, "min_requests": 20},
    }
    settings = load_settings(overrides={"drift": drift, "streams": {"datadir": str(tmp_path)}})
    parts = build(settings)
    expected = rules_from_settings(settings.drift)
    assert expected.tests["numeric"] == ("psi", "wasserstein")
    assert expected.error_rate == ErrorRateLevels(0.01, 0.1, 0.2, 3, 20)
    monitor = parts.traffic._new_monitor("credit", "1")
    assert monitor.rules == parts.traffic.rules == parts.merge.rules == expected
    assert monitor._errors.rate.levels == expected.error_rate
    restored = ModelMonitor.from_state(monitor.to_state())
    assert restored.rules == Rules()  # not saved: the traffic agent gives it the config's
    restored.rules = expected
    assert restored._errors.rate.levels == expected.error_rate
    merger = parts.merge._merger(0)
    assert merger.error_rate == expected.error_rate
