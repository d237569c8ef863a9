"""Settings: flags over FLOWOPS_* environment over the YAML file over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowops.config import Settings, load_settings
from flowops.errors import ConfigError

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "flowops.yaml"
    path.write_text("drift:\n  alpha: 0.2\n  bins: 20\nlog_level: debug\n")
    return path


def test_defaults() -> None:
    settings = load_settings()
    assert settings.drift.bins == 10
    assert settings.drift.alpha == 0.05
    assert settings.drift.correction == "bh"


def test_yaml_file_overrides_defaults(config_file: Path) -> None:
    settings = load_settings(config_file)
    assert (settings.drift.alpha, settings.drift.bins, settings.log_level) == (0.2, 20, "debug")


def test_environment_overrides_yaml(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWOPS_DRIFT__ALPHA", "0.01")
    settings = load_settings(config_file)
    assert settings.drift.alpha == 0.01
    assert settings.drift.bins == 20


def test_flags_override_environment(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWOPS_DRIFT__BINS", "15")
    settings = load_settings(config_file, {"drift": {"bins": 30, "alpha": None}})
    assert settings.drift.bins == 30
    assert settings.drift.alpha == 0.2  # a flag not given leaves the lower sources


def test_config_file_from_environment(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWOPS_CONFIG", str(config_file))
    assert load_settings().drift.bins == 20


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("drift:\n  bins: many\n", "drift.bins", "valid integer"),
        ("drift:\n  alpha: 2\n", "drift.alpha", "less than 1"),
        ("drift:\n  binz: 3\n", "drift.binz", "Extra inputs"),
        ("drift:\n  correction: holm\n", "drift.correction", "'bh', 'bonferroni' or 'none'"),
        ("kafka:\n  bootstrap: localhost\n", "kafka.bootstrap", "host:port"),
        ("kafka:\n  bootstrap: 'a:1,b:0'\n", "kafka.bootstrap", "host:port"),
        ("kafka:\n  partitions: 0\n", "kafka.partitions", "greater than or equal to 1"),
        ("kafka:\n  replication: 0\n", "kafka.replication", "greater than or equal to 1"),
        ("kafka:\n  compression: brotli\n", "kafka.compression", "'lz4'"),
        ("kafka:\n  idempotence: maybe\n", "kafka.idempotence", "boolean"),
        ("broker:\n  port: 70000\n", "broker.port", "less than or equal to 65535"),
        ("broker:\n  host: 0.0.0.0\n", "broker.host", "Extra inputs"),
        ("- a\n- b\n", "flowops.yaml", "mapping"),
        ("drift: [unclosed\n", "flowops.yaml", "not valid YAML"),
    ],
)
def test_bad_config_names_key_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = tmp_path / "flowops.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.key.endswith(key)
    assert reason in caught.value.reason


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml")


def test_bad_environment_value_names_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWOPS_DRIFT__BINS", "1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.key == "drift.bins"


def test_empty_yaml_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_settings(path) == Settings()


def test_kafka_and_broker_defaults() -> None:
    settings = load_settings()
    kafka = settings.kafka
    assert (kafka.bootstrap, kafka.partitions, kafka.replication) == ("127.0.0.1:9092", 3, 1)
    assert (kafka.client_id, kafka.idempotence, kafka.compression) == ("flowops", False, "lz4")
    assert (settings.broker.port, settings.broker.tansu_bin) == (9092, None)


def test_kafka_and_broker_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWOPS_KAFKA__BOOTSTRAP", "k1:9092, k2:9093")
    monkeypatch.setenv("FLOWOPS_KAFKA__PARTITIONS", "6")
    monkeypatch.setenv("FLOWOPS_BROKER__PORT", "19092")
    monkeypatch.setenv("FLOWOPS_BROKER__TANSU_BIN", "/opt/tansu")
    settings = load_settings()
    assert (settings.kafka.bootstrap, settings.kafka.partitions) == ("k1:9092, k2:9093", 6)
    assert (settings.broker.port, settings.broker.tansu_bin) == (19092, Path("/opt/tansu"))


def test_broker_port_flag_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWOPS_BROKER__PORT", "19092")
    assert load_settings(overrides={"broker": {"port": 29092}}).broker.port == 29092


def test_mlflow_tracking_uri_defaults_to_mlflows_own_variable(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOWOPS_MLFLOW__TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert load_settings().mlflow.tracking_uri is None

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert load_settings().mlflow.tracking_uri == "http://mlflow:5000"

    config_file.write_text("mlflow:\n  tracking_uri: http://from-file:5000\n")
    assert load_settings(config_file).mlflow.tracking_uri == "http://from-file:5000"

    monkeypatch.setenv("FLOWOPS_MLFLOW__TRACKING_URI", "https://from-env")
    assert load_settings(config_file).mlflow.tracking_uri == "https://from-env"
    flag = {"mlflow": {"tracking_uri": "http://flag:1"}}
    assert load_settings(config_file, flag).mlflow.tracking_uri == "http://flag:1"


def test_an_mlflow_variable_flowops_cannot_use_does_not_stop_other_commands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FLOWOPS_MLFLOW__TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "databricks")  # used by the mlflow client only
    assert load_settings().drift.bins == 10


def test_a_tracking_uri_set_for_flowops_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("FLOWOPS_MLFLOW__TRACKING_URI", "sqlite:///mlflow.db")
    with pytest.raises(ConfigError, match=r"mlflow.tracking_uri: .*http:// or https://"):
        load_settings()
