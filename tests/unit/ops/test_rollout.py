"""flowops.ops.rollout: kubectl's and Argo Rollouts' rollout rules on recorded objects
(tests/unit/ops/recorded/, as `kubectl get -o json` prints them), and the rollback choice."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from flowops.ops.rollout import (
    DEPLOYMENT_HASH_LABEL,
    DEPLOYMENT_REVISION,
    RolloutStatus,
    previous_revision,
    revision_of,
    rollback_annotations,
    rollback_template,
    rollout_status,
)

RECORDED = Path(__file__).parent / "recorded"


def recorded(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("name", "state", "message"),
    [
        (
            "deployment-not-observed.json",
            "waiting",
            "waiting for deployment spec update to be observed",
        ),
        ("deployment-updating.json", "waiting", "2 out of 4 new replicas have been updated"),
        ("deployment-old-replicas.json", "waiting", "1 old replicas are pending termination"),
        ("deployment-unavailable.json", "waiting", "3 of 4 updated replicas are available"),
        (
            "deployment-deadline-exceeded.json",
            "failed",
            'ProgressDeadlineExceeded: ReplicaSet "flowops-worker-7c9d6f5b8" has timed out '
            "progressing.",
        ),
        ("deployment-complete.json", "done", "successfully rolled out"),
        ("rollout-not-observed.json", "waiting", "waiting for rollout spec update to be observed"),
        (
            "rollout-progressing.json",
            "waiting",
            "more replicas need to be updated (canary step 0 of 4)",
        ),
        ("rollout-paused-canary.json", "waiting", "paused at canary step 1 of 4 (CanaryPauseStep)"),
        (
            "rollout-paused-indefinite.json",
            "paused",
            "paused at canary step 1 of 4 (CanaryPauseStep): waits for a promotion",
        ),
        (
            "rollout-degraded.json",
            "failed",
            'Degraded: RolloutAborted: Rollout aborted update to revision 12: Metric "success-rate"'
            " assessed Failed due to failed (3) > failureLimit (2)",
        ),
        ("rollout-healthy.json", "done", "Healthy"),
        (
            "statefulset-rolling.json",
            "waiting",
            "1 out of 3 new pods have been updated",
        ),
        ("daemonset-updating.json", "waiting", "4 out of 6 new pods have been updated"),
    ],
)
def test_recorded_status(name: str, state: str, message: str) -> None:
    assert rollout_status(recorded(name)) == RolloutStatus(state, message)  # type: ignore[arg-type]


def test_deadline_exceeded_wins_over_replica_counts() -> None:
    """kubectl checks the Progressing condition before counting replicas."""
    deployment = recorded("deployment-deadline-exceeded.json")
    assert deployment["status"]["updatedReplicas"] < deployment["spec"]["replicas"]
    assert rollout_status(deployment).state == "failed"


def test_deployment_without_spec_replicas_counts_status_only() -> None:
    deployment = recorded("deployment-complete.json")
    del deployment["spec"]["replicas"]
    deployment["status"]["updatedReplicas"] = 0
    assert rollout_status(deployment).message == "4 old replicas are pending termination"


def test_statefulset_without_partition_compares_revisions() -> None:
    sts = recorded("statefulset-rolling.json")
    del sts["spec"]["updateStrategy"]["rollingUpdate"]
    assert rollout_status(sts).state == "waiting"
    sts["status"]["currentRevision"] = sts["status"]["updateRevision"]
    assert rollout_status(sts) == RolloutStatus("done", "rolling update complete")


def test_daemonset_waits_for_available_then_is_done() -> None:
    ds = recorded("daemonset-updating.json")
    ds["status"]["updatedNumberScheduled"] = 6
    assert rollout_status(ds).message == "5 of 6 updated pods are available"
    ds["status"]["numberAvailable"] = 6
    assert rollout_status(ds).state == "done"


def test_healthy_rollout_not_yet_promoted_waits() -> None:
    rollout = recorded("rollout-healthy.json")
    rollout["status"]["stableRS"] = "6f8d9c7b5"
    assert rollout_status(rollout) == RolloutStatus("waiting", "waiting for all steps to complete")


def test_rollout_paused_by_hand_needs_a_person() -> None:
    rollout = recorded("rollout-paused-canary.json")
    rollout["spec"]["paused"] = True
    status = rollout_status(rollout)
    assert (status.state, status.finished) == ("paused", False)
    assert "paused by hand" in status.message


def test_rollout_unpausing_waits() -> None:
    rollout = recorded("rollout-paused-canary.json")
    rollout["status"]["pauseConditions"] = []
    assert rollout_status(rollout).message == "waiting for rollout to unpause"


def test_rollout_waits_for_its_workload_generation() -> None:
    rollout = recorded("rollout-healthy.json")
    rollout["metadata"]["annotations"]["rollout.argoproj.io/workload-generation"] = "10"
    assert rollout_status(rollout).state == "waiting"


def test_rollout_hash_observed_generation_is_not_a_number() -> None:
    """Argo before v0.10 kept a hash in observedGeneration: nothing to compare."""
    rollout = recorded("rollout-healthy.json")
    rollout["status"]["observedGeneration"] = "7d9f5c6b8"
    assert rollout_status(rollout).state == "done"


def test_unknown_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="Service"):
        rollout_status({"kind": "Service", "metadata": {"name": "x"}})


def test_previous_revision_is_the_second_newest_of_the_owner() -> None:
    items = recorded("replicasets.json")["items"]
    owner = "5b3f6c1e-8f0e-4b7a-9d55-0b8f3c1f2a71"
    previous = previous_revision(items, owner, DEPLOYMENT_REVISION)
    assert previous is not None
    assert previous["metadata"]["name"] == "flowops-worker-6d8f7b9c5"
    assert revision_of(previous, DEPLOYMENT_REVISION) == 6


def test_no_previous_revision_with_one_replicaset() -> None:
    items = recorded("replicasets.json")["items"]
    assert (
        previous_revision(
            items[:1], items[0]["metadata"]["ownerReferences"][0]["uid"], DEPLOYMENT_REVISION
        )
        is None
    )
    assert previous_revision(items, "no-such-owner", DEPLOYMENT_REVISION) is None


def test_rollback_template_drops_only_the_hash_label() -> None:
    rs = recorded("replicasets.json")["items"][2]
    before = copy.deepcopy(rs)
    template = rollback_template(rs, DEPLOYMENT_HASH_LABEL)
    assert template["metadata"]["labels"] == {"app.kubernetes.io/name": "flowops-worker"}
    assert template["spec"] == rs["spec"]["template"]["spec"]
    assert rs == before, "the ReplicaSet itself is not changed"


def test_rollback_annotations_like_kubectl() -> None:
    deployment = recorded("deployment-complete.json")
    deployment["metadata"]["annotations"]["team"] = "ml"
    rs = recorded("replicasets.json")["items"][2]
    annotations = rollback_annotations(deployment, rs)
    assert annotations == {
        DEPLOYMENT_REVISION: "7",  # the Deployment's own: the controller moves it
        "flowops/release": "0.1.0-2b3c4d5",  # the ReplicaSet's other annotations come back
    }
