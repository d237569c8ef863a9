"""The renderer against kustomize itself: ``kubectl kustomize`` (kustomize 5 built into
kubectl) builds each shipped overlay to exactly what flowops.ops.manifests renders."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from flowops.ops.manifests import ENVIRONMENTS, manifest_key, render

ROOT = Path(__file__).resolve().parents[3] / "infra" / "k8s"
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed (Debian: kubernetes-client)"
)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_kustomize_builds_what_flowops_renders(env: str) -> None:
    assert KUBECTL is not None
    built = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "overlays" / env)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    theirs = {manifest_key(m): m for m in yaml.safe_load_all(built) if m}
    ours = {manifest_key(m): m for m in render(env, root=ROOT)}
    assert sorted(theirs) == sorted(ours)
    for key, manifest in ours.items():
        assert theirs[key] == manifest, key
