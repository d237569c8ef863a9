"""``flowops.demo_model``: the toy credit model, its payloads, its server and its process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from flowops.broker import free_port
from flowops.demo import FEATURES
from flowops.demo_model import BadRequestError, create_app, predict, score

ROWS = [
    {"age": 41, "income": 52_000.0, "debt_ratio": 0.3, "region": "north", "channel": "web"},
    {"age": 23, "income": 21_500.5, "debt_ratio": 0.7, "region": "east", "channel": "partner"},
    {"age": 67, "income": 98_000, "debt_ratio": 0.05, "region": "west", "channel": "branch"},
]


def as_arrays(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[row[name] for name in FEATURES] for row in rows]


PAYLOADS = {
    "dataframe_records": {"dataframe_records": ROWS},
    "dataframe_split with columns": {
        "dataframe_split": {"columns": list(FEATURES), "data": as_arrays(ROWS)}
    },
    "dataframe_split, columns in another order": {
        "dataframe_split": {
            "columns": list(reversed(FEATURES)),
            "data": [list(reversed(values)) for values in as_arrays(ROWS)],
        }
    },
    "dataframe_split without columns": {"dataframe_split": {"data": as_arrays(ROWS)}},
    "instances as objects": {"instances": ROWS},
    "instances as arrays": {"instances": as_arrays(ROWS)},
}


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_every_payload_gets_the_same_prediction_per_row(payload: dict[str, Any]) -> None:
    assert predict(payload) == [score(row) for row in ROWS]


def test_a_score_is_a_probability_that_rises_with_debt_and_falls_with_income() -> None:
    scores = [score(row) for row in ROWS]
    assert all(0 < value < 1 for value in scores)
    assert scores[1] > scores[0] > scores[2]
    richer = {**ROWS[0], "income": 80_000}
    indebted = {**ROWS[0], "debt_ratio": 0.6}
    assert score(richer) < score(ROWS[0]) < score(indebted)
    assert score({**ROWS[0], "channel": "carrier pigeon"}) == score(ROWS[0])
    assert 0.99 < score({**ROWS[0], "income": 0}) <= 1  # no income: a default, not an error


BAD = {
    "not an object": ([1, 2], "expected a JSON object with dataframe_records"),
    "no known key": ({"inputs": {"age": [1]}}, "expected a JSON object with"),
    "records not a list": ({"dataframe_records": {"age": 1}}, "'dataframe_records' must be"),
    "a record not an object": ({"dataframe_records": [[1, 2]]}, "'dataframe_records'[0] must"),
    "split without data": ({"dataframe_split": {"columns": ["age"]}}, "with a 'data' array"),
    "split row not a list": ({"dataframe_split": {"data": [1]}}, "'dataframe_split.data'[0]"),
    "split columns not names": (
        {"dataframe_split": {"columns": [1], "data": []}},
        "'dataframe_split.columns' must be an array of names",
    ),
    "a missing feature": (
        {"dataframe_records": [ROWS[0], {"age": 30, "debt_ratio": 0.2}]},
        "row 1: missing feature 'income'",
    ),
    "a text number": (
        {"instances": [{**ROWS[0], "age": "41"}]},
        "row 0: feature 'age' must be a finite number",
    ),
    "a boolean number": ({"instances": [{**ROWS[0], "debt_ratio": True}]}, "'debt_ratio' must"),
}


@pytest.mark.parametrize(("body", "message"), BAD.values(), ids=BAD.keys())
def test_a_body_it_cannot_score_says_why(body: Any, message: str) -> None:
    with pytest.raises(BadRequestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        predict(body)


def test_an_empty_batch_has_no_predictions() -> None:
    assert predict({"dataframe_records": []}) == []


# -- the server ---------------------------------------------------------------------------


@pytest_asyncio.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app())) as test_client:
        yield test_client


@pytest.mark.asyncio
async def test_invocations_answer_as_mlflow_does(client: TestClient[Any, Any]) -> None:
    response = await client.post("/invocations", json=PAYLOADS["dataframe_records"])
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == {"predictions": [score(row) for row in ROWS]}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the request body is not JSON"),
        (orjson.dumps({"dataframe_records": [{"age": 1}]}), "row 0: missing feature 'income'"),
    ],
)
async def test_a_bad_request_gets_400_with_mlflows_error_shape(
    client: TestClient[Any, Any], body: bytes, message: str
) -> None:
    response = await client.post("/invocations", data=body)
    assert response.status == 400
    assert await response.json() == {"error_code": "BAD_REQUEST", "message": message}


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/ping", "/health"])
async def test_health_paths_answer_200(client: TestClient[Any, Any], path: str) -> None:
    assert (await client.get(path)).status == 200


# -- the process --------------------------------------------------------------------------


def _ping(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_the_process_serves_on_loopback_until_sigterm() -> None:
    port = free_port()
    command = [sys.executable, "-m", "flowops.demo_model", "--port", str(port)]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not _ping(port):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the demo model did not answer /ping"
            time.sleep(0.1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=orjson.dumps({"instances": ROWS[:1]}),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert orjson.loads(response.read()) == {"predictions": [score(ROWS[0])]}
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    log = proc.stderr.read()
    proc.stderr.close()
    assert f"listening on http://127.0.0.1:{port}/invocations" in log
    assert log.rstrip().endswith("demo model: stopped")


def test_a_taken_port_is_one_line_and_exit_code_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "flowops.demo_model", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr.startswith(f"demo model: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in done.stderr
