"""The contract suite of ``flowops test`` against the real demo model server
(:mod:`flowops.demo_model`, a process on a free port), directly and through a real
gateway with API keys; and ``flowops test`` as a process writing JUnit XML."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from gateway_servers import running_gateway

from flowops.broker import free_port
from flowops.config import section
from flowops.demo import FEATURES
from flowops.gateway.auth import hash_api_key
from flowops.ops.contract import (
    ContractSettings,
    prepare_samples,
    resolve_headers,
    run_contract,
)
from flowops.ops.gate import gate_settings, run_gate
from flowops.process import Child

pytestmark = pytest.mark.integration

START_TIMEOUT = 30.0
ROWS = [
    {"age": 41, "income": 52_000, "debt_ratio": 0.3, "region": "north", "channel": "web"},
    {"age": 29, "income": 31_000, "debt_ratio": 0.6, "region": "south", "channel": "phone"},
    {"age": 63, "income": 88_000, "debt_ratio": 0.1, "region": "east", "channel": "branch"},
]
SAMPLES: list[dict[str, Any]] = [
    {"name": "records", "payload": {"dataframe_records": ROWS}},
    {
        "name": "split",
        "payload": {
            "dataframe_split": {
                "columns": list(FEATURES),
                "data": [[row[f] for f in FEATURES] for row in ROWS[:2]],
            }
        },
    },
    {"name": "instances", "payload": {"instances": ROWS[:1]}},
    {
        "name": "unreadable-is-400",
        "payload": {"inputs": 3},
        "expect": {"status": 400, "required": ["error_code", "message"]},
    },
]
GATEWAY_KEY = "gate-test-key-0123456789"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo model server's base URL; the process is stopped after the module."""
    port = free_port()
    log = tmp_path_factory.mktemp("model") / "model.log"
    child = Child(
        "model", [sys.executable, "-m", "flowops.demo_model", "--port", str(port)], log=log
    )
    child.start()
    try:
        _wait_for_ping(f"http://127.0.0.1:{port}/ping", child)
        yield f"http://127.0.0.1:{port}"
    finally:
        child.stop()


def _wait_for_ping(url: str, child: Child) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert child.running, child.log_tail()
        assert time.monotonic() < deadline, f"the demo model did not answer {url}"
        time.sleep(0.1)


def contract(url: str, **values: Any) -> ContractSettings:
    return section(ContractSettings, {"url": url, "samples": SAMPLES, **values}, "test", "contract")


def run(settings: ContractSettings) -> dict[str, tuple[str, str]]:
    gate = gate_settings({"contract": settings.model_dump(exclude_unset=True)}, None)
    report = run_gate(gate)
    return {case.case: (case.outcome, case.detail) for case in report.cases}


def test_every_payload_shape_passes_its_contract(model: str) -> None:
    found = run(contract(model, repeats=3, expect={"latency_max_ms": 5_000}))
    assert {name: outcome for name, (outcome, _) in found.items()} == {
        "records": "pass",
        "split": "pass",
        "instances": "pass",
        "unreadable-is-400": "pass",
    }
    assert found["records"][1].startswith("200, 3 rows, p95 ")
    assert found["split"][1].startswith("200, 2 rows, p95 ")
    assert found["records"][1].endswith(" (3 requests)")


def test_a_budget_the_server_cannot_meet_fails(model: str) -> None:
    found = run(contract(model, samples=SAMPLES[:1], expect={"latency_p95_ms": 0.001}))
    outcome, detail = found["records"]
    assert outcome == "fail"
    assert detail.startswith("p95 ")
    assert detail.endswith(" ms over its 0.001 ms budget (5 requests)")


def test_a_wrong_shape_and_a_wrong_row_count_fail(model: str) -> None:
    samples = [
        {"name": "shape", "payload": {"instances": ROWS}, "expect": {"shape": [3, 2]}},
        {"name": "rows", "payload": {"instances": ROWS}, "expect": {"rows": 4}},
        {"name": "status", "payload": {"instances": [{"age": 41}]}},
        {"name": "keys", "payload": {"instances": ROWS}, "expect": {"required": ["model_version"]}},
    ]
    found = run(contract(model, samples=samples, repeats=2))
    assert found["shape"] == (
        "fail",
        "request 1 of 2: predictions of shape [3], expected [3, 2]",
    )
    assert found["rows"] == ("fail", "request 1 of 2: 3 predictions for 4 input rows")
    assert found["status"] == (
        "fail",
        "request 1 of 2: answered 400, expected 200: "
        '{"error_code":"BAD_REQUEST","message":"row 0: missing feature \'income\'"}',
    )
    assert found["keys"][0] == "fail"
    assert found["keys"][1].startswith("request 1 of 2: the answer lacks model_version: ")


@pytest.mark.asyncio
async def test_through_the_gateway_with_an_api_key_from_the_environment(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    route = {
        "name": "credit",
        "prefix": "/models/credit",
        "strip_prefix": True,
        "upstreams": [model],
        "auth": True,
    }
    auth = {"api_keys": [{"name": "ci", "sha256": hash_api_key(GATEWAY_KEY)}]}
    gateway = {"routes": [route], "publish": {"enabled": False}, "auth": auth}
    async with running_gateway(gateway) as base:
        settings = contract(
            f"{base}/models/credit", headers_from_env={"X-API-Key": "GATE_TEST_API_KEY"}
        )
        monkeypatch.setenv("GATE_TEST_API_KEY", GATEWAY_KEY)
        cases = await run_contract(settings, prepare_samples(settings), resolve_headers(settings))
        monkeypatch.setenv("GATE_TEST_API_KEY", "a-wrong-key-0123456789")
        refused = await run_contract(
            settings, prepare_samples(settings)[:1], resolve_headers(settings)
        )
    assert [(case.case, case.outcome) for case in cases] == [
        ("records", "pass"),
        ("split", "pass"),
        ("instances", "pass"),
        ("unreadable-is-400", "pass"),
    ]
    (denied,) = refused
    assert denied.outcome == "fail"
    assert denied.detail.startswith("request 1 of 5: answered 401, expected 200")
    assert GATEWAY_KEY not in denied.detail + denied.output


def test_flowops_test_as_a_process_writes_junit(model: str, tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "three.json").write_bytes(orjson.dumps({"dataframe_records": ROWS}))
    (samples / "one.json").write_bytes(orjson.dumps({"instances": ROWS[:1]}))
    config = tmp_path / "flowops.yaml"
    test = {
        "contract": {
            "url": model,
            "samples": [
                "samples/*.json",
                {
                    "name": "too-fast",
                    "file": "samples/one.json",
                    "expect": {"latency_max_ms": 0.001},
                },
            ],
            "repeats": 2,
        }
    }
    config.write_text(yaml.safe_dump({"test": test}))
    junit = tmp_path / "gate.xml"
    done = subprocess.run(
        [sys.executable, "-m", "flowops", "test", "--config", str(config), "--junit", str(junit)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "flowops test: contract/one: pass" in done.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("contract", "3", "1")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == ["one", "three", "too-fast"]
    (failure,) = cases["too-fast"]
    assert str(failure.get("message")).endswith("over its 0.001 ms budget (2 requests)")


def test_a_server_that_is_down_is_an_error_case_and_exit_1(tmp_path: Path) -> None:
    config = tmp_path / "flowops.yaml"
    port = free_port()
    config.write_text(
        yaml.safe_dump(
            {"test": {"contract": {"url": f"http://127.0.0.1:{port}", "samples": SAMPLES[:1]}}}
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "flowops", "test", "--config", str(config), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    (case,) = orjson.loads(done.stdout)["cases"]
    assert case["result"] == "error"
    assert case["detail"] == (
        f"cannot connect to 127.0.0.1:{port}: connection refused; is the server running there?"
    )
