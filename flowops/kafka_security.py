"""How every Kafka client FlowOps makes reaches a secured cluster: TLS, SASL, or both.

One place turns the ``kafka`` settings into what the clients take, so that the gateway's
publisher, the stream worker (its aiokafka consumer and producer, and the Faust app), the
monitor, ``drift baseline --publish``, ``drift watch``, ``up --bootstrap`` and topic
creation all connect alike:

- :func:`client_options`: keyword arguments for ``AIOKafkaProducer``,
  ``AIOKafkaConsumer`` and ``AIOKafkaAdminClient``;
- :func:`faust_credentials`: the ``broker_credentials`` of a ``faust.App``;
- :func:`diagnose`: when a client cannot start, one connection made as the client
  would, and the :class:`~flowops.errors.BrokerError` (exit 3) naming the setting to fix
  when the cause is security (a refused password, an untrusted certificate); the places
  that start clients (topic creation, the event producer, the senders, the monitor's
  probe) raise it instead of their "cannot reach the broker".

A plain cluster needs nothing:

>>> from flowops.config import KafkaSettings
>>> client_options(KafkaSettings())
{'bootstrap_servers': '127.0.0.1:9092', 'security_protocol': 'PLAINTEXT'}

The password lives in a file (a mounted secret, as the prod overlay's ExternalSecret
gives it) and is read when a client is made, again only after the file changed (its
modification time or size), so a rotated secret reaches the next client made (the
gateway's and the monitor's senders make a new producer each time they reconnect). A
client already running keeps the password it was made with, for its new connections too:
aiokafka takes the password as a string.

Why not aiokafka's ``create_ssl_context``: it loads the same files, but a missing or bad
file is an ``ssl`` error that names no setting; loading them one by one into the standard
library's default context lets each error name its key.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowops.errors import BrokerError, ConfigError

if TYPE_CHECKING:
    from flowops.config import KafkaSettings

__all__ = [
    "as_settings",
    "client_options",
    "diagnose",
    "faust_credentials",
    "read_password",
    "ssl_context",
]


def as_settings(bootstrap: str | KafkaSettings) -> KafkaSettings:
    """``bootstrap`` as settings: an address alone is a plain (PLAINTEXT) cluster.

    >>> as_settings("k:9092").security_protocol
    'PLAINTEXT'
    """
    if isinstance(bootstrap, str):
        from flowops.config import KafkaSettings

        return KafkaSettings(bootstrap=bootstrap)
    return bootstrap


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client: the servers and how to reach them.

    Raises :class:`~flowops.errors.ConfigError` naming the key when a file it names
    cannot be read.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = read_password(kafka)
    return options


def faust_credentials(kafka: KafkaSettings) -> Any:
    """The ``broker_credentials`` of a Faust app (``None`` for PLAINTEXT): the same
    protocol, mechanism, user, password and TLS context as :func:`client_options`."""
    if kafka.security_protocol == "PLAINTEXT":
        return None
    import faust

    options = client_options(kafka)
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    return faust.SASLCredentials(
        username=options["sasl_plain_username"],
        password=options["sasl_plain_password"],
        ssl_context=options.get("ssl_context"),
        mechanism=kafka.sasl_mechanism,
    )


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """The TLS context of the ``kafka.ssl_*`` settings; a file that cannot be loaded is a
    ConfigError naming its key."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if kafka.ssl_cafile is not None:
        _load("kafka.ssl_cafile", kafka.ssl_cafile, context.load_verify_locations)
    if kafka.ssl_certfile is not None:
        certfile, keyfile = kafka.ssl_certfile, kafka.ssl_keyfile
        _load("kafka.ssl_certfile", certfile, lambda p: context.load_cert_chain(p, keyfile))
    elif kafka.ssl_keyfile is not None:
        raise ConfigError("kafka.ssl_keyfile", "given without kafka.ssl_certfile")
    context.check_hostname = kafka.ssl_check_hostname
    return context


def read_password(kafka: KafkaSettings) -> str:
    """The SASL password in ``kafka.sasl_password_file`` (without its last line break);
    read again only when the file changed since the last read."""
    path = kafka.sasl_password_file
    if path is None:
        raise ConfigError("kafka.sasl_password_file", "not set; SASL needs a password")
    try:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        cached = _passwords.get(key[0])
        if cached is not None and cached.key == key:
            return cached.value
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(
            "kafka.sasl_password_file", f"cannot read {path}: {exc.strerror}"
        ) from None
    if not value:
        raise ConfigError("kafka.sasl_password_file", f"{path} is empty")
    _passwords[key[0]] = _Read(key, value)
    return value


async def diagnose(kafka: KafkaSettings, timeout: float = 10.0) -> BrokerError | None:
    """Open one connection to the first bootstrap server as the clients do (TLS handshake,
    SASL authentication, one Metadata request) and say which setting is at fault, if
    security is the cause.

    ``None`` when the connection works or fails for another reason (no broker there).
    """
    options = client_options(kafka)
    try:
        conn = await _connect(kafka, options, timeout)
    except Exception as exc:
        found = _security_error(kafka, exc)
        if found is None and "sasl_mechanism" in options:
            found = await _refused_if_reachable(kafka, options, timeout)
        return found
    try:
        from aiokafka.protocol.metadata import MetadataRequest

        await asyncio.wait_for(conn.send(MetadataRequest[0]([])), timeout)
    except Exception:
        if "sasl_mechanism" not in options:
            return BrokerError(
                kafka.bootstrap,
                "kafka.security_protocol: the broker closed the connection at the first "
                f"request; does it require SASL (security_protocol is {kafka.security_protocol})?",
            )
    finally:
        conn.close()
    return None


async def _connect(kafka: KafkaSettings, options: dict[str, Any], timeout: float) -> Any:
    from aiokafka.conn import create_conn

    host, _, port = kafka.bootstrap.split(",")[0].strip().rpartition(":")
    options = {k: v for k, v in options.items() if k != "bootstrap_servers"}
    return await asyncio.wait_for(
        create_conn(host, int(port), request_timeout_ms=int(timeout * 1000), **options), timeout
    )


async def _refused_if_reachable(
    kafka: KafkaSettings, options: dict[str, Any], timeout: float
) -> BrokerError | None:
    """The refused-login error when the broker answers a connection made without SASL:
    it was there, so the login is what failed (a PLAIN refusal closes the connection)."""
    plain = {k: v for k, v in options.items() if not k.startswith("sasl_")}
    plain["security_protocol"] = kafka.security_protocol.removeprefix("SASL_")
    try:
        conn = await _connect(kafka, plain, timeout)
    except Exception:
        return None
    conn.close()
    return _refused(kafka)


def _refused(kafka: KafkaSettings) -> BrokerError:
    return BrokerError(
        kafka.bootstrap,
        f"kafka.sasl_password_file: the broker refused user {kafka.sasl_username!r} "
        f"({kafka.sasl_mechanism}); check kafka.sasl_username and the password in "
        f"{kafka.sasl_password_file}",
    )


@dataclass(frozen=True)
class _Read:
    key: tuple[str, int, int]
    value: str


_passwords: dict[str, _Read] = {}


def _load(key: str, path: Path, load: Any) -> None:
    try:
        load(str(path))
    except FileNotFoundError:
        raise ConfigError(key, f"no such file: {path}") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(key, f"cannot load {path}: {_describe(exc)}") from None


def _security_error(kafka: KafkaSettings, exc: BaseException) -> BrokerError | None:
    """The setting ``exc`` (from a first connection) points at, as a BrokerError."""
    from aiokafka import errors

    where = kafka.bootstrap
    if isinstance(exc, ssl.SSLCertVerificationError):
        if "hostname" in (exc.verify_message or "") or "IP address mismatch" in str(exc):
            key = "kafka.ssl_check_hostname"
        else:
            key = "kafka.ssl_cafile"
        return BrokerError(
            where, f"{key}: the broker's certificate is not trusted ({exc.verify_message})"
        )
    if isinstance(exc, ssl.SSLError):
        return BrokerError(where, f"kafka.ssl_certfile: the TLS handshake failed ({exc.reason})")
    if isinstance(exc, errors.UnsupportedSaslMechanismError):
        return BrokerError(
            where, f"kafka.sasl_mechanism: the broker does not accept {kafka.sasl_mechanism}"
        )
    if kafka.security_protocol.startswith("SASL_") and _refused_login(exc):
        return _refused(kafka)
    return None


def _refused_login(exc: BaseException) -> bool:
    """Whether ``exc`` is how aiokafka meets a refused login: the broker's refusal, or a
    SCRAM exchange that broke off (aiokafka reads the server's ``e=`` answer as a
    KeyError), or the connection closed during authentication."""
    from aiokafka import errors

    refusals = (
        errors.SaslAuthenticationFailed,
        errors.AuthenticationFailedError,
        errors.IllegalSaslStateError,
        KeyError,
        AssertionError,
    )
    return isinstance(exc, refusals)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
