"""``flowops deploy --rollback``: each workload of an overlay back to its previous revision.

A Deployment goes back the way ``kubectl rollout undo`` takes it: list the ReplicaSets it
controls, take the one with the second-highest ``deployment.kubernetes.io/revision``,
and JSON-patch the Deployment's ``spec.template`` to that ReplicaSet's template without
its ``pod-template-hash`` label (its annotations as kubectl copies them, too). An Argo
``Rollout`` goes back the way ``kubectl argo rollouts undo`` takes it: the same, over the
ReplicaSets it controls (``rollout.argoproj.io/revision``, ``rollouts-pod-template-hash``),
patching the Rollout's template, or, when the Rollout takes its template from a
Deployment (``workloadRef``), that Deployment's. The pure parts are in
:mod:`flowops.ops.rollout`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flowops.ops import rollout as _rollout
from flowops.ops.apply import Applied
from flowops.ops.cluster import ClusterClient, ResourceType
from flowops.ops.rollout import (
    previous_revision,
    revision_of,
    rollback_annotations,
    rollback_template,
)

__all__ = ["rollback_all", "rollback_one"]

Say = Callable[[str], None]


async def rollback_all(
    cluster: ClusterClient, rendered: Sequence[Mapping[str, Any]], manager: str, say: Say
) -> list[Applied]:
    """Roll back every Deployment and Rollout of ``rendered`` (Deployments that a Rollout
    takes its template from are the Rollout's to roll back)."""
    referenced = {
        (m["metadata"].get("namespace"), m["spec"]["workloadRef"]["name"])
        for m in rendered
        if m["kind"] == "Rollout" and (m.get("spec") or {}).get("workloadRef")
    }
    done = []
    for manifest in rendered:
        kind, metadata = manifest["kind"], manifest["metadata"]
        namespace, name = metadata.get("namespace"), metadata["name"]
        if kind not in ("Deployment", "Rollout"):
            continue
        if kind == "Deployment" and (namespace, name) in referenced:
            continue
        rtype = await cluster.resource_type(manifest["apiVersion"], kind)
        if rtype is None:
            done.append(Applied(kind, namespace, name, "skipped: CRD not installed"))
            continue
        outcome = await rollback_one(cluster, rtype, namespace, name, manager)
        say(f"{rtype.describe(namespace, name)}: {outcome.action}")
        done.append(outcome)
    return done


async def rollback_one(
    cluster: ClusterClient, rtype: ResourceType, namespace: str | None, name: str, manager: str
) -> Applied:
    """Return one Deployment or Rollout to its previous revision."""
    owner = await cluster.get(rtype, namespace, name)
    if owner is None:
        return Applied(rtype.kind, namespace, name, "failed: not on the cluster", failed=True)
    argo = rtype.kind == "Rollout"
    annotation = _rollout.ARGO_REVISION if argo else _rollout.DEPLOYMENT_REVISION
    hash_label = _rollout.ARGO_HASH_LABEL if argo else _rollout.DEPLOYMENT_HASH_LABEL
    previous = await _previous(cluster, owner, annotation)
    if previous is None:
        why = "failed: no previous revision to return to"
        return Applied(rtype.kind, namespace, name, why, failed=True)
    revision = revision_of(previous, annotation)
    template = rollback_template(previous, hash_label)
    target_type, target = rtype, owner
    reference = (owner.get("spec") or {}).get("workloadRef")
    if argo and reference:
        found = await _referenced(cluster, reference, namespace)
        if found is None:
            why = f"failed: its workload {reference.get('kind')}/{reference.get('name')} is missing"
            return Applied(rtype.kind, namespace, name, why, failed=True)
        target_type, target = found
    if rollback_template(target, hash_label) == template:
        why = f"skipped: the template already matches revision {revision}"
        return Applied(rtype.kind, namespace, name, why)
    operations: list[dict[str, Any]] = [
        {"op": "replace", "path": "/spec/template", "value": template}
    ]
    if not argo:
        annotations = rollback_annotations(owner, previous)
        operations.append({"op": "add", "path": "/metadata/annotations", "value": annotations})
    target_name = target["metadata"]["name"]
    await cluster.patch(target_type, namespace, target_name, operations, manager=manager)
    return Applied(rtype.kind, namespace, name, f"rolled back to revision {revision}")


async def _previous(
    cluster: ClusterClient, owner: Mapping[str, Any], annotation: str
) -> Mapping[str, Any] | None:
    replicasets = await cluster.resource_type("apps/v1", "ReplicaSet")
    assert replicasets is not None, "every cluster serves apps/v1 ReplicaSet"
    labels = ((owner.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
    metadata = owner["metadata"]
    found = await cluster.list_objects(replicasets, metadata.get("namespace"), selector)
    return previous_revision(found, metadata["uid"], annotation)


async def _referenced(
    cluster: ClusterClient, reference: Mapping[str, Any], namespace: str | None
) -> tuple[ResourceType, dict[str, Any]] | None:
    api_version = str(reference.get("apiVersion", "apps/v1"))
    rtype = await cluster.resource_type(api_version, str(reference.get("kind")))
    if rtype is None:
        return None
    found = await cluster.get(rtype, namespace, str(reference.get("name")))
    return None if found is None else (rtype, copy.deepcopy(found))
