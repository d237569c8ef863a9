"""When is a rollout done? The rules of ``kubectl rollout status`` and of Argo Rollouts'
``kubectl argo rollouts status``, as pure functions over the objects the API returns.

Nothing here talks to a cluster: :func:`rollout_status` reads one object (a dict as the
API server sends it) and says whether its rollout is waiting, done, paused or failed, in
the words kubectl would print. These are the rules a real cluster could contradict, so
they are tested on recorded status objects (``tests/unit/ops/recorded/``).

>>> deployment = {
...     "kind": "Deployment",
...     "metadata": {"name": "web", "generation": 2},
...     "spec": {"replicas": 3},
...     "status": {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3},
... }
>>> rollout_status(deployment)
RolloutStatus(state='waiting', message='1 old replicas are pending termination')

The module also holds the pure half of a rollback (:func:`previous_revision`,
:func:`rollback_template`): which ReplicaSet ``kubectl rollout undo`` returns to, and the
pod template it copies back.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

__all__ = [
    "ARGO_HASH_LABEL",
    "ARGO_REVISION",
    "DEPLOYMENT_HASH_LABEL",
    "DEPLOYMENT_REVISION",
    "WORKLOAD_KINDS",
    "RolloutState",
    "RolloutStatus",
    "previous_revision",
    "revision_of",
    "rollback_annotations",
    "rollback_template",
    "rollout_status",
]

WORKLOAD_KINDS: Final = ("Deployment", "StatefulSet", "DaemonSet", "Rollout")
"""Kinds whose rollout ``flowops deploy --wait`` waits for."""

DEPLOYMENT_REVISION: Final = "deployment.kubernetes.io/revision"
DEPLOYMENT_HASH_LABEL: Final = "pod-template-hash"
ARGO_REVISION: Final = "rollout.argoproj.io/revision"
ARGO_HASH_LABEL: Final = "rollouts-pod-template-hash"
_ARGO_WORKLOAD_GENERATION: Final = "rollout.argoproj.io/workload-generation"

# kubectl's annotationsToSkip: kept from the Deployment, never copied from the ReplicaSet
_SKIPPED_ANNOTATIONS: Final = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        DEPLOYMENT_REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)

RolloutState: TypeAlias = Literal["waiting", "paused", "done", "failed"]
"""``paused``: an Argo Rollout paused with no end (a ``pause: {}`` step or ``spec.paused``),
waiting for a person to promote it; it does not resume by itself."""

Obj: TypeAlias = Mapping[str, Any]


@dataclass(frozen=True)
class RolloutStatus:
    """Where a rollout is: ``state`` and what kubectl would say about it."""

    state: RolloutState
    message: str

    @property
    def finished(self) -> bool:
        """True when waiting longer cannot change the answer by itself."""
        return self.state in ("done", "failed")


def rollout_status(obj: Obj) -> RolloutStatus:
    """The rollout status of a Deployment, StatefulSet, DaemonSet or Argo ``Rollout``.

    Raises ValueError for another kind.
    """
    kind = obj.get("kind")
    rules = {
        "Deployment": _deployment,
        "StatefulSet": _statefulset,
        "DaemonSet": _daemonset,
        "Rollout": _argo_rollout,
    }
    if kind not in rules:
        raise ValueError(f"no rollout status for kind {kind!r}")
    return rules[kind](obj)


def _deployment(obj: Obj) -> RolloutStatus:
    """kubectl's DeploymentStatusViewer, rule for rule.

    >>> _deployment({"metadata": {"generation": 3}, "status": {"observedGeneration": 2}})
    RolloutStatus(state='waiting', message='waiting for deployment spec update to be observed')
    """
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if _int(obj["metadata"].get("generation")) > _int(status.get("observedGeneration")):
        return _waiting("waiting for deployment spec update to be observed")
    progressing = _condition(status, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        why = progressing.get("message") or "exceeded its progress deadline"
        return RolloutStatus("failed", f"ProgressDeadlineExceeded: {why}")
    updated, replicas = _int(status.get("updatedReplicas")), _int(status.get("replicas"))
    wanted = spec.get("replicas")
    if wanted is not None and updated < wanted:
        return _waiting(f"{updated} out of {wanted} new replicas have been updated")
    if replicas > updated:
        return _waiting(f"{replicas - updated} old replicas are pending termination")
    available = _int(status.get("availableReplicas"))
    if available < updated:
        return _waiting(f"{available} of {updated} updated replicas are available")
    return RolloutStatus("done", "successfully rolled out")


def _statefulset(obj: Obj) -> RolloutStatus:
    """kubectl's StatefulSetStatusViewer (RollingUpdate strategy only)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return RolloutStatus("done", "no rollout status for an OnDelete update strategy")
    observed = _int(status.get("observedGeneration"))
    if observed == 0 or _int(obj["metadata"].get("generation")) > observed:
        return _waiting("waiting for statefulset spec update to be observed")
    wanted, ready = spec.get("replicas", 1), _int(status.get("readyReplicas"))
    if ready < wanted:
        return _waiting(f"waiting for {wanted - ready} pods to be ready")
    updated = _int(status.get("updatedReplicas"))
    partition = (strategy.get("rollingUpdate") or {}).get("partition")
    if partition is not None:
        if updated < wanted - partition:
            return _waiting(f"{updated} out of {wanted - partition} new pods have been updated")
        return RolloutStatus("done", f"partitioned roll out complete: {updated} new pods")
    if status.get("updateRevision") != status.get("currentRevision"):
        revision = status.get("updateRevision")
        return _waiting(f"{updated} pods at revision {revision}, rolling update in progress")
    return RolloutStatus("done", "rolling update complete")


def _daemonset(obj: Obj) -> RolloutStatus:
    """kubectl's DaemonSetStatusViewer (RollingUpdate strategy only)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
        return RolloutStatus("done", "no rollout status for an OnDelete update strategy")
    if _int(obj["metadata"].get("generation")) > _int(status.get("observedGeneration")):
        return _waiting("waiting for daemon set spec update to be observed")
    desired = _int(status.get("desiredNumberScheduled"))
    updated = _int(status.get("updatedNumberScheduled"))
    if updated < desired:
        return _waiting(f"{updated} out of {desired} new pods have been updated")
    available = _int(status.get("numberAvailable"))
    if available < desired:
        return _waiting(f"{available} of {desired} updated pods are available")
    return RolloutStatus("done", "successfully rolled out")


def _argo_rollout(obj: Obj) -> RolloutStatus:
    """Argo Rollouts' GetRolloutPhase: the controller's phase once it has seen the spec.

    ``status.observedGeneration`` is a string in Argo (it was a hash before v0.10).
    """
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    metadata = obj["metadata"]
    observed = str(status.get("observedGeneration", ""))
    if observed.isdigit() and int(observed) < _int(metadata.get("generation")):
        return _waiting("waiting for rollout spec update to be observed")
    if status.get("controllerPause") and not status.get("pauseConditions"):
        return _waiting("waiting for rollout to unpause")
    workload_generation = (metadata.get("annotations") or {}).get(_ARGO_WORKLOAD_GENERATION)
    workload_observed = str(status.get("workloadObservedGeneration", ""))
    if (
        workload_generation
        and workload_observed.isdigit()
        and int(workload_observed) != int(workload_generation)
    ):
        return _waiting("waiting for the referenced workload's update to be observed")
    phase, message = status.get("phase"), status.get("message") or ""
    if phase == "Degraded":
        return RolloutStatus("failed", f"Degraded: {message or _argo_failure(status)}")
    if phase == "Paused":
        return _argo_paused(spec, status, message)
    if phase == "Healthy":
        if status.get("stableRS") and status.get("stableRS") != status.get("currentPodHash"):
            return _waiting("waiting for all steps to complete")
        return RolloutStatus("done", "Healthy")
    if phase == "Progressing":
        return _waiting(_with_step(message or "progressing", spec, status))
    return _waiting(f"waiting for the Argo Rollouts controller ({phase or 'no phase yet'})")


def _argo_paused(spec: Obj, status: Obj, message: str) -> RolloutStatus:
    step, steps = _canary_steps(spec, status)
    where = f"paused at canary step {step} of {len(steps)}" if steps else "paused"
    why = f" ({message})" if message else ""
    if spec.get("paused"):
        return RolloutStatus("paused", f"{where}{why}: paused by hand, resume it to continue")
    current = steps[step] if step < len(steps) else {}
    pause = current.get("pause") if isinstance(current, Mapping) else None
    if isinstance(pause, Mapping) and pause.get("duration") is None:
        return RolloutStatus("paused", f"{where}{why}: waits for a promotion")
    return _waiting(f"{where}{why}")


def _canary_steps(spec: Obj, status: Obj) -> tuple[int, list[Any]]:
    steps = list(((spec.get("strategy") or {}).get("canary") or {}).get("steps") or [])
    return _int(status.get("currentStepIndex")), steps


def _with_step(message: str, spec: Obj, status: Obj) -> str:
    step, steps = _canary_steps(spec, status)
    if not steps or "currentStepIndex" not in status:
        return message
    return f"{message} (canary step {step} of {len(steps)})"


def _argo_failure(status: Obj) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "InvalidSpec" or condition.get("reason") in (
            "RolloutAborted",
            "ProgressDeadlineExceeded",
        ):
            return f"{condition.get('reason')}: {condition.get('message')}"
    return "the controller marked it degraded"


def revision_of(obj: Obj, annotation: str) -> int:
    """The revision number in ``annotation`` of ``obj``; 0 when it has none.

    >>> revision_of({"metadata": {"annotations": {DEPLOYMENT_REVISION: "4"}}}, DEPLOYMENT_REVISION)
    4
    """
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(annotation, "0")
    return int(value) if str(value).isdigit() else 0


def previous_revision(replicasets: Iterable[Obj], owner_uid: str, annotation: str) -> Obj | None:
    """The ReplicaSet ``kubectl rollout undo`` returns to: of those controlled by
    ``owner_uid``, the one with the second-highest revision in ``annotation``.

    >>> def rs(name, revision):
    ...     return {"metadata": {"name": name, "annotations": {DEPLOYMENT_REVISION: revision},
    ...             "ownerReferences": [{"uid": "u1", "controller": True}]}}
    >>> previous_revision([rs("a", "1"), rs("c", "3"), rs("b", "2")], "u1", DEPLOYMENT_REVISION)[
    ...     "metadata"]["name"]
    'b'
    """
    owned = [rs for rs in replicasets if _controlled_by(rs, owner_uid)]
    ranked = sorted(owned, key=lambda rs: revision_of(rs, annotation), reverse=True)
    return ranked[1] if len(ranked) > 1 else None


def rollback_template(replicaset: Obj, hash_label: str) -> dict[str, Any]:
    """The ReplicaSet's pod template without its ``hash_label``: what goes back into the
    owner's ``spec.template``.

    >>> rollback_template({"spec": {"template": {"metadata": {"labels": {
    ...     "app": "web", "pod-template-hash": "5d4f"}}}}}, DEPLOYMENT_HASH_LABEL)
    {'metadata': {'labels': {'app': 'web'}}}
    """
    template: dict[str, Any] = copy.deepcopy(dict(replicaset["spec"]["template"]))
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(hash_label, None)
    return template


def rollback_annotations(deployment: Obj, replicaset: Obj) -> dict[str, str]:
    """The Deployment's annotations after ``kubectl rollout undo``: its own bookkeeping
    annotations, plus every other annotation of the ReplicaSet returned to."""
    own = (deployment.get("metadata") or {}).get("annotations") or {}
    theirs = (replicaset.get("metadata") or {}).get("annotations") or {}
    kept = {k: v for k, v in own.items() if k in _SKIPPED_ANNOTATIONS}
    return kept | {k: v for k, v in theirs.items() if k not in _SKIPPED_ANNOTATIONS}


def _controlled_by(obj: Obj, owner_uid: str) -> bool:
    references = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner_uid and ref.get("controller") for ref in references)


def _condition(status: Obj, kind: str) -> Obj | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return condition  # type: ignore[no-any-return]
    return None


def _waiting(message: str) -> RolloutStatus:
    return RolloutStatus("waiting", message)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | str) and str(value).lstrip("-").isdigit() else 0
