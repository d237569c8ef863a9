"""Server-side apply of rendered objects, and what happened to each (:class:`Applied`).

Its own module because both ``flowops deploy`` (:mod:`flowops.ops.deploy`) and its
``--rollback`` (:mod:`flowops.ops.rollback`) report in :class:`Applied` records: with the
record in either of them, each imported the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from flowops.errors import ClusterError
from flowops.ops import manifests as _manifests
from flowops.ops.cluster import ClusterClient, ResourceType

__all__ = ["Applied", "apply_all"]

Say = Callable[[str], None]

_OPERATORS: Final = {
    "argoproj.io": "Argo Rollouts",
    "external-secrets.io": "External Secrets Operator",
    "monitoring.coreos.com": "Prometheus Operator",
    "kafka.strimzi.io": "Strimzi",
}


@dataclass(frozen=True)
class Applied:
    """What happened to one object: created, configured, unchanged, skipped, rolled back."""

    kind: str
    namespace: str | None
    name: str
    action: str
    failed: bool = False


async def apply_all(
    cluster: ClusterClient,
    rendered: Sequence[Mapping[str, Any]],
    *,
    manager: str,
    dry_run: bool,
    skip_missing_crds: bool,
    say: Say,
) -> list[Applied]:
    """Server-side apply of each object in order (force, field manager ``manager``).

    Discovery comes first: a kind the cluster does not serve is an error naming it
    before anything is applied, or, with ``skip_missing_crds``, a warning and a skip.
    In a dry run, objects in a namespace the run would create cannot be checked by the
    server (it has no such namespace yet); they are reported as new, unchecked.
    """
    types = await _discover(cluster, rendered, skip_missing_crds, say)
    new_namespaces: set[str] = set()
    applied = []
    for manifest in rendered:
        kind, namespace, name = _manifests.manifest_key(manifest)
        rtype = types[(manifest["apiVersion"], kind)]
        namespace_or_none = namespace or None
        if rtype is None:
            applied.append(Applied(kind, namespace_or_none, name, "skipped: CRD not installed"))
            continue
        if dry_run and rtype.namespaced and namespace in new_namespaces:
            action = f"created (namespace {namespace} is new: not checked by the server)"
        else:
            current = await cluster.get(rtype, namespace_or_none, name)
            result = await cluster.apply(rtype, manifest, manager=manager, dry_run=dry_run)
            action = _action(current, result)
            if kind == "Namespace" and current is None:
                new_namespaces.add(name)
        applied.append(Applied(kind, namespace_or_none, name, action))
        suffix = " (server dry run)" if dry_run else ""
        say(f"{rtype.describe(namespace_or_none, name)} {action}{suffix}")
    return applied


async def _discover(
    cluster: ClusterClient, rendered: Sequence[Mapping[str, Any]], skip: bool, say: Say
) -> dict[tuple[str, str], ResourceType | None]:
    types: dict[tuple[str, str], ResourceType | None] = {}
    for manifest in rendered:
        key = (str(manifest["apiVersion"]), str(manifest["kind"]))
        if key in types:
            continue
        types[key] = await cluster.resource_type(*key)
        if types[key] is not None:
            continue
        api_version, kind = key
        group = api_version.rpartition("/")[0]
        missing = f"the cluster does not serve {kind} ({api_version})"
        hint = f"install the {_OPERATORS[group]} CRDs" if group in _OPERATORS else "install its CRD"
        if not skip:
            raise ClusterError(
                cluster.server, f"{missing}: {hint}, or set deploy.skip_missing_crds", status=404
            )
        say(f"warning: {missing}: skipping its objects ({hint} to deploy them)")
    return types


def _action(current: Mapping[str, Any] | None, result: Mapping[str, Any]) -> str:
    if current is None:
        return "created"
    return "unchanged" if _comparable(current) == _comparable(result) else "configured"


def _comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    skip = {"resourceVersion", "managedFields", "generation"}
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in skip}
    return {k: v for k, v in obj.items() if k != "status"} | {"metadata": metadata}
