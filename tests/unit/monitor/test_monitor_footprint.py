"""The monitoring agent stays small: its modules pull in no numeric or ML library, and
the Kafka client only when a Kafka probe runs or health events are published.

Its memory goal (bench/monitor.py, under 60 MB) depends on it: numpy alone costs the
agent about 14 MB of resident memory, aiokafka about 8 MB more.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("numpy", "scipy", "faust", "mlflow", "pandas", "kubernetes_asyncio", "aiokafka")


@pytest.mark.parametrize(
    "module", ["flowops.monitor.server", "flowops.monitor.config", "flowops.cli.monitor"]
)
def test_the_agent_imports_no_heavy_library(module: str) -> None:
    code = f"import sys, {module}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_the_traffic_names_still_come_from_flowops_events() -> None:
    """Bound on first use; a row needs no numpy (the gateway's install has none), a
    batch loads it."""
    code = (
        "import sys, flowops.events as events\n"
        "before = 'numpy' in sys.modules\n"
        "row = events.TrafficRow('m', '1', 'r', 1.0, {}, 0, 1.0, 200)\n"
        "after_row = 'numpy' in sys.modules\n"
        "events.TrafficBatch.from_rows([row])\n"
        "print(before, after_row, 'numpy' in sys.modules, type(row).__module__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False", "True", "flowops.events.traffic"]
