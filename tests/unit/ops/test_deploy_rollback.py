"""flowops.ops.rollback on the in-memory cluster: kubectl rollout undo for Deployments,
kubectl argo rollouts undo for Rollouts (their own template, or their workloadRef's)."""

from __future__ import annotations

from typing import Any

import pytest
from test_deploy import FAST, Lines, apply, deployment, namespace, rollout

from flowops.errors import ConfigError
from flowops.ops.deploy import DeployRequest, deploy
from flowops.ops.fake_cluster import FakeCluster
from flowops.ops.rollback import rollback_all
from flowops.ops.rollout import ARGO_REVISION, DEPLOYMENT_REVISION, revision_of

pytestmark = pytest.mark.asyncio

DONE = {"replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}


def image(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


async def test_deployment_returns_to_the_previous_template() -> None:
    cluster = FakeCluster()
    await apply(cluster, [namespace(), deployment(image="web:1")])
    await apply(cluster, [namespace(), deployment(image="web:2")])
    assert revision_of(cluster.obj("Deployment", "apps", "web"), DEPLOYMENT_REVISION) == 2
    lines = Lines()
    (done,) = await rollback_all(cluster, [deployment(image="web:2")], "flowops", lines)
    assert (done.action, done.failed) == ("rolled back to revision 1", False)
    after = cluster.obj("Deployment", "apps", "web")
    assert image(after) == "web:1"
    assert "pod-template-hash" not in after["spec"]["template"]["metadata"]["labels"]
    # like the Deployment controller: the old ReplicaSet becomes the newest revision
    assert revision_of(after, DEPLOYMENT_REVISION) == 3
    assert [image(rs) for rs in cluster.replicasets("apps")] == ["web:2", "web:1"]
    assert lines == ["Deployment apps/web: rolled back to revision 1"]


async def test_second_rollback_goes_back_again() -> None:
    """As with kubectl rollout undo: undoing twice returns to where it started."""
    cluster = FakeCluster()
    await apply(cluster, [namespace(), deployment(image="web:1")])
    await apply(cluster, [namespace(), deployment(image="web:2")])
    await rollback_all(cluster, [deployment()], "flowops", Lines())
    (done,) = await rollback_all(cluster, [deployment()], "flowops", Lines())
    assert done.action == "rolled back to revision 2"
    assert image(cluster.obj("Deployment", "apps", "web")) == "web:2"


async def test_no_history_is_a_failure() -> None:
    cluster = FakeCluster()
    await apply(cluster, [namespace(), deployment()])
    (done,) = await rollback_all(cluster, [deployment()], "flowops", Lines())
    assert (done.action, done.failed) == ("failed: no previous revision to return to", True)


async def test_missing_deployment_is_a_failure() -> None:
    cluster = FakeCluster()
    (done,) = await rollback_all(cluster, [deployment()], "flowops", Lines())
    assert (done.action, done.failed) == ("failed: not on the cluster", True)


async def test_rollout_with_workload_ref_patches_its_deployment() -> None:
    cluster = FakeCluster()
    canary = rollout(pause={"duration": "1m"})
    await apply(cluster, [namespace(), deployment(image="web:1"), canary])
    await apply(cluster, [namespace(), deployment(image="web:2"), canary])
    assert revision_of(cluster.obj("ReplicaSet", "apps", _newest(cluster)), ARGO_REVISION) == 2
    done = await rollback_all(cluster, [deployment(), canary], "flowops", Lines())
    assert [(d.kind, d.action) for d in done] == [("Rollout", "rolled back to revision 1")]
    assert image(cluster.obj("Deployment", "apps", "web")) == "web:1"
    patched = [c for c in cluster.calls if c.verb == "patch" and c.manager == "flowops"][-1]
    assert (patched.kind, patched.dry_run) == ("Deployment", False)


async def test_rollout_with_its_own_template() -> None:
    cluster = FakeCluster()
    own = rollout(pause={"duration": "1m"})
    del own["spec"]["workloadRef"]
    for tag in ("1", "2"):
        own["spec"]["template"] = deployment(image=f"web:{tag}")["spec"]["template"]
        await apply(cluster, [namespace(), own])
    (done,) = await rollback_all(cluster, [own], "flowops", Lines())
    assert done.action == "rolled back to revision 1"
    after = cluster.obj("Rollout", "apps", "web")
    assert image(after) == "web:1"
    assert "rollouts-pod-template-hash" not in after["spec"]["template"]["metadata"]["labels"]


def _newest(cluster: FakeCluster) -> str:
    owned = [
        rs
        for rs in cluster.replicasets("apps")
        if rs["metadata"]["ownerReferences"][0]["kind"] == "Rollout"
    ]
    return str(max(owned, key=lambda rs: revision_of(rs, ARGO_REVISION))["metadata"]["name"])


async def test_deploy_rollback_waits_for_those_that_rolled_back() -> None:
    cluster = FakeCluster()
    say = Lines()
    await deploy(DeployRequest("dev", tag="t1"), FAST, say=say, cluster=cluster)
    same_worker = {"worker": "flowops-worker:t1"}  # the worker has one revision only
    await deploy(DeployRequest("dev", tag="t2", images=same_worker), FAST, say=say, cluster=cluster)
    for name in ("flowops-gateway", "flowops-monitor"):
        cluster.script("Deployment", "flowops-dev", name, [DONE])
    report = await deploy(DeployRequest("dev", rollback=True), FAST, say=say, cluster=cluster)
    assert [(a.name, a.action) for a in report.objects] == [
        ("flowops-gateway", "rolled back to revision 1"),
        ("flowops-monitor", "rolled back to revision 1"),
        ("flowops-worker", "failed: no previous revision to return to"),
    ]
    assert [(w.name, w.state) for w in report.rollouts] == [
        ("flowops-gateway", "done"),
        ("flowops-monitor", "done"),
    ]
    assert not report.ok


async def test_rollback_has_no_dry_run() -> None:
    request = DeployRequest("dev", rollback=True, dry_run=True)
    with pytest.raises(ConfigError, match="--rollback: has no dry run"):
        await deploy(request, FAST, say=Lines(), cluster=FakeCluster())
