"""The contract suite's pure parts: settings, samples, shape checks, latency budgets; and
a refused connection, for real. Against a real model server: tests/integration/
test_gate_contract.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from flowops.broker import free_port
from flowops.config import section
from flowops.errors import ConfigError
from flowops.ops.contract import (
    ContractSettings,
    Expect,
    endpoint,
    judge_answer,
    judge_latency,
    percentile,
    prepare_samples,
    resolve_headers,
    run_contract,
)

INLINE: dict[str, Any] = {"payload": {"instances": [[1, 2]]}}


def contract(**values: Any) -> ContractSettings:
    return section(ContractSettings, {"url": "http://m:5001", "samples": [INLINE], **values}, "x")


# -- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"url": "localhost:5001"},
            "config: test.contract.url: Value error, expected an http:// or https:// URL, "
            "got 'localhost:5001'",
        ),
        (
            {"samples": []},
            "config: test.contract.samples: List should have at least 1 item after "
            "validation, not 0",
        ),
        (
            {"samples": [{"payload": {}, "file": "a.json"}]},
            "config: test.contract.samples.0: Value error, give a sample either file or "
            "payload (not both)",
        ),
        (
            {"protocol": "kserve_v2"},
            "config: test.contract: Value error, protocol kserve_v2 needs model (or path)",
        ),
        (
            {"repeats": 0},
            "config: test.contract.repeats: Input should be greater than or equal to 1",
        ),
        (
            {"expect": {"latency_p95_ms": 0}},
            "config: test.contract.expect.latency_p95_ms: Input should be greater than 0",
        ),
        (
            {"expect": {"rows": "all"}},
            "config: test.contract.expect.rows: Value error, expected input, any or a number "
            "of rows, got 'all'",
        ),
        ({"urls": "http://m"}, "config: test.contract.urls: Extra inputs are not permitted"),
    ],
)
def test_a_bad_setting_names_its_key(values: dict[str, Any], message: str) -> None:
    raw = {"url": "http://m:5001", "samples": [INLINE], **values}
    with pytest.raises(ConfigError) as caught:
        section(ContractSettings, raw, "test", "contract")
    assert str(caught.value) == message


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key", "X-Auth-Token", "Cookie"])
def test_credentials_may_not_be_written_in_the_file(header: str) -> None:
    with pytest.raises(ConfigError) as caught:
        contract(headers={header: "s3cret-value"})
    assert caught.value.key == "x.headers"
    assert "headers_from_env" in str(caught.value)
    assert "s3cret-value" not in str(caught.value)


def test_headers_from_env_are_read_at_run_time(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = contract(headers={"X-Team": "risk"}, headers_from_env={"X-API-Key": "GATE_KEY"})
    monkeypatch.delenv("GATE_KEY", raising=False)
    with pytest.raises(ConfigError) as caught:
        resolve_headers(settings)
    assert str(caught.value) == (
        "config: test.contract.headers_from_env.X-API-Key: "
        "the environment variable GATE_KEY is not set"
    )
    monkeypatch.setenv("GATE_KEY", "k-123")
    headers = resolve_headers(settings)
    assert (headers["X-API-Key"], headers["X-Team"]) == ("k-123", "risk")


@pytest.mark.parametrize(
    ("values", "url"),
    [
        ({}, "http://m:5001/invocations"),
        ({"protocol": "kserve_v2", "model": "credit"}, "http://m:5001/v2/models/credit/infer"),
        ({"protocol": "http"}, "http://m:5001"),
        ({"protocol": "http", "path": "/predict"}, "http://m:5001/predict"),
        ({"url": "http://gw:8080/models/credit"}, "http://gw:8080/models/credit/invocations"),
        (
            {"url": "http://gw:8080/models/credit", "path": "score"},
            "http://gw:8080/models/credit/score",
        ),
    ],
)
def test_where_samples_are_posted(values: dict[str, Any], url: str) -> None:
    assert endpoint(contract(**values)) == url


# -- samples -----------------------------------------------------------------------------


def test_samples_from_globs_files_and_inline_with_merged_expectations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "samples").mkdir()
    for name, rows in (("b", 2), ("a", 1)):
        records = [{"x": i} for i in range(rows)]
        (tmp_path / "samples" / f"{name}.json").write_bytes(
            orjson.dumps({"dataframe_records": records})
        )
    settings = contract(
        samples=[
            "samples/*.json",
            {"name": "broken", "payload": {"inputs": 3}, "expect": {"status": 400}},
        ],
        expect={"status": 200, "latency_max_ms": 50},
    )
    prepared = prepare_samples(settings)
    assert [(s.name, s.rows, s.expect.status) for s in prepared] == [
        ("a", 1, 200),
        ("b", 2, 200),
        ("broken", None, 400),
    ]
    assert prepared[2].expect.latency_max_ms == 50  # not overridden: the contract's
    assert orjson.loads(prepared[2].body) == {"inputs": 3}


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (
            "nothing/*.json",
            "config: test.contract.samples.0.file: no file matches 'nothing/*.json'",
        ),
        ("missing.json", "config: test.contract.samples.0.file: cannot read missing.json: "),
        ("garbage.json", "config: test.contract.samples.0.file: garbage.json is not JSON: "),
    ],
)
def test_a_sample_file_that_cannot_be_used_is_a_config_error(
    sample: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(ConfigError) as caught:
        prepare_samples(contract(samples=[sample]))
    assert str(caught.value).startswith(message)


def test_two_samples_with_one_name_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="two samples are named 'same'"):
        prepare_samples(contract(samples=[{"name": "same", **INLINE}, {"name": "same", **INLINE}]))


# -- answers -----------------------------------------------------------------------------

PREDICTIONS_2 = b'{"predictions": [0.1, 0.2]}'


@pytest.mark.parametrize(
    ("status", "body", "expect", "protocol", "rows", "problem"),
    [
        (200, PREDICTIONS_2, {}, "mlflow", 2, None),
        (200, b"[0.1, 0.2]", {}, "mlflow", 2, None),  # a bare array, as some servers answer
        (200, PREDICTIONS_2, {}, "mlflow", 3, "2 predictions for 3 input rows"),
        (200, b'{"predictions": []}', {}, "mlflow", 1, "0 predictions for 1 input rows"),
        (200, PREDICTIONS_2, {"rows": 2}, "http", None, None),
        (200, PREDICTIONS_2, {"rows": "any"}, "mlflow", 5, None),
        (200, PREDICTIONS_2, {}, "http", None, None),  # http: rows unknown, not checked
        (
            500,
            b'{"error": "boom"}',
            {},
            "mlflow",
            2,
            'answered 500, expected 200: {"error": "boom"}',
        ),
        (200, b"<html>", {}, "mlflow", 2, "the answer is not JSON: <html>"),
        (200, b'{"result": 1}', {}, "mlflow", 1, 'the answer holds no predictions: {"result": 1}'),
        (
            200,
            b'{"predictions": [[1, 2], [3, 4]]}',
            {"shape": [-1, 3]},
            "mlflow",
            2,
            "predictions of shape [2, 2], expected [-1, 3]",
        ),
        (200, b'{"predictions": [[1, 2], [3, 4]]}', {"shape": [-1, 2]}, "mlflow", 2, None),
        (
            200,
            b'{"predictions": [1], "meta": {"model": "m"}}',
            {"required": ["meta.model", "meta.version", "predictions"]},
            "mlflow",
            1,
            'the answer lacks meta.version: {"predictions": [1], "meta": {"model": "m"}}',
        ),
        (
            400,
            b'{"error_code": "BAD_REQUEST"}',
            {"status": 400, "required": ["error_code"]},
            "mlflow",
            3,
            None,
        ),
        (
            400,
            b'{"message": "no"}',
            {"status": 400, "required": ["error_code"]},
            "mlflow",
            3,
            'the answer lacks error_code: {"message": "no"}',
        ),
        (
            200,
            b'{"outputs": [{"name": "p", "shape": [3, 1], "data": [1, 2, 3]}]}',
            {},
            "kserve_v2",
            3,
            None,
        ),
        (
            200,
            b'{"outputs": [{"name": "p", "shape": [2, 1], "data": [1, 2]}]}',
            {},
            "kserve_v2",
            3,
            "2 predictions for 3 input rows",
        ),
    ],
)
def test_judge_answer(
    status: int,
    body: bytes,
    expect: dict[str, Any],
    protocol: Any,
    rows: int | None,
    problem: str | None,
) -> None:
    assert judge_answer(status, body, Expect(**expect), protocol, rows) == problem


def test_a_long_body_is_cut_in_the_detail() -> None:
    problem = judge_answer(503, b"x" * 1000, Expect(), "mlflow", 1)
    assert problem == f"answered 503, expected 200: {'x' * 200}..."


# -- latency -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([7.0], 95, 7.0),
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([float(i) for i in range(1, 101)], 95, 95.0),
        ([float(i) for i in range(1, 21)], 95, 19.0),
        ([float(i) for i in range(1, 6)], 95, 5.0),  # 5 repeats: p95 is the slowest
        ([1.0, 2.0], 0, 1.0),
        ([1.0, 2.0], 100, 2.0),
    ],
)
def test_percentile_is_the_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


@pytest.mark.parametrize(
    ("millis", "budgets", "problem"),
    [
        ([5.0] * 19 + [90.0], {"latency_p95_ms": 10}, None),  # one slow in 20: p95 is 5
        (
            [5.0] * 18 + [90.0, 95.0],
            {"latency_p95_ms": 10},
            "p95 90.0 ms over its 10 ms budget (20 requests)",
        ),
        (
            [5.0] * 19 + [90.0],
            {"latency_p95_ms": 10, "latency_max_ms": 50},
            "max 90.0 ms over its 50 ms budget (20 requests)",
        ),
        ([5.0, 10.0], {"latency_max_ms": 10}, None),  # the budget itself is within it
        ([0.5], {"latency_p95_ms": 0.001}, "p95 0.5 ms over its 0.001 ms budget (1 request)"),
        ([1000.0], {}, None),
    ],
)
def test_latency_budgets(
    millis: list[float], budgets: dict[str, float], problem: str | None
) -> None:
    assert judge_latency(millis, Expect(**budgets)) == problem


# -- a server that is not there ------------------------------------------------------------


def test_a_refused_connection_is_an_error_case_for_each_sample() -> None:
    port = free_port()  # nothing listens there
    settings = contract(
        url=f"http://127.0.0.1:{port}",
        samples=[{"name": "one", **INLINE}, {"name": "two", **INLINE}],
    )
    seen: list[str] = []
    cases = asyncio.run(
        run_contract(
            settings,
            prepare_samples(settings),
            resolve_headers(settings),
            done=lambda c: seen.append(c.case),
        )
    )
    assert seen == ["one", "two"]
    assert [case.outcome for case in cases] == ["error", "error"]
    assert cases[0].detail == (
        f"cannot connect to 127.0.0.1:{port}: connection refused; is the server running there?"
    )
