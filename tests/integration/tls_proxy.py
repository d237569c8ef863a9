"""A TLS-terminating proxy in front of the embedded broker, for the Kafka security tests.

Tansu 0.6's ``--cert`` does not complete a TLS handshake (not with aiokafka, not with
``openssl s_client``: it reads the ClientHello as a Kafka frame and closes), so TLS is
tested the way a cluster behind a TLS load balancer is reached: clients speak TLS to this
proxy, which speaks plain Kafka to Tansu, and Tansu advertises the proxy's port so that
every connection a client makes passes through it.

:func:`make_pki` writes a CA, a server certificate for 127.0.0.1 signed by it, a client
certificate, and a second CA that signed nothing (the untrusted case), with openssl.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Pki", "TlsProxy", "make_pki"]


@dataclass(frozen=True)
class Pki:
    """Files of the test PKI (all PEM)."""

    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(root: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and
    a CA that signed neither."""
    for name in ("ca", "other_ca"):
        _openssl(
            root,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.pem",
            "-subj",
            f"/CN={name}",
        )
    (root / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn in (("server", "127.0.0.1"), ("client", "flowops-client")):
        _openssl(
            root,
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={cn}",
        )
        _openssl(
            root,
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.pem",
            "-extfile",
            "san.cnf",
        )
    return Pki(
        ca=root / "ca.pem",
        other_ca=root / "other_ca.pem",
        server_cert=root / "server.pem",
        server_key=root / "server.key",
        client_cert=root / "client.pem",
        client_key=root / "client.key",
    )


def _openssl(root: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True)


class TlsProxy:
    """TLS on ``127.0.0.1:port`` to plain TCP at ``127.0.0.1:upstream_port``, in a thread
    of its own; ``require_client_cert`` asks clients for a certificate signed by the CA."""

    def __init__(
        self, port: int, upstream_port: int, pki: Pki, *, require_client_cert: bool = False
    ) -> None:
        self.port = port
        self.upstream_port = upstream_port
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(pki.server_cert, pki.server_key)
        if require_client_cert:
            self._context.load_verify_locations(pki.ca)
            self._context.verify_mode = ssl.CERT_REQUIRED
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self._server = future.result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @contextlib.contextmanager
    def running(self) -> Iterator[TlsProxy]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self._context)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            self._pipes.discard(task)
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()
            self._pipes.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()
