"""The one place Kafka clients get their TLS and SASL settings (flowops/kafka_security.py)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import faust
import pytest

from flowops.config import KafkaSettings, load_settings
from flowops.errors import ConfigError
from flowops.kafka_security import client_options, faust_credentials, read_password


def sasl(tmp_path: Path, protocol: str = "SASL_PLAINTEXT") -> KafkaSettings:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    return KafkaSettings(
        security_protocol=protocol,  # type: ignore[arg-type]
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="flowops",
        sasl_password_file=password,
    )


def test_sasl_options_carry_the_mechanism_user_and_the_files_password(tmp_path: Path) -> None:
    options = client_options(sasl(tmp_path))
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("flowops", "s3cret")
    assert "ssl_context" not in options


def test_a_changed_password_file_is_read_again(tmp_path: Path) -> None:
    kafka = sasl(tmp_path)
    assert read_password(kafka) == "s3cret"
    assert kafka.sasl_password_file is not None
    kafka.sasl_password_file.write_text("rotated-and-longer\n")
    os.utime(kafka.sasl_password_file, ns=(1, 1))  # another mtime, whatever the clock does
    assert client_options(kafka)["sasl_plain_password"] == "rotated-and-longer"


def test_the_settings_come_from_flowops_kafka_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pw").write_text("x")
    monkeypatch.setenv("FLOWOPS_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FLOWOPS_KAFKA__SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("FLOWOPS_KAFKA__SASL_USERNAME", "u")
    monkeypatch.setenv("FLOWOPS_KAFKA__SASL_PASSWORD_FILE", str(tmp_path / "pw"))
    monkeypatch.setenv("FLOWOPS_KAFKA__SSL_CHECK_HOSTNAME", "false")
    kafka = load_settings().kafka
    options = client_options(kafka)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].check_hostname is False


@pytest.mark.parametrize("missing", ["sasl_username", "sasl_password_file"])
def test_sasl_without_credentials_names_the_missing_key(tmp_path: Path, missing: str) -> None:
    values = sasl(tmp_path).model_dump()
    values[missing] = None
    with pytest.raises(ConfigError, match=rf"kafka\.{missing}: required"):
        KafkaSettings(**values)


def test_files_that_cannot_be_read_name_their_key(tmp_path: Path) -> None:
    kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match=r"kafka\.ssl_cafile: no such file"):
        client_options(kafka)
    (tmp_path / "junk.pem").write_text("not a certificate")
    kafka = KafkaSettings(security_protocol="SSL", ssl_certfile=tmp_path / "junk.pem")
    with pytest.raises(ConfigError, match=r"kafka\.ssl_certfile: cannot load"):
        client_options(kafka)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    kafka = sasl(tmp_path).model_copy(update={"sasl_password_file": empty})
    with pytest.raises(ConfigError, match=r"kafka\.sasl_password_file: .* is empty"):
        client_options(kafka)


def test_faust_gets_the_same_credentials(tmp_path: Path) -> None:
    assert faust_credentials(KafkaSettings()) is None
    assert isinstance(
        faust_credentials(KafkaSettings(security_protocol="SSL")), faust.SSLCredentials
    )
    credentials = faust_credentials(sasl(tmp_path, "SASL_SSL"))
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("flowops", "s3cret")
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_SSL"
