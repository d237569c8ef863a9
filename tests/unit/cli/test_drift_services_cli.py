"""``flowops drift baseline --publish / --mlflow-run`` and ``flowops drift watch``: their
flags, usage errors, and what they say when the broker or MLflow does not answer.
With the real broker and a real MLflow server: tests/integration/test_drift_kafka.py and
tests/integration/test_mlflow_server.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowops.broker import free_port
from flowops.cli import cli

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    rows = [f"{i % 50},{'north' if i % 3 else 'south'}" for i in range(300)]
    path.write_text("age,region\n" + "\n".join(rows) + "\n")
    return path


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, prog_name="flowops")


def flowops(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command as a process: what a person sees on stderr, tracebacks included."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWOPS_", "MLFLOW_"))}
    return subprocess.run(
        [sys.executable, "-m", "flowops", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=clean | (env or {}),
    )


def nowhere() -> str:
    return f"127.0.0.1:{free_port()}"


# -- baseline: flags that need another ---------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--publish"], "--publish needs --model NAME"),
        (["--model", "m", "--bootstrap", "h:9092"], "--bootstrap goes with --publish"),
        (["--model", "m", "--model-version", "2"], "--model-version goes with --publish"),
        (["--mlflow-uri", "http://h:5000"], "--mlflow-uri goes with --mlflow-run"),
        (["--mlflow-run", "r1"], "--mlflow-run needs a tracking server: --mlflow-uri URL"),
    ],
)
def test_baseline_usage_errors(data: Path, flags: list[str], message: str) -> None:
    result = run("drift", "baseline", "--data", str(data), *flags)
    assert result.exit_code == 2
    assert message in result.output
    assert "profiled" not in result.output  # checked before the data is read


def test_a_tracking_uri_that_is_not_http_is_a_config_error(data: Path) -> None:
    result = run(
        "drift", "baseline", "--data", str(data), "--mlflow-run", "r1", "--mlflow-uri", "file:/x"
    )
    assert result.exit_code == 2
    assert "flowops: error: config: mlflow.tracking_uri: " in result.output


def test_dash_writes_the_profile_to_stdout(data: Path) -> None:
    result = run("drift", "baseline", "--data", str(data), "--model", "m", "-o", "-")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "m"
    assert "profiled 2 features" in result.stderr
    assert "-> stdout" in result.stderr


# -- no service --------------------------------------------------------------------------


def test_publish_without_a_broker_is_one_error_line_and_exit_3(data: Path) -> None:
    done = flowops(
        "drift",
        "baseline",
        "--data",
        str(data),
        "--model",
        "m",
        "--publish",
        "--bootstrap",
        nowhere(),
    )
    assert done.returncode == 3
    assert done.stdout == ""  # the profile went to Kafka (or nowhere), not to stdout
    profiled, error = done.stderr.splitlines()
    assert profiled.startswith("flowops: profiled 2 features of ")
    assert error.startswith("flowops: error: 127.0.0.1:")
    assert "cannot reach the Kafka broker" in error


def test_mlflow_tracking_uri_from_the_environment_and_no_server(data: Path) -> None:
    url = f"http://{nowhere()}"
    done = flowops(
        "drift",
        "baseline",
        "--data",
        str(data),
        "--mlflow-run",
        "r1",
        env={"MLFLOW_TRACKING_URI": url},
    )
    assert done.returncode == 3
    error = done.stderr.splitlines()[-1]
    assert error.startswith(f"flowops: error: {url}: cannot reach the MLflow tracking server")
    assert "Traceback" not in done.stderr


def test_watch_without_a_broker_is_one_line_and_exit_3() -> None:
    done = flowops("drift", "watch", "--bootstrap", nowhere(), "-o", "json")
    assert done.returncode == 3
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("flowops: error: 127.0.0.1:")
    assert "cannot reach the Kafka broker" in line


# -- watch: flags --------------------------------------------------------------------------


def test_watch_documents_its_flags() -> None:
    result = run("drift", "watch", "--help")
    assert result.exit_code == 0
    for text in (
        "--model",
        "--bootstrap",
        "--from-beginning",
        "-o, --output",
        "--max",
        "--timeout",
        "Examples:",
        "Exit codes",
    ):
        assert text in result.output
    assert "watch" in run("drift", "--help").output


@pytest.mark.parametrize(
    "flags", [["--max", "0"], ["--timeout", "0"], ["-o", "yaml"], ["--bootstrap", "nohost"]]
)
def test_watch_usage_errors(flags: list[str]) -> None:
    result = run("drift", "watch", *flags)
    assert result.exit_code == 2


def test_help_of_the_new_commands_loads_no_kafka_client() -> None:
    code = (
        "import sys\n"
        "from flowops.cli import main\n"
        "for args in (['drift', 'watch', '--help'], ['drift', 'baseline', '--help']):\n"
        "    sys.argv = ['flowops', *args]\n"
        "    try:\n        main()\n    except SystemExit:\n        pass\n"
        "heavy = ('aiokafka', 'numpy', 'pydantic', 'rich', 'urllib.request')\n"
        "print('loaded:' + ','.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().endswith("loaded:")
