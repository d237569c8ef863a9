"""`flowops --help` and each command's `--help`: start-up time beside `python -c pass`
(goal: under 0.25 s more; none of them imports Faust, MLflow or kubernetes-asyncio, which
tests/unit/cli/test_cli_reference.py checks)."""

from __future__ import annotations

import subprocess
import sys

from _harness import median_of, usage

GOAL_SECONDS = 0.25
RUNS = 15


def _run(*args: str) -> None:
    subprocess.run([sys.executable, *args], check=True, capture_output=True)


def main() -> None:
    bare = median_of(lambda: _run("-c", "pass"), RUNS)
    commands = {
        "flowops --help": ("-m", "flowops", "--help"),
        "flowops drift --help": ("-m", "flowops", "drift", "--help"),
        "flowops drift compare --help": ("-m", "flowops", "drift", "compare", "--help"),
        **{
            f"flowops {name} --help": ("-m", "flowops", name, "--help")
            for name in ("build", "deploy", "gateway", "monitor", "streams", "test", "up")
        },
    }
    print(f"python -c pass: {bare * 1e3:.0f} ms (median of {RUNS})")
    print("| command | median | more than python -c pass | goal |")
    print("| --- | --- | --- | --- |")
    for name, args in commands.items():
        took = median_of(lambda args=args: _run(*args), RUNS)
        extra = took - bare
        verdict = "met" if extra < GOAL_SECONDS else "NOT met"
        print(f"| `{name}` | {took * 1e3:.0f} ms | {extra * 1e3:+.0f} ms | < 250 ms {verdict} |")


if __name__ == "__main__":
    usage(__doc__)
    main()
