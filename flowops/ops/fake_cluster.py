"""An in-memory Kubernetes API for tests: :class:`FakeCluster` is a
:class:`~flowops.ops.cluster.ClusterClient` that stores objects the way an API server
would, for exactly the calls ``flowops deploy`` makes.

What it does like a real server: discovery of the kinds it "has installed" (built-in
kinds, and the CRD kinds given), server-side apply (the applied object replaces the one
manager's fields; ``metadata.generation`` goes up when ``spec`` changes,
``resourceVersion`` on every change, ``dryRun`` validates and returns without storing),
a 404 for a namespace that does not exist, a 422 for a selector that does not match the
pod template, a 403 for what a test forbids, JSON patches. Like the Deployment and Argo
Rollouts controllers, it makes a ReplicaSet with the next revision annotation whenever a
Deployment's or Rollout's pod template changes (reusing the ReplicaSet of an earlier
template, as a rollback does). It never changes ``status``: tests do
(:meth:`FakeCluster.set_status`), to play a rollout forward or make it fail.

``tests/integration/k8s_api.py`` serves a FakeCluster over HTTP in the Kubernetes wire
format, so the same rules answer the real client.

>>> import asyncio
>>> cluster = FakeCluster()
>>> ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}}
>>> rtype = asyncio.run(cluster.resource_type("v1", "Namespace"))
>>> asyncio.run(cluster.apply(rtype, ns, manager="flowops", dry_run=False))["metadata"][
...     "resourceVersion"]
'1'
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from flowops.errors import ClusterError
from flowops.ops import _fake_objects as _objects
from flowops.ops import rollout as _rollout
from flowops.ops.cluster import ResourceType
from flowops.ops.rollout import revision_of

__all__ = ["BUILTIN_TYPES", "CRD_TYPES", "Call", "FakeCluster"]

Obj = dict[str, Any]


def _types(api_version: str, *kinds: tuple[str, str, bool]) -> tuple[ResourceType, ...]:
    return tuple(ResourceType(api_version, kind, plural, ns) for kind, plural, ns in kinds)


BUILTIN_TYPES: Final = (
    *_types(
        "v1",
        ("Namespace", "namespaces", False),
        ("ServiceAccount", "serviceaccounts", True),
        ("ConfigMap", "configmaps", True),
        ("Secret", "secrets", True),
        ("Service", "services", True),
    ),
    *_types(
        "apps/v1",
        ("Deployment", "deployments", True),
        ("ReplicaSet", "replicasets", True),
        ("StatefulSet", "statefulsets", True),
        ("DaemonSet", "daemonsets", True),
    ),
    *_types("autoscaling/v2", ("HorizontalPodAutoscaler", "horizontalpodautoscalers", True)),
    *_types("policy/v1", ("PodDisruptionBudget", "poddisruptionbudgets", True)),
    *_types("networking.k8s.io/v1", ("NetworkPolicy", "networkpolicies", True)),
)
"""Kinds every cluster serves (those FlowOps' manifests and rollbacks use)."""

CRD_TYPES: Final = (
    *_types("argoproj.io/v1alpha1", ("Rollout", "rollouts", True)),
    *_types(
        "external-secrets.io/v1beta1",
        ("SecretStore", "secretstores", True),
        ("ExternalSecret", "externalsecrets", True),
    ),
    *_types("monitoring.coreos.com/v1", ("ServiceMonitor", "servicemonitors", True)),
    *_types(
        "kafka.strimzi.io/v1beta2",
        ("Kafka", "kafkas", True),
        ("KafkaNodePool", "kafkanodepools", True),
        ("KafkaTopic", "kafkatopics", True),
    ),
)
"""Custom kinds of the operators FlowOps' overlays use: Argo Rollouts, External Secrets,
Prometheus Operator and Strimzi."""


@dataclass(frozen=True)
class Call:
    """One call a FakeCluster answered: ``verb`` as RBAC names it."""

    verb: str
    kind: str
    namespace: str | None
    name: str | None
    dry_run: bool = False
    manager: str | None = None


class FakeCluster:
    """An in-memory API server; see the module docstring for what it does."""

    def __init__(
        self, types: Iterable[ResourceType] = (*BUILTIN_TYPES, *CRD_TYPES), *, server: str = ""
    ) -> None:
        self.types = {(t.api_version, t.kind): t for t in types}
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.calls: list[Call] = []
        self.forbidden: set[tuple[str, str]] = set()
        self.scripts: dict[tuple[str, str, str], tuple[int, list[Obj]]] = {}
        self._writes: dict[tuple[str, str, str], int] = {}
        self._server = server or "fake://cluster"
        self._version = 0

    @property
    def server(self) -> str:
        return self._server

    # ----- the ClusterClient calls -------------------------------------------------------
    async def version(self) -> Obj:
        return {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "fake"}

    async def resource_type(self, api_version: str, kind: str) -> ResourceType | None:
        return self.types.get((api_version, kind))

    async def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj | None:
        self._record(Call("get", rtype.kind, namespace, name))
        key = self._key(rtype, namespace, name)
        since, statuses = self.scripts.get(key, (0, []))
        if statuses and key in self.objects and self._writes.get(key, 0) > since:
            self._play(key)
        found = self.objects.get(key)
        return copy.deepcopy(found) if found is not None else None

    async def list_objects(
        self, rtype: ResourceType, namespace: str | None, selector: str
    ) -> list[Obj]:
        self._record(Call("list", rtype.kind, namespace, None))
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        return [
            copy.deepcopy(obj)
            for (kind, ns, _), obj in sorted(self.objects.items())
            if kind == rtype.kind
            and ns == (namespace or "")
            and wanted.items() <= (obj["metadata"].get("labels") or {}).items()
        ]

    async def apply(
        self, rtype: ResourceType, manifest: Mapping[str, Any], *, manager: str, dry_run: bool
    ) -> Obj:
        metadata = manifest.get("metadata") or {}
        namespace = metadata.get("namespace") if rtype.namespaced else None
        self._record(Call("patch", rtype.kind, namespace, metadata.get("name"), dry_run, manager))
        _objects.validate(rtype, manifest)
        self._check_namespace(rtype, namespace)
        key = self._key(rtype, namespace, metadata["name"])
        current = self.objects.get(key)
        new = _objects.merged(current, manifest, manager)
        if not dry_run:
            self._writes[key] = self._writes.get(key, 0) + 1
        if current is not None and _objects.comparable(new) == _objects.comparable(current):
            return copy.deepcopy(current)
        self._version += 1
        new["metadata"]["resourceVersion"] = str(self._version)
        if not dry_run:
            self._store(rtype, key, new)
        return copy.deepcopy(new)

    async def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        operations: Sequence[Mapping[str, Any]],
        *,
        manager: str,
    ) -> Obj:
        self._record(Call("patch", rtype.kind, namespace, name, manager=manager))
        key = self._key(rtype, namespace, name)
        current = self.objects.get(key)
        if current is None:
            raise ClusterError(self.server, f'{rtype.resource} "{name}" not found', status=404)
        new = copy.deepcopy(current)
        for operation in operations:
            _objects.json_patch(new, operation)
        _objects.validate(rtype, new)
        if new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        self._version += 1
        new["metadata"]["resourceVersion"] = str(self._version)
        self._writes[key] = self._writes.get(key, 0) + 1
        self._store(rtype, key, new)
        return copy.deepcopy(new)

    async def close(self) -> None:
        return None

    # ----- what tests drive --------------------------------------------------------------
    def obj(self, kind: str, namespace: str | None, name: str) -> Obj:
        """The stored object (a copy); KeyError when there is none."""
        return copy.deepcopy(self.objects[(kind, namespace or "", name)])

    def set_status(
        self, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> None:
        """Replace the object's ``status``, as its controller would."""
        stored = self.objects[(kind, namespace or "", name)]
        stored["status"] = copy.deepcopy(dict(status))
        self._version += 1
        stored["metadata"]["resourceVersion"] = str(self._version)

    def script(self, kind: str, namespace: str | None, name: str, statuses: Iterable[Obj]) -> None:
        """Statuses the object takes one by one, one per read of it (the last one stays):
        a rollout played forward without timing. A status without ``observedGeneration``
        gets the object's generation then (a string for a Rollout, as Argo writes it).

        The script starts with the object's next write (an apply, changed or not, or a
        patch), as a rollout starts with a deploy: reads before that leave it alone."""
        key = (kind, namespace or "", name)
        self.scripts[key] = (self._writes.get(key, 0), [dict(s) for s in statuses])

    def _play(self, key: tuple[str, str, str]) -> None:
        status = self.scripts[key][1].pop(0)
        stored = self.objects[key]
        if "observedGeneration" not in status:
            generation = stored["metadata"].get("generation", 1)
            status["observedGeneration"] = str(generation) if key[0] == "Rollout" else generation
        self.set_status(*key, status)

    def replicasets(self, namespace: str) -> list[Obj]:
        """The ReplicaSets in ``namespace``, oldest revision first."""
        found = [
            o for (k, ns, _), o in self.objects.items() if k == "ReplicaSet" and ns == namespace
        ]
        return sorted(found, key=lambda rs: (_objects.any_revision(rs), rs["metadata"]["name"]))

    # ----- internals ---------------------------------------------------------------------
    def _record(self, call: Call) -> None:
        self.calls.append(call)
        rtype = next((t for t in self.types.values() if t.kind == call.kind), None)
        if rtype is not None and (call.verb, rtype.resource) in self.forbidden:
            user = "system:serviceaccount:ci:deployer"
            where = f' in the namespace "{call.namespace}"' if call.namespace else ""
            raise ClusterError(
                self.server,
                f'{rtype.resource} "{call.name}" is forbidden: User "{user}" cannot '
                f'{call.verb} resource "{rtype.plural}" in API group "{rtype.group}"{where}',
                status=403,
            )

    def _key(self, rtype: ResourceType, namespace: str | None, name: str) -> tuple[str, str, str]:
        return (rtype.kind, (namespace or "") if rtype.namespaced else "", name)

    def _check_namespace(self, rtype: ResourceType, namespace: str | None) -> None:
        if not rtype.namespaced:
            return
        if not namespace:
            raise ClusterError(self.server, "the namespace of the object is missing", status=422)
        if ("Namespace", "", namespace) not in self.objects:
            raise ClusterError(self.server, f'namespaces "{namespace}" not found', status=404)

    def _store(self, rtype: ResourceType, key: tuple[str, str, str], new: Obj) -> None:
        self.objects[key] = new
        if rtype.kind in ("Deployment", "Rollout"):
            self._controllers(key[1])

    def _controllers(self, namespace: str) -> None:
        """New ReplicaSet revisions for Deployments and Rollouts whose template changed."""
        for (kind, ns, _), owner in list(self.objects.items()):
            if ns != namespace or kind not in ("Deployment", "Rollout"):
                continue
            template = self._template_of(owner)
            if template is None:
                continue
            if kind == "Deployment":
                revision = self._revision(
                    owner, template, _rollout.DEPLOYMENT_REVISION, _rollout.DEPLOYMENT_HASH_LABEL
                )
                owner["metadata"].setdefault("annotations", {})[_rollout.DEPLOYMENT_REVISION] = (
                    revision
                )
            else:
                self._revision(owner, template, _rollout.ARGO_REVISION, _rollout.ARGO_HASH_LABEL)

    def _template_of(self, owner: Obj) -> Obj | None:
        reference = (owner.get("spec") or {}).get("workloadRef")
        if reference:
            target = self.objects.get(
                (reference["kind"], owner["metadata"]["namespace"], reference["name"])
            )
            template = (target or {}).get("spec", {}).get("template")
        else:
            template = (owner.get("spec") or {}).get("template")
        return dict(template) if isinstance(template, Mapping) else None

    def _revision(self, owner: Obj, template: Obj, annotation: str, hash_label: str) -> str:
        namespace, uid = owner["metadata"]["namespace"], owner["metadata"]["uid"]
        owned = [rs for rs in self.replicasets(namespace) if _objects.owner_uid(rs) == uid]
        same = [rs for rs in owned if _objects.same_template(rs, template, hash_label)]
        top = max((revision_of(rs, annotation) for rs in owned), default=0)
        if owned and same and revision_of(same[0], annotation) == top:
            return str(top)
        stored = (
            self.objects[("ReplicaSet", namespace, same[0]["metadata"]["name"])] if same else None
        )
        if stored is None:
            stored = self._new_replicaset(owner, template, hash_label)
        stored["metadata"].setdefault("annotations", {})[annotation] = str(top + 1)
        return str(top + 1)

    def _new_replicaset(self, owner: Obj, template: Obj, hash_label: str) -> Obj:
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        pod_template = copy.deepcopy(template)
        pod_template.setdefault("metadata", {}).setdefault("labels", {})[hash_label] = digest
        selector = copy.deepcopy((owner["spec"].get("selector") or {}).get("matchLabels") or {})
        metadata = owner["metadata"]
        self._version += 1
        replicaset: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{metadata['name']}-{digest}",
                "namespace": metadata["namespace"],
                "uid": f"uid-rs-{self._version}",
                "resourceVersion": str(self._version),
                "labels": dict(pod_template["metadata"]["labels"]),
                "ownerReferences": [
                    {
                        "apiVersion": owner["apiVersion"],
                        "kind": owner["kind"],
                        "name": metadata["name"],
                        "uid": metadata["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "selector": {"matchLabels": {**selector, hash_label: digest}},
                "template": pod_template,
            },
        }
        self.objects[("ReplicaSet", metadata["namespace"], replicaset["metadata"]["name"])] = (
            replicaset
        )
        return replicaset
