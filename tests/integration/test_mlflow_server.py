"""``flowops drift baseline --mlflow-run`` against a real ``mlflow server``: the profile
is logged as an artifact of the run, which MLflow lists and gives back byte for byte,
also to MLflow's own client; and the errors a person meets (an unknown run, a run whose
artifacts FlowOps cannot write, no server)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from click.testing import CliRunner, Result

from flowops.baseline import PROFILE_ARTIFACT
from flowops.broker import free_port
from flowops.cli import cli
from flowops.events import ReferenceProfile, Topics
from flowops.mlflow import MlflowClient

pytestmark = pytest.mark.integration


def rest(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One call of MLflow's REST API: POST with a JSON body, or GET."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}{path}", data=data, method="GET" if body is None else "POST"
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def new_run(url: str, experiment_id: str = "0") -> str:
    run = rest(url, "/api/2.0/mlflow/runs/create", {"experiment_id": experiment_id})
    return str(run["run"]["info"]["run_id"])


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(
        cli, list(args), prog_name="flowops", env={"MLFLOW_TRACKING_URI": None}
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    rows = [
        f"{20 + i % 47},{1000 + 17 * i},{['north', 'south', 'east'][i % 3]}" for i in range(2_000)
    ]
    path.write_text("age,income,region\n" + "\n".join(rows) + "\n")
    return path


def test_the_profile_is_logged_to_the_run_and_comes_back_equal(
    mlflow_server: str, data: Path, tmp_path: Path
) -> None:
    run_id = new_run(mlflow_server)
    written = tmp_path / "profile.json"

    result = run_cli(
        "drift", "baseline", "--data", str(data), "--model", "credit", "-o", str(written),
        "--mlflow-run", run_id, "--mlflow-uri", mlflow_server,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    expected_uri = f"mlflow-artifacts:/0/{run_id}/artifacts/{PROFILE_ARTIFACT}"
    assert f"logged the profile to MLflow run {run_id}: {expected_uri}" in result.stderr
    listing = rest(mlflow_server, f"/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=flowops")
    assert listing["files"] == [
        {"path": PROFILE_ARTIFACT, "is_dir": False, "file_size": written.stat().st_size}
    ]
    assert MlflowClient(mlflow_server).download_artifact(run_id, PROFILE_ARTIFACT) == (
        written.read_bytes()
    )
    assert json.loads(written.read_bytes())["model"] == "credit"


def test_mlflows_own_client_reads_what_flowops_logged(
    mlflow_server: str, data: Path, tmp_path: Path
) -> None:
    from mlflow.artifacts import download_artifacts

    run_id = new_run(mlflow_server)
    result = run_cli(
        "drift", "baseline", "--data", str(data), "--mlflow-run", run_id,
        "--mlflow-uri", mlflow_server, "-o", str(tmp_path / "p.json"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    local = download_artifacts(
        run_id=run_id,
        artifact_path=PROFILE_ARTIFACT,
        dst_path=str(tmp_path / "download"),
        tracking_uri=mlflow_server,
    )
    assert Path(local).read_bytes() == (tmp_path / "p.json").read_bytes()


def test_publish_and_log_in_one_command(mlflow_server: str, broker: str, data: Path) -> None:
    """Without -o the profile goes to Kafka and MLflow only; both get the same profile."""
    run_id = new_run(mlflow_server)
    model = f"mlflow-{uuid.uuid4().hex[:8]}"

    result = run_cli(
        "drift", "baseline", "--data", str(data), "--model", model, "--publish",
        "--bootstrap", broker, "--mlflow-run", run_id, "--mlflow-uri", mlflow_server,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    logged = MlflowClient(mlflow_server).download_artifact(run_id, PROFILE_ARTIFACT)
    published = asyncio.run(_reference_of(broker, model))
    assert published.to_profile().to_json() + "\n" == logged.decode()


async def _reference_of(bootstrap: str, model: str) -> ReferenceProfile:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [
            TopicPartition(Topics.REFERENCES, p)
            for p in consumer.partitions_for_topic(Topics.REFERENCES) or [0, 1, 2]
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for _ in range(40):
            batches = await consumer.getmany(timeout_ms=500)
            for message in (m for part in batches.values() for m in part):
                if message.key == model.encode():
                    return ReferenceProfile.from_json(message.value)
    finally:
        await consumer.stop()
    raise AssertionError(f"no profile of {model} on {Topics.REFERENCES}")


def test_an_unknown_run_is_one_line_and_exit_2(mlflow_server: str, data: Path) -> None:
    result = run_cli(
        "drift", "baseline", "--data", str(data), "--mlflow-run", "0123456789abcdef",
        "--mlflow-uri", mlflow_server,
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"flowops: error: no MLflow run '0123456789abcdef' on {mlflow_server}"
    )


def test_a_run_whose_artifacts_flowops_cannot_write_says_why(
    mlflow_server: str, data: Path
) -> None:
    name = f"s3-{uuid.uuid4().hex[:8]}"
    experiment = rest(
        mlflow_server,
        "/api/2.0/mlflow/experiments/create",
        {"name": name, "artifact_location": "s3://models-bucket/flowops-test"},
    )
    run_id = new_run(mlflow_server, experiment["experiment_id"])

    result = run_cli(
        "drift", "baseline", "--data", str(data), "--mlflow-run", run_id,
        "--mlflow-uri", mlflow_server,
    )  # fmt: skip

    assert result.exit_code == 3
    error = result.stderr.splitlines()[-1]
    assert error.startswith(f"flowops: error: {mlflow_server}: run {run_id}: its artifacts are")
    assert "s3://models-bucket/flowops-test/" in error
    assert "mlflow-artifacts:" in error


def test_health_answers_and_no_server_is_exit_3(mlflow_server: str, data: Path) -> None:
    MlflowClient(mlflow_server).health()
    closed = f"http://127.0.0.1:{free_port()}"
    result = run_cli(
        "drift", "baseline", "--data", str(data), "--mlflow-run", "r", "--mlflow-uri", closed
    )
    assert result.exit_code == 3
    assert "cannot reach the MLflow tracking server" in result.stderr
