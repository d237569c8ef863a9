"""The ``contract`` suite of ``flowops test``: sample payloads sent to a model server.

Each sample is one case. It is sent ``warmup`` times unjudged (a cold connection or a
lazily loaded model is not the contract), then ``repeats`` times; every timed answer
must have the expected status, the required keys and as many predictions as the
payload has rows, and the latencies must meet the budgets: the 95th percentile
(nearest rank) and the maximum over the repeats.

Where the payload goes: ``/invocations`` (``mlflow``), ``/v2/models/{model}/infer``
(``kserve_v2``), ``url`` itself (``http``), or ``path`` resolved against ``url``; a
gateway route is a URL like any other (``http://gateway:8080/models/credit``).

>>> input_rows("mlflow", {"dataframe_split": {"columns": ["a"], "data": [[1], [2]]}})
2
>>> percentile([4.0, 1.0, 3.0, 2.0], 95)
4.0
"""

from __future__ import annotations

import glob
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Self

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from yarl import URL

from flowops._version import __version__
from flowops.errors import ConfigError
from flowops.formats import ServingProtocol, input_rows, predictions_shape, shape_matches
from flowops.monitor.probes.http import check_http_url
from flowops.ops.junit import CaseResult

__all__ = [
    "ContractSettings",
    "Expect",
    "PreparedSample",
    "Sample",
    "endpoint",
    "judge_answer",
    "judge_latency",
    "percentile",
    "prepare_samples",
    "resolve_headers",
    "run_contract",
]

_SECRET_WORDS: Final = ("auth", "key", "token", "secret", "cookie", "password")
_KEY: Final = "test.contract"


class Expect(BaseModel):
    """What every timed answer to a sample must be, and the latency budgets."""

    model_config = ConfigDict(extra="forbid")

    status: int = Field(200, ge=100, le=599, description="the HTTP status of every answer")
    required: list[str] = Field(
        default_factory=list,
        description="keys the JSON answer must hold; dotted for nested ones (meta.version)",
    )
    rows: int | Literal["input", "any"] = Field(
        "input",
        description="predictions per answer: input (as many as the payload's rows), a "
        "number, or any; checked on 2xx answers",
    )
    shape: list[int] | None = Field(
        None, description="shape of the predictions, -1 for any size; null: not checked"
    )
    latency_p95_ms: float | None = Field(
        None, gt=0, description="budget of the 95th percentile (nearest rank) over the repeats"
    )
    latency_max_ms: float | None = Field(
        None, gt=0, description="budget of the slowest of the repeats"
    )

    @field_validator("rows", mode="before")
    @classmethod
    def _rows(cls, value: Any) -> Any:
        if value in ("input", "any") or (type(value) is int and value >= 0):
            return value
        raise ValueError(f"expected input, any or a number of rows, got {value!r}")


class Sample(BaseModel):
    """One payload: inline JSON, or a JSON file (a string entry is a file path or glob)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, description="default: the file's stem")
    file: str | None = Field(None, min_length=1, description="a JSON file, or a glob of them")
    payload: dict[str, Any] | list[Any] | None = Field(None, description="the body, inline")
    expect: Expect | None = Field(None, description="keys here win over contract.expect's")

    @model_validator(mode="before")
    @classmethod
    def _file_shorthand(cls, value: Any) -> Any:
        return {"file": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.file is None) == (self.payload is None):
            raise ValueError("give a sample either file or payload (not both)")
        return self


class ContractSettings(BaseModel):
    """The ``test.contract`` section: the server, its samples, what their answers must be."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="the model server's base URL (or a gateway route's)")
    protocol: ServingProtocol = Field("mlflow", description="mlflow, kserve_v2, or http (POST url)")
    model: str | None = Field(None, min_length=1, description="the model's name (kserve_v2)")
    path: str | None = Field(None, description="POST here, resolved against url")
    samples: list[Sample] = Field(min_length=1, description="payloads, each one case")
    expect: Expect = Field(default_factory=Expect, description="for every sample")
    repeats: int = Field(5, ge=1, le=100_000, description="timed requests per sample")
    warmup: int = Field(1, ge=0, le=1000, description="unjudged requests per sample first")
    timeout: float = Field(10.0, gt=0, le=600, description="seconds each request may take")
    headers: dict[str, str] = Field(
        default_factory=dict, description="headers sent as written: never credentials"
    )
    headers_from_env: dict[str, str] = Field(
        default_factory=dict,
        description="header -> the environment variable holding its value (API keys, tokens)",
    )

    _check_url = field_validator("url")(check_http_url)

    @field_validator("headers")
    @classmethod
    def _no_credentials(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if any(word in name.lower() for word in _SECRET_WORDS):
                raise ValueError(
                    f"{name} looks like a credential: keep it out of the file, put the name "
                    "of an environment variable holding it under headers_from_env"
                )
        return headers

    @model_validator(mode="after")
    def _kserve_model(self) -> Self:
        if self.protocol == "kserve_v2" and self.model is None and self.path is None:
            raise ValueError("protocol kserve_v2 needs model (or path)")
        return self


@dataclass(frozen=True)
class PreparedSample:
    """A sample ready to send: its name, body, rows and merged expectations."""

    name: str
    body: bytes
    rows: int | None
    expect: Expect


def endpoint(settings: ContractSettings) -> str:
    """Where the samples are posted.

    >>> endpoint(ContractSettings(url="http://gw:8080/models/credit", samples=[{"payload": {}}]))
    'http://gw:8080/models/credit/invocations'
    """
    if settings.path is not None:
        return str(URL(settings.url + "/").join(URL(settings.path.lstrip("/"))))
    if settings.protocol == "kserve_v2":
        return f"{settings.url}/v2/models/{settings.model}/infer"
    if settings.protocol == "mlflow":
        return f"{settings.url}/invocations"
    return settings.url


def prepare_samples(settings: ContractSettings) -> list[PreparedSample]:
    """Every sample read and checked; a file that cannot be read is a ConfigError."""
    prepared: list[PreparedSample] = []
    for index, sample in enumerate(settings.samples):
        expect = _merged(settings.expect, sample.expect)
        if sample.payload is not None:
            name = sample.name or f"sample-{index + 1}"
            prepared.append(_prepared(settings, name, sample.payload, expect))
            continue
        assert sample.file is not None
        for path in _files(sample.file, f"{_KEY}.samples.{index}.file"):
            payload = _read_json(path, f"{_KEY}.samples.{index}.file")
            prepared.append(_prepared(settings, sample.name or path.stem, payload, expect))
    _check_unique([sample.name for sample in prepared])
    return prepared


def resolve_headers(settings: ContractSettings) -> dict[str, str]:
    """The headers to send, with ``headers_from_env`` read from the environment."""
    headers = {"User-Agent": f"flowops-test/{__version__}", "Content-Type": "application/json"}
    headers.update(settings.headers)
    for header, variable in settings.headers_from_env.items():
        value = os.environ.get(variable)
        if not value:
            key = f"{_KEY}.headers_from_env.{header}"
            raise ConfigError(key, f"the environment variable {variable} is not set")
        headers[header] = value
    return headers


def judge_answer(
    status: int, body: bytes, expect: Expect, protocol: ServingProtocol, rows: int | None
) -> str | None:
    """What is wrong with one answer, or None.

    >>> judge_answer(200, b'{"predictions": [0.1]}', Expect(), "mlflow", 2)
    '1 predictions for 2 input rows'
    >>> judge_answer(400, b'{"error_code": "BAD_REQUEST"}', Expect(status=400), "mlflow", 1)
    """
    if status != expect.status:
        return f"answered {status}, expected {expect.status}{_excerpt(body)}"
    checks_predictions = 200 <= status < 300 and (
        expect.shape is not None or isinstance(expect.rows, int) or rows is not None
    )
    if not expect.required and not checks_predictions:
        return None
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"the answer is not JSON{_excerpt(body)}"
    missing = [key for key in expect.required if not _has(answer, key.split("."))]
    if missing:
        return f"the answer lacks {', '.join(missing)}{_excerpt(body)}"
    return _judge_predictions(answer, body, expect, protocol, rows) if checks_predictions else None


def _judge_predictions(
    answer: Any, body: bytes, expect: Expect, protocol: ServingProtocol, rows: int | None
) -> str | None:
    if expect.rows == "any" and expect.shape is None:
        return None
    shape = predictions_shape("kserve_v2" if protocol == "kserve_v2" else "mlflow", answer)
    if shape is None:
        return f"the answer holds no predictions{_excerpt(body)}"
    wanted = rows if expect.rows == "input" else expect.rows if expect.rows != "any" else None
    if wanted is not None and (not shape or shape[0] != wanted):
        return f"{shape[0] if shape else 0} predictions for {wanted} input rows"
    if expect.shape is not None and not shape_matches(shape, expect.shape):
        return f"predictions of shape {shape}, expected {expect.shape}"
    return None


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` by nearest rank: the smallest value that at
    least ``q`` percent of the values are less than or equal to.

    >>> percentile([10.0] * 19 + [500.0], 95)
    10.0
    >>> percentile([10.0] * 18 + [500.0, 600.0], 95)
    500.0
    """
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def judge_latency(millis: Sequence[float], expect: Expect) -> str | None:
    """What budget ``millis`` (one per timed request) break, or None.

    >>> judge_latency([5.0, 6.0, 40.0], Expect(latency_p95_ms=20))
    'p95 40.0 ms over its 20 ms budget (3 requests)'
    """
    p95 = percentile(millis, 95)
    if expect.latency_p95_ms is not None and p95 > expect.latency_p95_ms:
        return f"p95 {p95:.1f} ms over its {expect.latency_p95_ms:g} ms budget{_n(millis)}"
    slowest = max(millis)
    if expect.latency_max_ms is not None and slowest > expect.latency_max_ms:
        return f"max {slowest:.1f} ms over its {expect.latency_max_ms:g} ms budget{_n(millis)}"
    return None


async def run_contract(
    settings: ContractSettings,
    samples: Sequence[PreparedSample],
    headers: dict[str, str],
    *,
    done: Callable[[CaseResult], None] = lambda case: None,
) -> list[CaseResult]:
    """Send every sample (one after another, so latencies are not shared) and judge it."""
    url = endpoint(settings)
    results: list[CaseResult] = []
    timeout = aiohttp.ClientTimeout(total=settings.timeout)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        for sample in samples:
            started = time.perf_counter()
            outcome, detail, output = await _run_sample(session, url, settings, sample)
            seconds = time.perf_counter() - started
            results.append(CaseResult("contract", sample.name, outcome, seconds, detail, output))
            done(results[-1])
    return results


class _UnansweredError(Exception):
    """A request that got no HTTP answer; the message says why."""


async def _run_sample(
    session: aiohttp.ClientSession, url: str, settings: ContractSettings, sample: PreparedSample
) -> tuple[Literal["pass", "fail", "error"], str, str]:
    millis: list[float] = []
    try:
        for _ in range(settings.warmup):
            await _post(session, url, sample.body)
        for attempt in range(1, settings.repeats + 1):
            status, body, elapsed = await _post(session, url, sample.body)
            problem = judge_answer(status, body, sample.expect, settings.protocol, sample.rows)
            if problem is not None:
                where = f"request {attempt} of {settings.repeats}: " if settings.repeats > 1 else ""
                answer = body.decode(errors="replace")
                return "fail", where + problem, f"POST {url}\n{status}\n{answer}"
            millis.append(elapsed)
    except _UnansweredError as exc:
        return "error", str(exc), f"POST {url}: {exc}"
    slow = judge_latency(millis, sample.expect)
    if slow is not None:
        return "fail", slow, f"POST {url}: latencies (ms): {_ms_list(millis)}"
    rows = f", {sample.rows} row{'s' * (sample.rows != 1)}" if sample.rows is not None else ""
    timing = f"p95 {percentile(millis, 95):.1f} ms, max {max(millis):.1f} ms{_n(millis)}"
    return "pass", f"{sample.expect.status}{rows}, {timing}", ""


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, bytes, float]:
    """(status, body, milliseconds) of one POST; raises :class:`_UnansweredError`."""
    started = time.perf_counter()
    try:
        async with session.post(url, data=body, allow_redirects=False) as response:
            answer = await response.read()
    except aiohttp.ClientConnectorError as exc:
        reason = "connection refused" if isinstance(exc.os_error, ConnectionRefusedError) else None
        raise _UnansweredError(
            f"cannot connect to {exc.host}:{exc.port}: "
            f"{reason or exc.os_error.strerror or exc.os_error}; is the server running there?"
        ) from None
    except TimeoutError:
        raise _UnansweredError(f"no answer from {url} within {session.timeout.total:g} s") from None
    except aiohttp.ClientError as exc:
        raise _UnansweredError(f"POST {url} failed: {type(exc).__name__}: {exc}") from None
    return response.status, answer, (time.perf_counter() - started) * 1000


def _prepared(
    settings: ContractSettings, name: str, payload: Any, expect: Expect
) -> PreparedSample:
    return PreparedSample(
        name, orjson.dumps(payload), input_rows(settings.protocol, payload), expect
    )


def _merged(base: Expect, override: Expect | None) -> Expect:
    if override is None:
        return base
    return base.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


def _files(pattern: str, key: str) -> list[Path]:
    if glob.has_magic(pattern):
        found = sorted(Path(p) for p in glob.glob(pattern))
        if not found:
            raise ConfigError(key, f"no file matches {pattern!r} (in {Path.cwd()})")
        return found
    return [Path(pattern)]


def _read_json(path: Path, key: str) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(key, f"{path} is not JSON: {exc}") from None


def _check_unique(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{_KEY}.samples", f"two samples are named {name!r}: name them")
        seen.add(name)


def _has(value: Any, parts: list[str]) -> bool:
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def _excerpt(body: bytes, limit: int = 200) -> str:
    text = " ".join(body.decode(errors="replace").split())
    if not text:
        return ""
    return f": {text if len(text) <= limit else text[:limit] + '...'}"


def _n(millis: Sequence[float]) -> str:
    return f" ({len(millis)} request{'s' * (len(millis) != 1)})"


def _ms_list(millis: Sequence[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in millis)
