"""What :class:`flowops.ops.fake_cluster.FakeCluster` does to one object, as an API
server would: merge an apply, validate, apply a JSON patch, compare templates."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, Final

from flowops.errors import ClusterError
from flowops.ops import rollout as _rollout
from flowops.ops.cluster import ResourceType
from flowops.ops.rollout import revision_of

Obj = dict[str, Any]

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_TEMPLATED: Final = ("Deployment", "StatefulSet", "DaemonSet", "Rollout")


def merged(current: Obj | None, manifest: Mapping[str, Any], manager: str) -> Obj:
    """The object after one manager applies ``manifest``: its fields replace that manager's
    (the only one), server fields and ``status`` stay, ``generation`` counts spec changes."""
    new: Obj = copy.deepcopy(dict(manifest))
    metadata = new["metadata"]
    spec = new.get("spec")
    if new["kind"] in ("Deployment", "StatefulSet", "Rollout") and isinstance(spec, dict):
        # defaulted to 1 on create; later, another manager's (the HPA's) when not applied
        earlier = ((current or {}).get("spec") or {}).get("replicas", 1)
        spec.setdefault("replicas", earlier)
    metadata["managedFields"] = [
        {
            "manager": manager,
            "operation": "Apply",
            "apiVersion": new["apiVersion"],
            "fieldsType": "FieldsV1",
        }
    ]
    if current is None:
        where = f"{new['kind']}-{metadata.get('namespace', '')}-{metadata['name']}"
        metadata.update(uid=f"uid-{where}".lower(), generation=1)
        metadata["creationTimestamp"] = "2026-01-01T00:00:00Z"
        return new
    old = current["metadata"]
    metadata.update(uid=old["uid"], creationTimestamp=old["creationTimestamp"])
    revision = (old.get("annotations") or {}).get(_rollout.DEPLOYMENT_REVISION)
    if revision is not None:  # the Deployment controller's field: another manager's, kept
        metadata["annotations"] = {
            _rollout.DEPLOYMENT_REVISION: revision,
            **(metadata.get("annotations") or {}),
        }
    changed = new.get("spec") != current.get("spec")
    metadata["generation"] = old.get("generation", 1) + (1 if changed else 0)
    if "status" in current:
        new["status"] = copy.deepcopy(current["status"])
    return new


def comparable(obj: Mapping[str, Any]) -> Obj:
    view = {k: v for k, v in obj.items() if k != "status"}
    view["metadata"] = {
        k: v for k, v in obj["metadata"].items() if k not in ("resourceVersion", "managedFields")
    }
    return view


def validate(rtype: ResourceType, obj: Mapping[str, Any]) -> None:
    name = (obj.get("metadata") or {}).get("name")
    what = f'{rtype.kind}.{rtype.group or "core"} "{name}" is invalid'
    if not isinstance(name, str) or not _NAME.match(name):
        raise ClusterError("", f"{what}: metadata.name: Invalid value: {name!r}", status=422)
    spec = obj.get("spec") or {}
    if rtype.kind not in _TEMPLATED or spec.get("workloadRef"):
        return
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector.items() <= labels.items():
        raise ClusterError(
            "",
            f"{what}: spec.template.metadata.labels: Invalid value: {labels}: "
            "`selector` does not match template `labels`",
            status=422,
        )
    for index, container in enumerate(
        ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    ):
        if not container.get("image"):
            field = f"spec.template.spec.containers[{index}].image"
            raise ClusterError("", f"{what}: {field}: Required value", status=422)


def json_patch(obj: Obj, operation: Mapping[str, Any]) -> None:
    """One RFC 6902 operation (add, replace, remove) on ``obj``, in place."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
    parent = obj
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
    last, op = parts[-1], operation["op"]
    if op in ("add", "replace"):
        parent[last] = copy.deepcopy(operation["value"])
    elif op == "remove":
        del parent[last]
    else:
        raise ClusterError("", f"the fake cluster does not do JSON patch op {op!r}", status=422)


def owner_uid(obj: Mapping[str, Any]) -> str | None:
    for reference in obj["metadata"].get("ownerReferences") or []:
        if reference.get("controller"):
            return str(reference["uid"])
    return None


def same_template(
    replicaset: Mapping[str, Any], template: Mapping[str, Any], hash_label: str
) -> bool:
    mine = copy.deepcopy(replicaset["spec"]["template"])
    mine.get("metadata", {}).get("labels", {}).pop(hash_label, None)
    return bool(mine == template)


def any_revision(replicaset: Mapping[str, Any]) -> int:
    return max(
        revision_of(replicaset, _rollout.DEPLOYMENT_REVISION),
        revision_of(replicaset, _rollout.ARGO_REVISION),
    )
