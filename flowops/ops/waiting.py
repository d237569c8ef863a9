"""Waiting for rollouts, the way ``kubectl rollout status`` does: read each workload
until :func:`flowops.ops.rollout.rollout_status` says done or failed, or time is up.

Status is polled (``GET`` every ``poll_interval`` seconds), not watched: one request per
workload per round, and nothing to resume when a watch connection drops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from flowops.ops import manifests as _manifests
from flowops.ops.cluster import ClusterClient, ResourceType
from flowops.ops.rollout import WORKLOAD_KINDS as _WORKLOAD_KINDS
from flowops.ops.rollout import RolloutStatus, rollout_status

__all__ = ["Waited", "wait_all", "wait_targets"]

Say = Callable[[str], None]


@dataclass(frozen=True)
class Waited:
    """How one workload's rollout ended."""

    kind: str
    namespace: str | None
    name: str
    state: Literal["done", "paused", "failed", "timeout"]
    message: str

    @property
    def ok(self) -> bool:
        return self.state in ("done", "paused")


async def wait_targets(
    cluster: ClusterClient, rendered: Sequence[Mapping[str, Any]], say: Say
) -> list[tuple[ResourceType, str | None, str]]:
    """The workloads whose rollout to wait for. A Deployment that an Argo ``Rollout``
    takes its template from (``workloadRef``) is left out: the Rollout is what rolls."""
    referenced = {
        (m["metadata"].get("namespace"), m["spec"]["workloadRef"]["name"])
        for m in rendered
        if m["kind"] == "Rollout" and (m.get("spec") or {}).get("workloadRef")
    }
    targets = []
    for manifest in rendered:
        kind, namespace, name = _manifests.manifest_key(manifest)
        if kind not in _WORKLOAD_KINDS:
            continue
        if kind == "Deployment" and (namespace, name) in referenced:
            say(f"Deployment {namespace}/{name}: rolled out by the Rollout {name} (workloadRef)")
            continue
        rtype = await cluster.resource_type(manifest["apiVersion"], kind)
        if rtype is not None:
            targets.append((rtype, namespace or None, name))
    return targets


async def wait_all(
    cluster: ClusterClient,
    targets: Sequence[tuple[ResourceType, str | None, str]],
    *,
    timeout: float,
    poll_interval: float,
    on_pause: str = "wait",
    say: Say,
    clock: Callable[[], float] = time.monotonic,
) -> list[Waited]:
    """Poll each target's status until its rollout is done or failed, or ``timeout``
    seconds pass; one line on ``say`` per change of status. An Argo canary paused until
    promoted ends the wait when ``on_pause`` is ``succeed`` or ``fail``."""
    limit = timeout
    deadline = clock() + limit
    last: dict[int, RolloutStatus] = {}
    ended: dict[int, Waited] = {}
    while True:
        for index, (rtype, namespace, name) in enumerate(targets):
            if index in ended:
                continue
            found = await cluster.get(rtype, namespace, name)
            status = (
                RolloutStatus("waiting", "not on the cluster yet")
                if found is None
                else rollout_status(found)
            )
            if last.get(index) != status:
                say(f"{rtype.describe(namespace, name)}: {status.message}")
                last[index] = status
            end = _end(status, on_pause)
            if end is not None:
                ended[index] = Waited(rtype.kind, namespace, name, end, status.message)
        if len(ended) == len(targets):
            break
        if clock() >= deadline:
            for index, (rtype, namespace, name) in enumerate(targets):
                if index not in ended:
                    why = f"timed out after {limit:g} s; last status: {last[index].message}"
                    ended[index] = Waited(rtype.kind, namespace, name, "timeout", why)
            break
        await asyncio.sleep(max(0.0, min(poll_interval, deadline - clock())))
    return [ended[index] for index in range(len(targets))]


def _end(status: RolloutStatus, on_pause: str) -> Literal["done", "paused", "failed"] | None:
    if status.state in ("done", "failed"):
        return status.state
    if status.state == "paused" and on_pause != "wait":
        return "paused" if on_pause == "succeed" else "failed"
    return None
