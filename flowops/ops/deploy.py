"""``flowops deploy``: render an overlay of ``infra/k8s`` with the built images, apply it
with server-side apply, wait for the rollouts, or roll back (docs/deploy.md).

:func:`deploy` does one run: render (:mod:`flowops.ops.manifests`), connect
(:mod:`flowops.ops.cluster`), apply every object (:func:`flowops.ops.apply.apply_all`), and wait
(:func:`wait_all`, with the rules of :mod:`flowops.ops.rollout`); with ``rollback`` it
returns each workload to its previous revision first (:mod:`flowops.ops.rollback`).
Progress goes to ``say``, one line per change; the :class:`DeployReport` is the data.

>>> parse_images(["gateway=ghcr.io/acme/flowops-gateway:1.2.0"])
{'gateway': 'ghcr.io/acme/flowops-gateway:1.2.0'}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowops.errors import ClusterError, ConfigError
from flowops.ops import build as _build
from flowops.ops import manifests as _manifests
from flowops.ops.apply import Applied, apply_all
from flowops.ops.cluster import ClusterClient
from flowops.ops.rollback import rollback_all
from flowops.ops.waiting import Waited, wait_all, wait_targets

__all__ = [
    "DeployReport",
    "DeployRequest",
    "DeploySettings",
    "default_tag",
    "deploy",
    "deploy_images",
    "parse_images",
]

Say = Callable[[str], None]
Manifest = dict[str, Any]


class DeploySettings(BaseModel):
    """The ``deploy:`` section of the settings file."""

    model_config = ConfigDict(extra="forbid")

    registry: str | None = Field(
        None, description="images are <registry>/flowops-<service>:<tag>; default: the overlay's"
    )
    manifests: Path | None = Field(None, description="the infra/k8s tree; default: ./infra/k8s")
    kubeconfig: Path | None = Field(
        None, description="kubeconfig file; default: $KUBECONFIG, then ~/.kube/config"
    )
    context: str | None = Field(None, description="kubeconfig context; default: its current one")
    field_manager: str = Field("flowops", min_length=1, description="server-side apply manager")
    timeout: float = Field(300.0, gt=0, description="seconds --wait waits for all rollouts")
    poll_interval: float = Field(2.0, gt=0, le=60, description="seconds between status reads")
    request_timeout: float = Field(10.0, gt=0, le=300, description="seconds per API request")
    skip_missing_crds: bool = Field(
        False, description="skip objects of a kind the cluster lacks (warn) instead of failing"
    )
    indefinite_pause: Literal["wait", "succeed", "fail"] = Field(
        "wait", description="a canary paused until promoted: keep waiting, succeed, or fail"
    )


@dataclass(frozen=True)
class DeployRequest:
    """What the command line asked for."""

    env: str
    dry_run: bool = False
    wait: bool = False
    rollback: bool = False
    tag: str | None = None
    images: Mapping[str, str] = field(default_factory=dict)


@dataclass
class DeployReport:
    """The outcome of one ``flowops deploy``."""

    env: str
    dry_run: bool
    images: dict[str, str]
    server: str | None = None
    objects: list[Applied] = field(default_factory=list)
    rollouts: list[Waited] = field(default_factory=list)
    offline_yaml: str | None = None
    offline_reason: str | None = None

    @property
    def ok(self) -> bool:
        """False when an object failed or a rollout failed or timed out (exit 1)."""
        return not any(a.failed for a in self.objects) and all(w.ok for w in self.rollouts)

    def as_json(self) -> dict[str, Any]:
        found = {k: v for k, v in asdict(self).items() if k != "offline_yaml"}
        return found | {"ok": self.ok}


def default_tag(repo: Path | None = None) -> str:
    """The tag ``flowops build`` gives its images when built in ``repo`` (the current
    directory by default): ``<version>-<short commit>[-dirty]``, the bare version outside
    a git checkout. One rule, :func:`flowops.ops.build.default_tag`."""
    return _build.default_tag(_build.git_revision(repo or Path.cwd()))


def parse_images(values: Iterable[str]) -> dict[str, str]:
    """``SERVICE=REF`` pairs from ``--image``; ConfigError for a bad pair or service."""
    images: dict[str, str] = {}
    for value in values:
        service, sep, ref = value.partition("=")
        if not sep or not ref:
            raise ConfigError("--image", f"expected SERVICE=IMAGE, got {value!r}")
        if service not in _manifests.SERVICES:
            known = ", ".join(_manifests.SERVICES)
            raise ConfigError("--image", f"no service {service!r} (there are: {known})")
        images[service] = ref
    return images


def deploy_images(request: DeployRequest, settings: DeploySettings) -> dict[str, str]:
    """The image of each service: ``--image``, else ``<registry>/flowops-<svc>:<tag>``,
    else the overlay's own image name at ``<tag>`` (``--tag``, else :func:`default_tag`)."""
    bare = _manifests.render(request.env, root=settings.manifests)
    repositories = _repositories(bare)
    tag = request.tag or default_tag()
    images = {}
    for service, repository in repositories.items():
        if settings.registry:
            repository = f"{settings.registry.rstrip('/')}/{_manifests.image_name(service)}"
        images[service] = f"{repository}:{tag}"
    return images | dict(request.images)


def _repositories(manifests: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """service -> the image repository (no tag) its containers use in a rendering."""
    found: dict[str, str] = {}
    for manifest in manifests:
        pod = ((manifest.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in [*pod.get("containers", []), *pod.get("initContainers", [])]:
            repository = str(container.get("image", "")).split("@")[0]
            head, _, last = repository.rpartition("/")
            repository = f"{head}/{last.split(':')[0]}" if head else last.split(":")[0]
            for service in _manifests.SERVICES:
                if repository.rpartition("/")[2] == _manifests.image_name(service):
                    found[service] = repository
    return found


async def deploy(
    request: DeployRequest,
    settings: DeploySettings,
    *,
    say: Say,
    cluster: ClusterClient | None = None,
) -> DeployReport:
    """One ``flowops deploy`` run; ``cluster`` defaults to the kubeconfig's cluster."""
    if request.rollback and request.dry_run:
        raise ConfigError("--rollback", "has no dry run: leave out --dry-run")
    images = deploy_images(request, settings)
    rendered = _manifests.render(request.env, images, root=settings.manifests)
    report = DeployReport(request.env, request.dry_run, images)
    own = cluster is None
    if cluster is None:
        cluster = await _connect(settings, report, rendered)
        if cluster is None:
            return report
    try:
        report.server = cluster.server
        await _check_reachable(cluster, report, rendered)
        if report.offline_yaml is not None:
            return report
        await _run(cluster, request, settings, rendered, report, say)
    finally:
        if own:
            await cluster.close()
    return report


async def _connect(
    settings: DeploySettings, report: DeployReport, rendered: list[Manifest]
) -> ClusterClient | None:
    from flowops.ops.cluster import connect, kubeconfig_path

    path = kubeconfig_path(settings.kubeconfig)
    if path is None:
        reason = "no kubeconfig (--kubeconfig, deploy.kubeconfig, $KUBECONFIG, ~/.kube/config)"
        if not report.dry_run:
            raise ConfigError("deploy.kubeconfig", reason)
        _offline(report, rendered, reason)
        return None
    return await connect(path, settings.context, request_timeout=settings.request_timeout)


async def _check_reachable(
    cluster: ClusterClient, report: DeployReport, rendered: list[Manifest]
) -> None:
    try:
        await cluster.version()
    except ClusterError as exc:
        if not report.dry_run or exc.status is not None:
            raise
        _offline(report, rendered, f"the cluster at {cluster.server} did not answer: {exc.reason}")


def _offline(report: DeployReport, rendered: list[Manifest], reason: str) -> None:
    report.offline_yaml = _manifests.to_yaml(rendered)
    report.offline_reason = f"{reason}; no server dry run, printing the manifests instead"


async def _run(
    cluster: ClusterClient,
    request: DeployRequest,
    settings: DeploySettings,
    rendered: list[Manifest],
    report: DeployReport,
    say: Say,
) -> None:
    if request.rollback:
        report.objects = await rollback_all(cluster, rendered, settings.field_manager, say)
    else:
        report.objects = await apply_all(
            cluster,
            rendered,
            manager=settings.field_manager,
            dry_run=request.dry_run,
            skip_missing_crds=settings.skip_missing_crds,
            say=say,
        )
    if request.dry_run or not (request.wait or request.rollback):
        return
    failed = {(a.kind, a.namespace, a.name) for a in report.objects if a.failed}
    targets = [
        (rtype, namespace, name)
        for rtype, namespace, name in await wait_targets(cluster, rendered, say)
        if (rtype.kind, namespace, name) not in failed
    ]
    report.rollouts = await wait_all(
        cluster,
        targets,
        timeout=settings.timeout,
        poll_interval=settings.poll_interval,
        on_pause=settings.indefinite_pause,
        say=say,
    )
