"""CPU a request of the whole gateway, this tree beside an older one, in one run.

``bench/gateway_features.py`` says what each feature costs in this tree; this says what a
change cost, measured the only way that holds on a shared 2-core machine: both trees in
the same run, in alternating rounds (old, new, new, old), so that what else the cores do
weighs on both alike. The gateway is the last step of ``gateway_features.py``, every
feature on (publishing to an embedded Tansu broker, a rate limit, an API key), one worker
on uvloop; the load the same wrk run; the figure the gateway process's user + system CPU
over the measured run, divided by the requests answered.

The older tree is a git revision of this repository (``FLOWOPS_BENCH_BASE``, default the
merge base with ``main``), exported into a temporary directory and run with
``PYTHONPATH`` pointing at it; the shared virtualenv runs both.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from _harness import usage
from gateway import NGINX_UPSTREAM, nginx, say
from gateway_features import STEPS, cost, gateway

from flowops.broker import EmbeddedBroker, free_port

ROUNDS = 2
"""Rounds of (old, new) and (new, old): four measured runs a tree in all."""
_REPOSITORY = Path(__file__).resolve().parent.parent


def export(revision: str, into: Path) -> Path:
    """The files of ``revision``, written under ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(_REPOSITORY), "archive", revision],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def base_revision() -> str:
    configured = os.environ.get("FLOWOPS_BENCH_BASE")
    if configured:
        return configured
    found = subprocess.run(
        ["git", "-C", str(_REPOSITORY), "merge-base", "HEAD", "main"],
        check=True,
        capture_output=True,
        text=True,
    )
    return found.stdout.strip()


def measure(workdir: Path, trees: dict[str, Path]) -> dict[str, list[float]]:
    """CPU microseconds a request of each tree, round by round."""
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    order = list(trees)
    with nginx("upstream", NGINX_UPSTREAM, workdir) as upstream:
        broker = EmbeddedBroker(port=free_port())
        broker.start()
        try:
            for round_ in range(2 * ROUNDS):
                for name in order if round_ % 2 == 0 else order[::-1]:
                    os.environ["PYTHONPATH"] = str(trees[name])
                    step = len(STEPS) - 1
                    with gateway(workdir, step, upstream.url, broker.bootstrap) as target:
                        target.name = f"{name} tree"
                        _, user, system = cost(workdir, target)
                    cpu[name].append(user + system)
        finally:
            broker.stop()
    return cpu


def main() -> None:
    started = time.monotonic()
    revision = base_revision()
    with tempfile.TemporaryDirectory(prefix="flowops-bench-trees-") as workdir:
        old = export(revision, Path(workdir) / "old")
        trees = {"old": old, "new": _REPOSITORY}
        cpu = measure(Path(workdir), trees)
    print(f"Every feature on, one worker, uvloop; old = {revision[:12]}, new = this tree:")
    print()
    print("| tree | CPU a request, each run | mean |")
    print("| --- | --- | ---: |")
    for name, runs in cpu.items():
        shown = ", ".join(f"{value:.1f}" for value in runs)
        print(f"| {name} | {shown} us | {sum(runs) / len(runs):.1f} us |")
    ratio = sum(cpu["new"]) / sum(cpu["old"])
    print()
    print(f"new / old: {ratio:.3f} (goal: within 1.05)")
    say(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    usage(__doc__)
    main()
