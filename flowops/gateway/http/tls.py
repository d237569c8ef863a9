"""TLS termination in the listener (``gateway.tls``): the settings, and the server's
context, made anew when its files change.

The context is the ssl module's server default (``ssl.create_default_context`` for
client authentication, i.e. OpenSSL's default cipher list less the weak suites CPython
removes, with compression off and a fresh ECDHE key an exchange) with TLS 1.2 as the
lowest version: TLS 1.0 and 1.1 clients are refused in the handshake. No cipher list of
our own: OpenSSL's (and the distribution's policy) are kept current by people who watch
them, a list pinned here would not be.

:class:`ServerTls` holds the context new connections get. Its :meth:`~ServerTls.reload`
builds a context from the files and swaps it in only when the whole pair loaded: a
certificate that does not match its key raises (the reload watcher,
:mod:`flowops.gateway.reload`, logs one line and keeps the old one). Connections already
open keep the certificate they were made with.

>>> TlsSettings(cert_file="a.pem", key_file="a.key").client_auth
'none'
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flowops.errors import ConfigError

__all__ = ["ServerTls", "TlsSettings", "is_loopback", "load_cert_chain"]

ClientAuth = Literal["none", "optional", "required"]

_VERIFY = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def load_cert_chain(
    context: ssl.SSLContext, cert_file: Path, key_file: Path | None, key: str
) -> None:
    """Give ``context`` its certificate and key (server or client side alike); files
    that cannot be read or do not match are a ConfigError naming ``key``'s field."""
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{key}.cert_file", f"cannot use {cert_file} with {key_file}: {exc}"
        ) from None


class TlsSettings(BaseModel):
    """``gateway.tls``: the listener's certificate, and client certificates (mTLS)."""

    model_config = ConfigDict(extra="forbid")

    cert_file: Path = Field(description="PEM certificate chain, the server's first")
    key_file: Path = Field(description="its PEM private key (unencrypted)")
    ca_file: Path | None = Field(
        None, description="PEM CA bundle that client certificates must chain to"
    )
    client_auth: ClientAuth = Field(
        "none", description="none, optional or required: ask clients for a certificate"
    )

    @model_validator(mode="after")
    def _ca_for_clients(self) -> TlsSettings:
        if self.client_auth != "none" and self.ca_file is None:
            raise ValueError(f"client_auth: {self.client_auth} needs ca_file (the clients' CA)")
        return self

    @property
    def files(self) -> list[Path]:
        """The files it reads (re-read when they change)."""
        return [p for p in (self.cert_file, self.key_file, self.ca_file) if p is not None]

    def context(self, key: str = "gateway.tls") -> ssl.SSLContext:
        """A server context from the files; a file that cannot be read or used is a
        ConfigError naming ``key``'s field."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        load_cert_chain(context, self.cert_file, self.key_file, key)
        if self.ca_file is not None:
            try:
                context.load_verify_locations(self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"{key}.ca_file", f"cannot use {self.ca_file}: {exc}") from None
        context.verify_mode = _VERIFY[self.client_auth]
        return context


class ServerTls:
    """The context new connections get (:attr:`context`), swapped by :meth:`reload`.

    Made at start-up, so a bad file stops the start with a ConfigError naming its key.
    """

    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        self.context = settings.context()

    async def reload(self) -> None:
        """The files changed: the new context is used from the next connection on; if
        they cannot be used, this raises and the old one stays."""
        self.context = self.settings.context()


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address's host) is reachable only from this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("[::1]"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
