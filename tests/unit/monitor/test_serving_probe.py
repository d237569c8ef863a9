"""flowops.monitor.probes.serving (and the HTTP helpers of probes.service it shares): the
settings, the endpoints per protocol, how a canary's answer is judged and what each
failure says (no network: real servers are in tests/integration/test_monitor_serving.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from flowops.monitor.probes.http import HttpAnswer
from flowops.monitor.probes.service import ServiceSettings, unready_reason, worker_samples
from flowops.monitor.probes.serving import (
    ModelServerProbe,
    ModelServerSettings,
    canary_url,
    endpoints,
    judge_canary,
    refusal,
)

URL = "http://127.0.0.1:9001"


def settings(**values: Any) -> ModelServerSettings:
    return ModelServerSettings.model_validate({"name": "iris", "url": URL, **values})


def answer(status: int = 200, body: bytes = b"", seconds: float = 0.01) -> HttpAnswer:
    return HttpAnswer(status, body, seconds)


# -- settings ----------------------------------------------------------------------------


def test_defaults() -> None:
    found = settings()

    assert (found.protocol, found.model_name, found.timeout, found.canary) == (
        "http",
        "iris",
        5.0,
        None,
    )


def test_the_issue_config_shape() -> None:
    found = ModelServerSettings.model_validate(
        {"name": "iris", "url": "http://127.0.0.1:9001/", "protocol": "kserve_v2"}
    )

    assert (found.url, found.protocol) == (URL, "kserve_v2")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"url": "127.0.0.1:9001"}, "expected an http:// or https:// URL"),
        ({"protocol": "grpc"}, "Input should be 'kserve_v2', 'mlflow' or 'http'"),
        ({"port": 9001}, "Extra inputs are not permitted"),
        ({"timeout": 0}, "greater than 0"),
        ({"canary": {"payload": {}}}, "canary.path is required with protocol http"),
        ({"canary": {"payload": {}, "expect": 200}}, "Extra inputs are not permitted"),
        ({"canary": {"payload": {}, "path": "/p", "latency_budget_ms": 0}}, "greater than 0"),
        ({"protocol": "mlflow", "canary": {"payload": "/no/such.json"}}, "cannot read"),
    ],
)
def test_bad_settings_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**values)


def test_a_payload_file_is_sent_as_it_is(tmp_path: Path) -> None:
    sample = tmp_path / "sample.json"
    sample.write_bytes(b'{"instances": [[1, 2]]}\n')

    found = settings(protocol="mlflow", canary={"payload": str(sample)})

    assert found.canary is not None
    assert found.canary.payload == sample
    assert found.canary.body == b'{"instances": [[1, 2]]}\n'


def test_a_payload_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    sample = tmp_path / "sample.json"
    sample.write_text("not json")

    with pytest.raises(ValidationError, match="is not JSON"):
        settings(protocol="mlflow", canary={"payload": str(sample)})


def test_an_inline_payload_is_sent_as_json() -> None:
    found = settings(protocol="mlflow", canary={"payload": {"instances": [[1, 2]]}})

    assert found.canary is not None
    assert found.canary.body == b'{"instances":[[1,2]]}'


# -- endpoints ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"protocol": "kserve_v2", "model": "iris-v2"},
            [
                ("model_server.live", f"{URL}/v2/health/live"),
                ("model_server.ready", f"{URL}/v2/health/ready"),
                ("model_server.model_ready", f"{URL}/v2/models/iris-v2/ready"),
            ],
        ),
        ({"protocol": "mlflow"}, [("model_server.ready", f"{URL}/ping")]),
        ({"url": f"{URL}/healthz"}, [("model_server.ready", f"{URL}/healthz")]),
    ],
)
def test_endpoints(values: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert endpoints(settings(**values)) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"protocol": "kserve_v2"}, f"{URL}/v2/models/iris/infer"),
        ({"protocol": "mlflow"}, f"{URL}/invocations"),
        ({"protocol": "mlflow", "path": "/v1/score"}, f"{URL}/v1/score"),
        ({"url": f"{URL}/health", "path": "/predict"}, f"{URL}/predict"),
        ({"path": "http://other:8000/predict"}, "http://other:8000/predict"),
    ],
)
def test_canary_url(values: dict[str, Any], expected: str) -> None:
    path = {"path": values.pop("path")} if "path" in values else {}
    assert canary_url(settings(canary={"payload": {}, **path}, **values)) == expected


@pytest.mark.asyncio
async def test_the_probe_is_bounded_by_its_settings_timeout() -> None:
    async with aiohttp.ClientSession() as session:
        probe = ModelServerProbe(settings(timeout=2.0), session)

    assert (probe.kind, probe.target, probe.timeout) == (
        "model_server",
        "iris",
        2.0,
    )


# -- what a refusal says -----------------------------------------------------------------


def test_a_model_not_loaded_says_to_check_its_name() -> None:
    found = refusal(
        "model_server.model_ready",
        settings(protocol="kserve_v2", model="fraud"),
        answer(404, b'{"error": "Model with name fraud does not exist."}'),
    )

    assert found == (
        'model \'fraud\' is not loaded (404) ({"error": "Model with name fraud does not '
        'exist."}): check the model name (model: or name:) against the models the server serves'
    )


def test_not_live() -> None:
    found = refusal("model_server.live", settings(protocol="kserve_v2"), answer(500))

    assert found == "not live: 500; the server is unhealthy, see its log or restart it"


# -- canaries ----------------------------------------------------------------------------


def judged(found: HttpAnswer, protocol: str = "mlflow", **canary: Any) -> tuple[str | None, str]:
    return judge_canary(settings(protocol=protocol, canary={"payload": {}, **canary}), found)


def test_a_good_canary() -> None:
    found = judged(answer(200, b'{"predictions": [0.3, 0.7]}', 0.0123), expect_shape=[2])

    assert found == (None, "200 in 12 ms, shape [2]")


def test_a_canary_of_the_wrong_status_quotes_the_body() -> None:
    found = judged(answer(500, b'{"error_code": "INTERNAL_ERROR",\n "message": "boom"}'))

    assert (
        found[0]
        == 'answered 500, expected 200: {"error_code": "INTERNAL_ERROR", "message": "boom"}'
    )


def test_a_canary_may_expect_an_error_status() -> None:
    assert judged(answer(400, b"{}"), protocol="http", path="/p", expect_status=400)[0] is None


def test_a_canary_without_predictions() -> None:
    found = judged(answer(200, b"<html>hi</html>"))

    assert found[0] == "the answer holds no predictions: <html>hi</html>"


def test_a_plain_url_canary_needs_no_json_unless_a_shape_is_expected() -> None:
    assert judged(answer(200, b"ok"), protocol="http", path="/p")[0] is None
    assert judged(answer(200, b"ok"), protocol="http", path="/p", expect_shape=[1])[0] == (
        "the answer holds no predictions: ok"
    )


def test_a_canary_of_the_wrong_shape() -> None:
    found = judged(answer(200, b'{"predictions": [1, 2, 3]}'), expect_shape=[2])

    assert found[0] == (
        "predictions of shape [3], expected [2]: the model's output changed, "
        "or it does not read the payload as before"
    )


def test_a_slow_canary() -> None:
    found = judged(answer(200, b"[1]", 0.25), latency_budget_ms=100)

    assert found[0] == (
        "answered in 250 ms, over its 100 ms budget: the server is overloaded, cold, "
        "or waits on a slow dependency"
    )


# -- the service probe's helpers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"status": "unready", "routes_without_upstream": ["iris"]}',
            "routes_without_upstream: iris",
        ),
        (b'{"status": "unready", "reason": "warming up"}', "warming up"),
        (b'{"error": "database down"}', "database down"),
        (b'{"status": "starting"}', "status starting"),
        (b"still starting\n", "still starting"),
        (b"", "no reason given"),
    ],
)
def test_unready_reason(body: bytes, expected: str) -> None:
    assert unready_reason(answer(503, body)) == expected


def test_worker_samples() -> None:
    page = "\n".join(
        [
            "# TYPE flowops_stream_partitions gauge",
            'flowops_stream_partitions{topic="flowops.traffic"} 2.0',
            "# TYPE flowops_stream_consumer_lag gauge",
            'flowops_stream_consumer_lag{partition="0",topic="flowops.traffic"} 5.0',
            'flowops_stream_consumer_lag{partition="1",topic="flowops.traffic"} 7.0',
        ]
    )

    assert worker_samples(page) == {"partitions": 2.0, "lag": 12.0}


def test_a_page_without_the_gauge() -> None:
    assert worker_samples("# TYPE up gauge\nup 1\n") == {"lag": 0.0}


def test_service_settings() -> None:
    found = ServiceSettings(name="gateway", url="http://127.0.0.1:8080/readyz")

    assert (found.protocol, found.timeout) == ("readyz", 5.0)
    with pytest.raises(ValidationError, match="Input should be 'readyz' or 'stream_worker'"):
        ServiceSettings.model_validate({"name": "w", "url": URL, "protocol": "faust"})
