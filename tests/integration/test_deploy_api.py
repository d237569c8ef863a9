"""flowops deploy against an API server that speaks Kubernetes' wire format
(tests/integration/k8s_api.py; no cluster can run here), through kubernetes-asyncio:
server-side apply, dry runs, rollout waits, rollback, and each error as one line."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_api import KubeApiServer

from flowops.errors import ClusterError
from flowops.ops.apply import apply_all
from flowops.ops.cluster import APPLY_CONTENT_TYPE, JSON_PATCH_CONTENT_TYPE, connect
from flowops.ops.deploy import DeployRequest, DeploySettings, deploy
from flowops.ops.fake_cluster import BUILTIN_TYPES, CRD_TYPES, FakeCluster
from flowops.ops.manifests import render

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / "infra" / "k8s"
SERVICES = ("flowops-gateway", "flowops-monitor", "flowops-worker")
DONE = {"replicas": 1, "updatedReplicas": 1, "availableReplicas": 1, "readyReplicas": 1}


def settings(kubeconfig: Path, **kw: Any) -> DeploySettings:
    return DeploySettings(manifests=ROOT, kubeconfig=kubeconfig, poll_interval=0.01, **kw)


def finish(server: KubeApiServer, env: str, names: tuple[str, ...] = SERVICES) -> None:
    """Each Deployment's rollout goes: not observed, one updating read, done."""
    for manifest in render(env, root=ROOT):
        name = manifest["metadata"]["name"]
        if manifest["kind"] != "Deployment" or name not in names:
            continue
        n = manifest["spec"].get("replicas", 1)
        done = {"replicas": n, "updatedReplicas": n, "availableReplicas": n, "readyReplicas": n}
        steps = [{"observedGeneration": 0}, done | {"updatedReplicas": 0}, done]
        server.cluster.script("Deployment", f"flowops-{env}", name, steps)


def image(server: KubeApiServer, env: str, name: str) -> str:
    found = server.cluster.obj("Deployment", f"flowops-{env}", name)
    return str(found["spec"]["template"]["spec"]["containers"][0]["image"])


async def run_cli(
    tmp_path: Path, *args: str, kubeconfig: Path | None = None
) -> tuple[int, str, str]:
    """``python -m flowops deploy ARGS`` with a settings file of fast polls, a HOME of
    its own (no ~/.kube/config), and no KUBECONFIG unless given."""
    config = tmp_path / "flowops.yaml"
    config.write_text(yaml.safe_dump({"deploy": {"poll_interval": 0.01, "manifests": str(ROOT)}}))
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "FLOWOPS_CONFIG")}
    env["HOME"] = str(tmp_path)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowops", "deploy", "--config", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def one_error_line(stderr: str) -> str:
    """The error: one line, the last, after any progress lines; no traceback."""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert all(line.startswith("flowops deploy: ") for line in lines[:-1]), stderr
    return lines[-1]


async def test_dev_applies_every_object_with_server_side_apply(tmp_path: Path) -> None:
    async with KubeApiServer() as server:
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        request = DeployRequest("dev", tag="0.1.0-abc1234")
        report = await deploy(request, settings(kubeconfig), say=lambda _: None)
    rendered = render("dev", report.images, root=ROOT)
    applies = server.applies()
    assert [r.body for r in applies] == rendered
    for recorded in applies:
        assert recorded.content_type == APPLY_CONTENT_TYPE
        assert recorded.query == {"fieldManager": "flowops", "force": "true"}
    assert report.ok
    assert report.server == server.url
    assert {a.action for a in report.objects} == {"created"}
    assert len([k for k in server.cluster.objects if k[0] != "ReplicaSet"]) == len(rendered)
    assert image(server, "dev", "flowops-gateway") == "flowops-gateway:0.1.0-abc1234"


async def test_wait_succeeds_as_the_rollouts_advance(tmp_path: Path) -> None:
    async with KubeApiServer() as server:
        finish(server, "dev")
        lines: list[str] = []
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        report = await deploy(
            DeployRequest("dev", wait=True, tag="t1"), settings(kubeconfig), say=lines.append
        )
    assert [(w.name, w.state) for w in report.rollouts] == [(n, "done") for n in SERVICES]
    gateway = [line for line in lines if line.startswith("Deployment flowops-dev/flowops-gateway:")]
    assert gateway == [
        "Deployment flowops-dev/flowops-gateway: waiting for deployment spec update to be observed",
        "Deployment flowops-dev/flowops-gateway: 0 out of 1 new replicas have been updated",
        "Deployment flowops-dev/flowops-gateway: successfully rolled out",
    ]


async def test_deadline_exceeded_fails_naming_resource_and_reason(tmp_path: Path) -> None:
    async with KubeApiServer() as server:
        finish(server, "dev", ("flowops-monitor", "flowops-worker"))
        why = 'ReplicaSet "flowops-gateway-6b9f" has timed out progressing.'
        stuck = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        server.cluster.script(
            "Deployment",
            "flowops-dev",
            "flowops-gateway",
            [{"conditions": [stuck | {"message": why}]}],
        )
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        code, out, err = await run_cli(
            tmp_path, "--env", "dev", "--wait", "--kubeconfig", str(kubeconfig)
        )
    assert code == 1
    assert "Traceback" not in err
    assert (
        "flowops deploy: rollout of Deployment flowops-dev/flowops-gateway failed: "
        f"ProgressDeadlineExceeded: {why}"
    ) in err.splitlines()
    assert "flowops-gateway" in out


async def test_timeout_names_the_resource_and_its_last_status(tmp_path: Path) -> None:
    async with KubeApiServer() as server:
        finish(server, "dev", ("flowops-monitor", "flowops-worker"))
        server.cluster.script(
            "Deployment", "flowops-dev", "flowops-gateway", [DONE | {"availableReplicas": 0}]
        )
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        report = await deploy(
            DeployRequest("dev", wait=True), settings(kubeconfig, timeout=0.2), say=lambda _: None
        )
    assert not report.ok
    (late,) = [w for w in report.rollouts if not w.ok]
    assert (late.name, late.state) == ("flowops-gateway", "timeout")
    assert late.message == (
        "timed out after 0.2 s; last status: 0 of 1 updated replicas are available"
    )


async def test_dry_run_sends_dry_run_all_and_stores_nothing(tmp_path: Path) -> None:
    async with KubeApiServer() as server:
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        await deploy(DeployRequest("dev", tag="old"), settings(kubeconfig), say=lambda _: None)
        before = copy.deepcopy(server.cluster.objects)
        sent = len(server.applies())
        report = await deploy(
            DeployRequest("dev", tag="new", dry_run=True), settings(kubeconfig), say=lambda _: None
        )
        assert copy.deepcopy(server.cluster.objects) == before
    dry = server.applies()[sent:]
    assert dry
    assert all(r.query.get("dryRun") == "All" for r in dry)
    assert len(dry) == len(report.objects)
    changed = {a.name for a in report.objects if a.action == "configured"}
    assert changed == set(SERVICES)  # only the image tags differ
    assert {a.action for a in report.objects if a.name not in changed} == {"unchanged"}


async def test_dry_run_with_no_cluster_prints_the_manifests(tmp_path: Path) -> None:
    nobody = KubeApiServer()  # a kubeconfig for a port where nothing listens
    kubeconfig = nobody.kubeconfig(tmp_path / "kubeconfig")
    code, out, err = await run_cli(
        tmp_path, "--env", "dev", "--dry-run", "--tag", "t9", kubeconfig=kubeconfig
    )
    assert code == 0
    line = one_error_line(err)
    assert line.startswith(
        f"flowops deploy: the cluster at {nobody.url} did not answer: cannot connect"
    )
    assert line.endswith("no server dry run, printing the manifests instead")
    images = {s: f"flowops-{s}:t9" for s in ("gateway", "worker", "monitor")}
    assert list(yaml.safe_load_all(out)) == render("dev", images, root=ROOT)


async def test_rollback_restores_the_previous_template(tmp_path: Path) -> None:
    async with KubeApiServer() as server:
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        for tag in ("1.0.0-aaaaaaa", "1.1.0-bbbbbbb"):
            await deploy(DeployRequest("dev", tag=tag), settings(kubeconfig), say=lambda _: None)
        finish(server, "dev")
        code, out, err = await run_cli(
            tmp_path, "--env", "dev", "--rollback", "-o", "json", "--kubeconfig", str(kubeconfig)
        )
        assert code == 0, err
        assert image(server, "dev", "flowops-worker") == "flowops-worker:1.0.0-aaaaaaa"
    report = json.loads(out)
    assert {o["action"] for o in report["objects"]} == {"rolled back to revision 1"}
    assert {w["state"] for w in report["rollouts"]} == {"done"}
    patches = [r for r in server.requests if r.content_type == JSON_PATCH_CONTENT_TYPE]
    assert len(patches) == 3
    assert all(
        p.body[0]["op"] == "replace" and p.body[0]["path"] == "/spec/template" for p in patches
    )


async def test_staging_follows_the_argo_canary(tmp_path: Path) -> None:
    async with KubeApiServer() as server:
        finish(server, "staging", ("flowops-monitor", "flowops-worker"))
        pause = {"pauseConditions": [{"reason": "CanaryPauseStep"}], "controllerPause": True}
        canary = [
            {"phase": "Progressing", "message": "more replicas need to be updated"},
            {"phase": "Paused", "message": "CanaryPauseStep", "currentStepIndex": 1} | pause,
            {"phase": "Healthy", "stableRS": "7b4c", "currentPodHash": "7b4c"},
        ]
        server.cluster.script("Rollout", "flowops-staging", "flowops-gateway", canary)
        lines: list[str] = []
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        report = await deploy(
            DeployRequest("staging", wait=True), settings(kubeconfig), say=lines.append
        )
    assert report.ok
    assert [(w.kind, w.name) for w in report.rollouts] == [
        ("Deployment", "flowops-monitor"),
        ("Deployment", "flowops-worker"),
        ("Rollout", "flowops-gateway"),
    ]
    assert (
        "Rollout flowops-staging/flowops-gateway: paused at canary step 1 of 4 (CanaryPauseStep)"
        in lines
    )


async def test_missing_crd_is_one_line_naming_the_kind(tmp_path: Path) -> None:
    no_argo = [t for t in (*BUILTIN_TYPES, *CRD_TYPES) if t.kind != "Rollout"]
    async with KubeApiServer(FakeCluster(no_argo)) as server:
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        code, _, err = await run_cli(tmp_path, "--env", "prod", "--kubeconfig", str(kubeconfig))
    assert code == 2
    assert one_error_line(err) == (
        f"flowops: error: {server.url}: the cluster does not serve Rollout (argoproj.io/v1alpha1): "
        "install the Argo Rollouts CRDs, or set deploy.skip_missing_crds"
    )
    assert not server.applies()


async def test_unreachable_cluster_exits_3(tmp_path: Path) -> None:
    nobody = KubeApiServer()
    kubeconfig = nobody.kubeconfig(tmp_path / "kubeconfig")
    code, _, err = await run_cli(tmp_path, "--env", "dev", "--kubeconfig", str(kubeconfig))
    assert code == 3
    refused = f"flowops: error: {nobody.url}: cannot connect: Connection refused"
    assert one_error_line(err) == refused


async def test_no_kubeconfig_exits_2(tmp_path: Path) -> None:
    code, out, err = await run_cli(tmp_path, "--env", "dev", "--wait")
    assert (code, out) == (2, "")
    assert one_error_line(err) == (
        "flowops: error: config: deploy.kubeconfig: no kubeconfig "
        "(--kubeconfig, deploy.kubeconfig, $KUBECONFIG, ~/.kube/config)"
    )


async def test_bad_context_exits_2(tmp_path: Path) -> None:
    kubeconfig = KubeApiServer().kubeconfig(tmp_path / "kubeconfig", context="kind-dev")
    code, _, err = await run_cli(
        tmp_path, "--env", "dev", "--context", "prod", kubeconfig=kubeconfig
    )
    assert code == 2
    assert one_error_line(err) == (
        f"flowops: error: config: deploy.context: no context 'prod' in {kubeconfig} (kind-dev)"
    )


async def test_bad_overlay_exits_2(tmp_path: Path) -> None:
    code, _, err = await run_cli(tmp_path, "--env", "qa")
    assert code == 2
    assert "no overlay 'qa'" in one_error_line(err)


async def test_unauthorized_exits_2(tmp_path: Path) -> None:
    async with KubeApiServer(token="s3cret") as server:
        wrong = server.kubeconfig(tmp_path / "wrong", token="guess")
        code, _, err = await run_cli(tmp_path, "--env", "dev", "--kubeconfig", str(wrong))
        assert code == 2
        assert one_error_line(err) == (
            f"flowops: error: {server.url}: 401 Unauthorized: "
            "the API server did not accept the kubeconfig's credentials"
        )
        right = server.kubeconfig(tmp_path / "right", token="s3cret")
        report = await deploy(DeployRequest("dev"), settings(right), say=lambda _: None)
    assert report.ok
    assert server.requests[-1].method == "PATCH"


async def test_forbidden_names_the_verb_and_resource(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.forbidden.add(("patch", "networkpolicies.networking.k8s.io"))
    async with KubeApiServer(cluster) as server:
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        code, _, err = await run_cli(tmp_path, "--env", "dev", "--kubeconfig", str(kubeconfig))
    assert code == 2
    assert one_error_line(err) == (
        f"flowops: error: {server.url}: forbidden: may not patch NetworkPolicy "
        "flowops-dev/flowops-default-deny: networkpolicies.networking.k8s.io "
        '"flowops-default-deny" is forbidden: User "system:serviceaccount:ci:deployer" '
        'cannot patch resource "networkpolicies" in API group "networking.k8s.io" '
        'in the namespace "flowops-dev"'
    )


async def test_invalid_object_carries_the_servers_message(tmp_path: Path) -> None:
    async with KubeApiServer() as server:
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        cluster = await connect(str(kubeconfig), None, request_timeout=10)
        broken = render("dev", root=ROOT)
        deployment = next(m for m in broken if m["kind"] == "Deployment")
        deployment["spec"]["selector"]["matchLabels"] = {"app": "nothing"}
        try:
            with pytest.raises(ClusterError) as err:
                await apply_all(
                    cluster,
                    broken,
                    manager="flowops",
                    dry_run=False,
                    skip_missing_crds=False,
                    say=lambda _: None,
                )
        finally:
            await cluster.close()
    assert (err.value.status, err.value.exit_code) == (422, 2)
    assert str(err.value).startswith(
        f"{server.url}: invalid Deployment flowops-dev/flowops-gateway: "
        'Deployment.apps "flowops-gateway" is invalid: spec.template.metadata.labels: '
    )
    assert str(err.value).endswith("`selector` does not match template `labels`")
