"""``flowops up`` without services: its help, its settings, and errors before start-up."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowops import demo
from flowops.broker import free_port
from flowops.cli import cli
from flowops.config import load_settings
from flowops.errors import ConfigError
from flowops.up import DEMO_PREFIX, DEMO_WINDOW_ROWS, _gateway_section, _with_demo_window

ROUTE = {"name": "iris", "prefix": "/models/iris", "upstreams": ["http://127.0.0.1:9001"]}


pytestmark = pytest.mark.usefixtures("clean_env")


def test_help_teaches_the_demo_and_the_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["up", "--help"])
    assert result.exit_code == 0
    assert "flowops up --demo" in result.output
    assert "--bootstrap HOST:PORT" in result.output
    assert "1  --demo --duration: the demo's drift was not detected" in result.output
    assert "--gateway-port N" in result.output
    assert "curl -s http://127.0.0.1:8080/models/credit-demo/invocations" in result.output
    assert "without routes and without --demo, no gateway" in " ".join(result.output.split())
    assert "up " in CliRunner().invoke(cli, ["--help"]).output


def test_the_demo_model_gets_its_window_unless_the_config_names_one(tmp_path: Path) -> None:
    plain = _with_demo_window(load_settings())
    window = plain.streams.window_for(demo.MODEL)
    assert (window.kind, window.size) == ("count", DEMO_WINDOW_ROWS)
    assert plain.streams.window_for("other").size == 10_000

    path = tmp_path / "flowops.yaml"
    path.write_text(f"streams: {{models: {{{demo.MODEL}: {{window: {{kind: time, size: 5}}}}}}}}")
    configured = _with_demo_window(load_settings(path))
    assert configured.streams.window_for(demo.MODEL).kind == "time"


def free_ports(*flags: str) -> list[str]:
    """``--flag port`` for each flag, each port free now, so that only the ports a test
    takes are reported."""
    return [arg for flag in flags for arg in (flag, str(free_port()))]


def test_a_taken_metrics_port_stops_start_up_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["up", "--metrics-port", str(port), "--workdir", str(tmp_path)]
        args += free_ports("--broker-port", "--monitor-port")
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert result.output == (
        "flowops: error: config: ports: already in use (an earlier `flowops up` still "
        f"running?): {port} (streams.metrics_port; --metrics-port)\n"
    )


def test_every_taken_port_is_named_at_once_and_no_folder_is_left(tmp_path: Path) -> None:
    """As a user runs it: a subprocess, its temporary directory watched."""
    import subprocess
    import sys

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    with socket.socket() as a, socket.socket() as b, socket.socket() as c:
        for sock in (a, b, c):
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        metrics, broker, monitor = (s.getsockname()[1] for s in (a, b, c))
        command = [sys.executable, "-m", "flowops", "up", "--metrics-port", str(metrics)]
        command += ["--broker-port", str(broker), "--monitor-port", str(monitor)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWOPS_")}
        done = subprocess.run(
            command, env={**env, "TMPDIR": str(temporary)}, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    for port, flag in (
        (metrics, "--metrics-port"),
        (broker, "--broker-port"),
        (monitor, "--monitor-port"),
    ):
        assert f"{port} (" in done.stderr, done.stderr
        assert flag in done.stderr, done.stderr
    assert list(temporary.iterdir()) == []


def test_bootstrap_means_no_embedded_broker() -> None:
    settings = load_settings(overrides={"broker": {"embedded": False}})
    assert not settings.broker.embedded
    assert load_settings().broker.embedded


def test_without_routes_and_without_the_demo_there_is_no_gateway() -> None:
    assert _gateway_section(load_settings(), None, None) is None
    assert _gateway_section(load_settings(), 8081, None) is None


def test_the_demo_route_matches_the_reference_profile() -> None:
    found = _gateway_section(load_settings(), None, "http://127.0.0.1:5001")
    assert found is not None
    section, checked = found
    assert checked.listen == "127.0.0.1:8080"
    (route,) = checked.routes
    assert (route.name, route.prefix, route.strip_prefix) == (demo.MODEL, DEMO_PREFIX, True)
    assert (route.model_name, route.version) == (demo.MODEL, demo.VERSION)
    assert route.features == list(demo.FEATURES)
    assert [upstream.url for upstream in route.upstreams] == ["http://127.0.0.1:5001"]
    assert section["routes"][0]["upstreams"] == ["http://127.0.0.1:5001"]


def test_the_configs_routes_stay_and_the_port_flag_keeps_the_host(tmp_path: Path) -> None:
    path = tmp_path / "flowops.yaml"
    path.write_text(f"gateway: {{listen: '0.0.0.0:9000', routes: [{_flow(ROUTE)}]}}")
    settings = load_settings(path)
    mine = _gateway_section(settings, None, None)
    assert mine is not None
    assert [r.name for r in mine[1].routes] == ["iris"]
    assert mine[1].listen == "0.0.0.0:9000"
    both = _gateway_section(settings, 8081, "http://127.0.0.1:5001")
    assert both is not None
    assert [r.name for r in both[1].routes] == ["iris", demo.MODEL]
    assert both[0]["listen"] == "0.0.0.0:8081"


def test_a_config_route_that_clashes_with_the_demos_is_a_config_error() -> None:
    clash = {**ROUTE, "prefix": DEMO_PREFIX}
    settings = load_settings(overrides={"gateway": {"routes": [clash]}})
    assert _gateway_section(settings, None, None) is not None
    with pytest.raises(ConfigError) as caught:
        _gateway_section(settings, None, "http://127.0.0.1:5001")
    message = str(caught.value)
    assert message.startswith("config: gateway.routes: Value error, two routes have the prefix")
    assert message.endswith(f"; --demo adds the route {demo.MODEL} {DEMO_PREFIX}")


def test_a_bad_gateway_section_stops_start_up_naming_its_key(tmp_path: Path) -> None:
    path = tmp_path / "flowops.yaml"
    path.write_text("gateway: {listen: '8080'}")
    result = CliRunner().invoke(cli, ["up", "--demo", "--config", str(path)])
    assert result.exit_code == 2
    assert result.output.startswith("flowops: error: config: gateway.listen: ")


def test_a_taken_gateway_port_stops_start_up_naming_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["up", "--demo", "--gateway-port", str(port), "--workdir", str(tmp_path)]
        args += free_ports("--broker-port", "--monitor-port", "--metrics-port")
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert result.output == (
        "flowops: error: config: ports: already in use (an earlier `flowops up` still "
        f"running?): {port} (gateway.listen; --gateway-port)\n"
    )


def _flow(mapping: dict[str, object]) -> str:
    """A mapping in YAML flow style."""
    import yaml

    return yaml.safe_dump(mapping, default_flow_style=True).strip()


def test_an_unreachable_bootstrap_is_one_error_line_without_the_clients_log(
    tmp_path: Path,
) -> None:
    """As a user runs it; aiokafka used to print 'Unable connect to ...' before it."""
    import subprocess
    import sys

    nothing = free_port()
    command = [sys.executable, "-m", "flowops", "up", "--bootstrap", f"127.0.0.1:{nothing}"]
    command += [*free_ports("--metrics-port", "--monitor-port"), "--workdir", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWOPS_")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"flowops up: kafka: using 127.0.0.1:{nothing} (broker.embedded is false)"
    assert len(lines) == 2, done.stderr
    assert lines[1].startswith(f"flowops: error: 127.0.0.1:{nothing}: cannot reach the Kafka")
