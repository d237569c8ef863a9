"""Kubernetes manifests from ``infra/k8s``, rendered in Python for ``flowops deploy``.

``infra/k8s`` holds a ``base/``, ``components/`` and one overlay per environment under
``overlays/<env>/``, each folder with a ``kustomization.yaml`` (docs/kubernetes.md).
:func:`render` builds an overlay the way ``kustomize build`` would, for the subset of
kustomize that :mod:`flowops.ops.kustomize` implements (kustomize itself need not be
installed), then sets the images that were built; :func:`to_yaml` prints the result.

Where the manifests are (:func:`default_root`): the ``root`` given (``flowops deploy``
passes ``deploy.manifests``), else ``infra/k8s`` under the working directory, else the
one in the FlowOps checkout this package is installed from (an editable install).

>>> images_for("0.4.0-abc1234", registry="ghcr.io/acme")["gateway"]
'ghcr.io/acme/flowops-gateway:0.4.0-abc1234'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from flowops.errors import ConfigError
from flowops.ops.kustomize import KUSTOMIZATION as _KUSTOMIZATION
from flowops.ops.kustomize import build as _build
from flowops.ops.kustomize import replace_images as _replace_images

__all__ = [
    "ENVIRONMENTS",
    "SERVICES",
    "default_root",
    "find",
    "image_name",
    "images_for",
    "manifest_key",
    "render",
    "to_yaml",
]

ENVIRONMENTS: Final = ("dev", "staging", "prod")
"""The overlays FlowOps ships, in promotion order."""

SERVICES: Final = ("gateway", "worker", "monitor")
"""The FlowOps services with an image (``infra/containerfiles/<service>.Containerfile``)."""

_KIND_ORDER: Final = (
    "Namespace",
    "ServiceAccount",
    "SecretStore",
    "ExternalSecret",
    "ConfigMap",
    "Secret",
    "Service",
    "Kafka",
    "KafkaNodePool",
    "KafkaTopic",
    "Deployment",
    "StatefulSet",
    "Rollout",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "ServiceMonitor",
)

Manifest = dict[str, Any]


def image_name(service: str) -> str:
    """The image name of a FlowOps service: ``flowops-<service>``.

    >>> image_name("worker")
    'flowops-worker'
    """
    return f"flowops-{service}"


def images_for(tag: str, registry: str | None = None) -> dict[str, str]:
    """Full image references of every service at ``tag``, for :func:`render`'s ``images``.

    >>> images_for("0.4.0")
    {'gateway': 'flowops-gateway:0.4.0', 'worker': 'flowops-worker:0.4.0', 'monitor': 'flowops-monitor:0.4.0'}
    """  # noqa: E501
    prefix = f"{registry.rstrip('/')}/" if registry else ""
    return {service: f"{prefix}{image_name(service)}:{tag}" for service in SERVICES}


def default_root() -> Path:
    """``infra/k8s`` under the working directory if there is one, else the one in the
    FlowOps checkout this package runs from (an editable install)."""
    here = Path("infra/k8s")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[2] / "infra" / "k8s"


def manifest_key(manifest: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(kind, namespace, name)``: what identifies a resource in a rendering.

    >>> manifest_key({"kind": "Service", "metadata": {"name": "gateway", "namespace": "x"}})
    ('Service', 'x', 'gateway')
    """
    metadata = manifest.get("metadata") or {}
    return (str(manifest.get("kind")), str(metadata.get("namespace", "")), str(metadata["name"]))


def find(manifests: Iterable[Mapping[str, Any]], kind: str, name: str) -> Mapping[str, Any]:
    """The one resource of ``kind`` named ``name``; KeyError when there is none."""
    for manifest in manifests:
        if manifest.get("kind") == kind and manifest["metadata"]["name"] == name:
            return manifest
    raise KeyError(f"{kind}/{name}")


def render(
    env: str, images: Mapping[str, str] | None = None, *, root: Path | None = None
) -> list[Manifest]:
    """The manifests of overlay ``env`` (``<root>/overlays/<env>``), fully built.

    Base and overlay resources, with the overlay's components and patches applied,
    namespace and labels set and image references replaced. ``images`` maps a service
    name (``"gateway"``) or an image name (``"flowops-gateway"``) to a full reference
    (``"registry/flowops-gateway:0.4.0-abc1234"``); it wins over the overlay's
    ``images``. ``root`` defaults to :func:`default_root`.

    Raises ConfigError naming the overlay when it does not exist (listing those that
    do), a file that is not valid, or an ``images`` key that no container uses.
    """
    base = root if root is not None else default_root()
    overlay = base / "overlays" / env
    if not (overlay / _KUSTOMIZATION).is_file():
        there = sorted(p.parent.name for p in (base / "overlays").glob(f"*/{_KUSTOMIZATION}"))
        known = ", ".join(there) or "none"
        raise ConfigError(
            "deploy.env", f"no overlay {env!r} in {base}/overlays (there are: {known})"
        )
    manifests = _build(overlay)
    if images:
        _set_images(manifests, images)
    return sorted(manifests, key=_order)


def to_yaml(manifests: Sequence[Mapping[str, Any]]) -> str:
    """Multi-document YAML of ``manifests``, in their order, keys as written.

    >>> print(to_yaml([{"kind": "A", "metadata": {"name": "a"}}, {"kind": "B"}]), end="")
    kind: A
    metadata:
      name: a
    ---
    kind: B
    """
    return "---\n".join(
        yaml.dump(dict(m), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
        for m in manifests
    )


class _Dumper(yaml.SafeDumper):
    """Safe YAML without aliases, multi-line strings (a ConfigMap's file) as ``|`` blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _set_images(manifests: list[Manifest], images: Mapping[str, str]) -> None:
    by_image = {image_name(k) if k in SERVICES else k: v for k, v in images.items()}
    unused = sorted(set(by_image) - _replace_images(manifests, by_image, loose=True))
    if unused:
        raise ConfigError("images", f"no container runs image {unused[0]!r}")


def _order(manifest: Manifest) -> tuple[int, str, str]:
    kind, _, name = manifest_key(manifest)
    rank = _KIND_ORDER.index(kind) if kind in _KIND_ORDER else len(_KIND_ORDER)
    return (rank, kind, name)
