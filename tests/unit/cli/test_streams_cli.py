"""``flowops streams worker``: its help, its flags, and what it does without a broker."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from flowops.broker import free_port
from flowops.cli import cli


def test_streams_is_listed_and_worker_documents_its_flags() -> None:
    assert "streams" in CliRunner().invoke(cli, ["--help"]).output
    result = CliRunner().invoke(cli, ["streams", "worker", "--help"])
    assert result.exit_code == 0
    for flag in ("--config", "--bootstrap", "--metrics-port", "Exit codes"):
        assert flag in result.output


def test_help_does_not_import_faust() -> None:
    code = (
        "import sys\n"
        "from flowops.cli import main\n"
        "for args in (['--help'], ['streams', 'worker', '--help']):\n"
        "    sys.argv = ['flowops', *args]\n"
        "    try:\n        main()\n    except SystemExit:\n        pass\n"
        "heavy = [m for m in ('faust', 'aiokafka', 'mode') if m in sys.modules]\n"
        "print('loaded:' + ','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().endswith("loaded:")


def test_a_bad_flag_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["streams", "worker", "--metrics-port", "0"])
    assert result.exit_code == 2


def test_no_broker_is_one_line_and_exit_3() -> None:
    command = [sys.executable, "-m", "flowops", "streams", "worker"]
    command += ["--bootstrap", f"127.0.0.1:{free_port()}", "--metrics-port", str(free_port())]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    assert "flowops: error: " in done.stderr
    assert "flowops streams: config: app flowops-streams" in done.stderr
