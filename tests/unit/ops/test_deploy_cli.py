"""``flowops deploy`` as a command: help that starts light, user errors as one line, the
offline dry run. The API conversation is in tests/integration/test_deploy_api.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from flowops.cli import cli
from flowops.ops.manifests import render

ROOT = Path(__file__).resolve().parents[3] / "infra" / "k8s"


@pytest.fixture
def no_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("FLOWOPS_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_help_does_not_import_kubernetes_asyncio() -> None:
    code = (
        "import sys\n"
        "from flowops.cli import main\n"
        "sys.argv = ['flowops', 'deploy', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('kubernetes_asyncio', 'aiohttp', 'pydantic') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "flowops deploy --env dev --dry-run" in done.stdout
    assert "HEAVY []" in done.stdout


def test_bad_image_option_is_one_line(no_kubeconfig: Path) -> None:
    result = CliRunner().invoke(cli, ["deploy", "--env", "dev", "--image", "db=postgres:16"])
    assert result.exit_code == 2
    assert result.stderr == (
        "flowops: error: config: --image: no service 'db' (there are: gateway, worker, monitor)\n"
    )


def test_bad_setting_names_its_key(no_kubeconfig: Path) -> None:
    config = no_kubeconfig / "flowops.yaml"
    config.write_text("deploy:\n  indefinite_pause: maybe\n")
    result = CliRunner().invoke(cli, ["deploy", "--env", "dev", "--config", str(config)])
    assert result.exit_code == 2
    assert result.stderr.startswith("flowops: error: config: deploy.indefinite_pause: ")


def test_offline_dry_run_prints_the_manifests(no_kubeconfig: Path) -> None:
    config = no_kubeconfig / "flowops.yaml"
    config.write_text(
        yaml.safe_dump({"deploy": {"registry": "ghcr.io/acme", "manifests": str(ROOT)}})
    )
    args = ["deploy", "--env", "prod", "--dry-run", "--tag", "1.0.0", "--config", str(config)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.stderr
    images = {s: f"ghcr.io/acme/flowops-{s}:1.0.0" for s in ("gateway", "worker", "monitor")}
    assert list(yaml.safe_load_all(result.stdout)) == render("prod", images, root=ROOT)
    assert result.stderr.startswith("flowops deploy: no kubeconfig (")


def test_missing_kubeconfig_file_is_named(no_kubeconfig: Path) -> None:
    missing = no_kubeconfig / "nope.yaml"
    result = CliRunner().invoke(cli, ["deploy", "--env", "dev", "--kubeconfig", str(missing)])
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"flowops: error: config: deploy.kubeconfig: no kubeconfig file at {missing}\n"
    )


def test_docs_list_every_setting() -> None:
    from flowops.ops.deploy import DeploySettings

    docs = (ROOT.parents[1] / "docs" / "deploy.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `deploy\.(\w+)` \|", docs, flags=re.MULTILINE))
    assert documented == set(DeploySettings.model_fields)


def test_docs_example_settings_are_valid() -> None:
    from flowops.config import section
    from flowops.ops.deploy import DeploySettings

    docs = (ROOT.parents[1] / "docs" / "deploy.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```yaml\n(deploy:\n.*?)```", docs, flags=re.DOTALL)
    settings = section(DeploySettings, yaml.safe_load(example)["deploy"], "deploy")
    assert settings.indefinite_pause == "succeed"


def test_a_file_that_is_not_a_kubeconfig(no_kubeconfig: Path) -> None:
    garbage = no_kubeconfig / "notes.txt"
    garbage.write_text("hello\n")
    result = CliRunner().invoke(cli, ["deploy", "--env", "dev", "--kubeconfig", str(garbage)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"flowops: error: config: deploy.kubeconfig: {garbage}: "
        "not a kubeconfig (expected clusters, contexts and users)\n"
    )
