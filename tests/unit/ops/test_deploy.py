"""flowops.ops.deploy against the in-memory cluster (flowops.ops.fake_cluster): what is
applied and how, missing CRDs, dry runs, waiting, images."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from flowops._version import __version__
from flowops.errors import ClusterError, ConfigError
from flowops.ops.apply import apply_all
from flowops.ops.deploy import (
    DeployRequest,
    DeploySettings,
    default_tag,
    deploy,
    deploy_images,
    parse_images,
)
from flowops.ops.fake_cluster import BUILTIN_TYPES, FakeCluster
from flowops.ops.manifests import render
from flowops.ops.waiting import wait_all, wait_targets

ROOT = Path(__file__).resolve().parents[3] / "infra" / "k8s"
FAST = DeploySettings(manifests=ROOT, poll_interval=0.001, timeout=30)


def namespace(name: str = "apps") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def deployment(name: str = "web", image: str = "web:1", ns: str = "apps") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }


def rollout(name: str = "web", ns: str = "apps", *, pause: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": pause}]}},
        },
    }


class Lines(list[str]):
    """What the deploy said, line by line."""

    def __call__(self, line: str) -> None:
        self.append(line)


async def apply(cluster: FakeCluster, objects: list[dict[str, Any]], **kw: Any) -> list[str]:
    options = {"manager": "flowops", "dry_run": False, "skip_missing_crds": False} | kw
    applied = await apply_all(cluster, objects, say=Lines(), **options)
    return [a.action for a in applied]


@pytest.mark.asyncio
async def test_apply_reports_created_unchanged_configured() -> None:
    cluster = FakeCluster()
    assert await apply(cluster, [namespace(), deployment()]) == ["created", "created"]
    assert await apply(cluster, [namespace(), deployment()]) == ["unchanged", "unchanged"]
    assert await apply(cluster, [namespace(), deployment(image="web:2")]) == [
        "unchanged",
        "configured",
    ]
    stored = cluster.obj("Deployment", "apps", "web")
    assert stored["metadata"]["generation"] == 2
    assert stored["metadata"]["managedFields"][0]["manager"] == "flowops"


@pytest.mark.asyncio
async def test_apply_sends_every_object_with_the_field_manager() -> None:
    cluster = FakeCluster()
    await apply(cluster, [namespace(), deployment()], manager="ci-deployer")
    patches = [c for c in cluster.calls if c.verb == "patch"]
    assert [(c.kind, c.manager) for c in patches] == [
        ("Namespace", "ci-deployer"),
        ("Deployment", "ci-deployer"),
    ]


@pytest.mark.asyncio
async def test_missing_crd_is_an_error_naming_the_kind_before_anything_is_applied() -> None:
    cluster = FakeCluster(BUILTIN_TYPES)
    objects = [namespace(), deployment(), rollout(pause={"duration": "1m"})]
    with pytest.raises(ClusterError, match=r"Rollout \(argoproj.io/v1alpha1\).*Argo Rollouts"):
        await apply(cluster, objects)
    assert not [c for c in cluster.calls if c.verb == "patch"]


@pytest.mark.asyncio
async def test_missing_crd_skipped_with_a_warning_when_asked() -> None:
    cluster = FakeCluster(BUILTIN_TYPES)
    objects = [namespace(), deployment(), rollout(pause={"duration": "1m"})]
    lines = Lines()
    applied = await apply_all(
        cluster, objects, manager="flowops", dry_run=False, skip_missing_crds=True, say=lines
    )
    assert [a.action for a in applied] == ["created", "created", "skipped: CRD not installed"]
    assert any(line.startswith("warning: the cluster does not serve Rollout") for line in lines)


@pytest.mark.asyncio
async def test_dry_run_stores_nothing() -> None:
    cluster = FakeCluster()
    await apply(cluster, [namespace()])
    actions = await apply(cluster, [namespace(), deployment()], dry_run=True)
    assert actions == ["unchanged", "created"]
    assert ("Deployment", "apps", "web") not in cluster.objects
    assert all(c.dry_run for c in cluster.calls if c.verb == "patch" and c.kind == "Deployment")


@pytest.mark.asyncio
async def test_dry_run_into_a_new_namespace_is_not_sent() -> None:
    """The server has no such namespace yet: it would answer 404 for each object."""
    cluster = FakeCluster()
    actions = await apply(cluster, [namespace("new"), deployment(ns="new")], dry_run=True)
    assert actions == ["created", "created (namespace new is new: not checked by the server)"]
    assert not cluster.objects


@pytest.mark.asyncio
async def test_invalid_object_is_the_servers_422() -> None:
    cluster = FakeCluster()
    broken = deployment()
    broken["spec"]["selector"]["matchLabels"] = {"app": "other"}
    with pytest.raises(ClusterError, match="`selector` does not match template `labels`") as err:
        await apply(cluster, [namespace(), broken])
    assert (err.value.status, err.value.exit_code) == (422, 2)


@pytest.mark.asyncio
async def test_forbidden_names_the_verb_and_resource() -> None:
    cluster = FakeCluster()
    cluster.forbidden.add(("patch", "deployments.apps"))
    with pytest.raises(
        ClusterError, match='cannot patch resource "deployments" in API group "apps"'
    ):
        await apply(cluster, [namespace(), deployment()])


async def wait(
    cluster: FakeCluster,
    objects: list[dict[str, Any]],
    settings: DeploySettings = FAST,
    **kw: Any,
) -> tuple[Any, Lines]:
    """Apply ``objects`` (which starts their scripts), then wait for them."""
    lines = Lines()
    await apply(cluster, objects)
    targets = await wait_targets(cluster, objects, lines)
    options = {
        "timeout": settings.timeout,
        "poll_interval": settings.poll_interval,
        "on_pause": settings.indefinite_pause,
    }
    return await wait_all(cluster, targets, say=lines, **(options | kw)), lines


def progress(replicas: int, updated: int, available: int, total: int) -> dict[str, Any]:
    return {
        "replicas": total,
        "updatedReplicas": updated,
        "availableReplicas": available,
        "readyReplicas": available,
    }


@pytest.mark.asyncio
async def test_wait_follows_the_rollout_one_line_per_change() -> None:
    cluster = FakeCluster()
    cluster.script(
        "Deployment",
        "apps",
        "web",
        [
            {"observedGeneration": 0},
            progress(2, 1, 0, 3),
            progress(2, 1, 0, 3),
            progress(2, 2, 1, 3),
            progress(2, 2, 1, 2),
            progress(2, 2, 2, 2),
        ],
    )
    (waited,), lines = await wait(cluster, [namespace(), deployment()])
    assert (waited.kind, waited.name, waited.state) == ("Deployment", "web", "done")
    assert lines == [
        "Deployment apps/web: waiting for deployment spec update to be observed",
        "Deployment apps/web: 1 out of 2 new replicas have been updated",
        "Deployment apps/web: 1 old replicas are pending termination",
        "Deployment apps/web: 1 of 2 updated replicas are available",
        "Deployment apps/web: successfully rolled out",
    ]


@pytest.mark.asyncio
async def test_wait_fails_on_progress_deadline_with_the_reason() -> None:
    cluster = FakeCluster()
    message = 'ReplicaSet "web-5d4f" has timed out progressing.'
    condition = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    cluster.script(
        "Deployment", "apps", "web", [{"conditions": [condition | {"message": message}]}]
    )
    (waited,), _ = await wait(cluster, [namespace(), deployment()])
    assert (waited.state, waited.ok) == ("failed", False)
    assert waited.message == f"ProgressDeadlineExceeded: {message}"


@pytest.mark.asyncio
async def test_wait_times_out_with_the_last_status() -> None:
    cluster = FakeCluster()
    cluster.script("Deployment", "apps", "web", [progress(2, 1, 0, 3)])
    ticks = itertools.count(step=10.0)
    (waited,), _ = await wait(
        cluster, [namespace(), deployment()], timeout=25, clock=lambda: next(ticks)
    )
    assert waited.state == "timeout"
    assert waited.message == (
        "timed out after 25 s; last status: 1 out of 2 new replicas have been updated"
    )


@pytest.mark.parametrize(
    ("on_pause", "state"), [("succeed", "paused"), ("fail", "failed"), ("wait", "timeout")]
)
@pytest.mark.asyncio
async def test_indefinite_canary_pause(on_pause: str, state: str) -> None:
    cluster = FakeCluster()
    paused = {"phase": "Paused", "message": "CanaryPauseStep", "currentStepIndex": 1}
    cluster.script("Rollout", "apps", "web", [paused | {"pauseConditions": [{"reason": "x"}]}])
    settings = FAST.model_copy(update={"indefinite_pause": on_pause})
    ticks = itertools.count(step=10.0)
    (waited,), lines = await wait(
        cluster,
        [namespace(), deployment(), rollout(pause={})],
        settings,
        timeout=15,
        clock=lambda: next(ticks),
    )
    assert (waited.kind, waited.state) == ("Rollout", state)
    assert "paused at canary step 1 of 2" in waited.message
    assert lines[0] == "Deployment apps/web: rolled out by the Rollout web (workloadRef)"


@pytest.mark.asyncio
async def test_canary_with_timed_pauses_is_followed_to_healthy() -> None:
    cluster = FakeCluster()
    steps = [
        {
            "phase": "Progressing",
            "message": "more replicas need to be updated",
            "currentStepIndex": 0,
        },
        {"phase": "Paused", "message": "CanaryPauseStep", "currentStepIndex": 1},
        {"phase": "Healthy", "stableRS": "abc", "currentPodHash": "abc", "currentStepIndex": 2},
    ]
    cluster.script("Rollout", "apps", "web", steps)
    (waited,), lines = await wait(
        cluster, [namespace(), deployment(), rollout(pause={"duration": "2m"})]
    )
    assert waited.state == "done"
    assert lines[1:] == [
        "Rollout apps/web: more replicas need to be updated (canary step 0 of 2)",
        "Rollout apps/web: paused at canary step 1 of 2 (CanaryPauseStep)",
        "Rollout apps/web: Healthy",
    ]


def test_images_from_registry_and_tag() -> None:
    settings = FAST.model_copy(update={"registry": "ghcr.io/acme/"})
    images = deploy_images(DeployRequest("prod", tag="1.0.0-abc1234"), settings)
    assert images == {
        s: f"ghcr.io/acme/flowops-{s}:1.0.0-abc1234" for s in ("gateway", "worker", "monitor")
    }


def test_images_keep_the_overlays_repository_and_take_overrides() -> None:
    request = DeployRequest("staging", tag="2.0.0", images={"worker": "mirror.local/w:7"})
    images = deploy_images(request, FAST)
    assert images == {
        "gateway": "registry.example.com/flowops/flowops-gateway:2.0.0",
        "monitor": "registry.example.com/flowops/flowops-monitor:2.0.0",
        "worker": "mirror.local/w:7",
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [("gateway", "expected SERVICE=IMAGE"), ("db=postgres:16", "no service 'db'")],
)
def test_bad_image_option(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_images([value])


def test_default_tag_is_version_and_commit_as_build_tags() -> None:
    from flowops.ops import build

    tag = default_tag(ROOT)
    assert re.fullmatch(rf"{re.escape(__version__)}-[0-9a-f]{{7}}(-dirty)?", tag)
    assert tag == build.default_tag(build.git_revision(ROOT))


def test_default_tag_outside_git_is_the_version(tmp_path: Path) -> None:
    assert default_tag(tmp_path) == __version__


@pytest.mark.asyncio
async def test_deploy_dev_applies_every_rendered_object_then_waits() -> None:
    cluster = FakeCluster()
    request = DeployRequest("dev", wait=True, tag="0.1.0-test")
    for name in ("flowops-gateway", "flowops-worker", "flowops-monitor"):
        cluster.script(
            "Deployment",
            "flowops-dev",
            name,
            [{"replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}],
        )
    report = await deploy(request, FAST, say=Lines(), cluster=cluster)
    rendered = render("dev", report.images, root=ROOT)
    assert [(a.kind, a.name, a.action) for a in report.objects] == [
        (m["kind"], m["metadata"]["name"], "created") for m in rendered
    ]
    assert sorted(w.name for w in report.rollouts if w.state == "done") == [
        "flowops-gateway",
        "flowops-monitor",
        "flowops-worker",
    ]
    assert report.ok
    gateway = cluster.obj("Deployment", "flowops-dev", "flowops-gateway")
    assert (
        gateway["spec"]["template"]["spec"]["containers"][0]["image"]
        == "flowops-gateway:0.1.0-test"
    )


@pytest.mark.asyncio
async def test_deploy_unknown_overlay_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no overlay 'qa'"):
        await deploy(DeployRequest("qa"), FAST, say=Lines(), cluster=FakeCluster())
