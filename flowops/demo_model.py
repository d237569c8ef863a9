"""The demo's model server: a toy credit model that answers as ``mlflow models serve`` does.

``flowops up --demo`` runs it as a child process behind the gateway::

    python -m flowops.demo_model --port 5001      # always on 127.0.0.1

=====================  ==================================================================
``POST /invocations``  a JSON body of ``dataframe_records`` (a list of row objects),
                       ``dataframe_split`` (``columns`` and ``data``; without ``columns``
                       the values are in :data:`~flowops.demo.FEATURES` order) or
                       ``instances`` (row objects, or arrays in that order);
                       answers ``{"predictions": [p, ...]}``, one per row
``GET /ping``          200 (``/health`` too), as MLflow's scoring server answers
=====================  ==================================================================

A prediction is a probability of default, rounded to 4 decimals: a logistic function of
the applicant's debt ratio, income, age and channel (:func:`score`); the same row always
gets the same score. A body it cannot read gets a 400 with MLflow's error shape:
``{"error_code": "BAD_REQUEST", "message": "..."}``.

>>> score({"age": 41, "income": 52_000, "debt_ratio": 0.3, "region": "north", "channel": "web"})
0.3775
>>> score({"age": 41, "income": 60_000, "debt_ratio": 0.3, "region": "north", "channel": "web"})
0.3286
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson
from aiohttp import web

from flowops.broker import HOST
from flowops.demo import FEATURES, REFERENCE

__all__ = [
    "DEFAULT_PORT",
    "FEATURES",
    "HOST",
    "BadRequestError",
    "create_app",
    "main",
    "predict",
    "score",
]

DEFAULT_PORT: Final = 5001
CHANNEL_RISK: Final = {"web": 0.0, "branch": -0.3, "partner": 0.4, "phone": 0.2}
"""Log-odds each channel adds; a channel not listed adds nothing."""
_NUMBERS: Final = ("age", "income", "debt_ratio")
_PAYLOADS: Final = "dataframe_records, dataframe_split or instances"


class BadRequestError(ValueError):
    """A request body the model cannot score; its message says why (never the values)."""


def score(row: Mapping[str, Any]) -> float:
    """The probability of default of one applicant (``age``, ``income``, ``debt_ratio``
    numbers; ``channel`` text; other keys ignored). Raises :class:`BadRequestError`."""
    age, income, debt_ratio = (_number(row, name) for name in _NUMBERS)
    channel = row.get("channel")
    log_odds = (
        -2.0
        + 5.0 * debt_ratio
        - 1.5 * math.log(max(income, 1.0) / REFERENCE.income_median)
        - 0.02 * (age - 41.0)
        + (CHANNEL_RISK.get(channel, 0.0) if isinstance(channel, str) else 0.0)
    )
    return round(1.0 / (1.0 + math.exp(-max(min(log_odds, 50.0), -50.0))), 4)


def predict(body: Any) -> list[float]:
    """The predictions for a parsed request body, one per row. Raises :class:`BadRequestError`.

    >>> predict({"dataframe_split": {"data": [[41, 52000, 0.3, "north", "web"]]}})
    [0.3775]
    >>> predict({"inputs": []})
    Traceback (most recent call last):
    ...
    flowops.demo_model.BadRequestError: expected a JSON object with dataframe_records, \
dataframe_split or instances
    """
    rows = _rows(body)
    predictions: list[float] = []
    for index, row in enumerate(rows):
        try:
            predictions.append(score(row))
        except BadRequestError as exc:
            raise BadRequestError(f"row {index}: {exc}") from None
    return predictions


def create_app() -> web.Application:
    """The aiohttp application: ``/invocations``, ``/ping`` and ``/health``."""
    app = web.Application()
    app.router.add_post("/invocations", _invocations)
    app.router.add_get("/ping", _ping)
    app.router.add_get("/health", _ping)
    return app


# -- requests ----------------------------------------------------------------------------


async def _invocations(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _bad_request("the request body is not JSON")
    try:
        predictions = predict(body)
    except BadRequestError as exc:
        return _bad_request(str(exc))
    return web.Response(
        body=orjson.dumps({"predictions": predictions}), content_type="application/json"
    )


async def _ping(request: web.Request) -> web.Response:
    return web.Response(text="\n")


def _bad_request(message: str) -> web.Response:
    body = orjson.dumps({"error_code": "BAD_REQUEST", "message": message})
    return web.Response(status=400, body=body, content_type="application/json")


def _rows(body: Any) -> list[Mapping[str, Any]]:
    """The rows of a request body, as mappings of feature name to value."""
    if isinstance(body, dict):
        if "dataframe_records" in body:
            return _records(body["dataframe_records"], "dataframe_records")
        if "dataframe_split" in body:
            return _split(body["dataframe_split"])
        if "instances" in body:
            return _records(body["instances"], "instances")
    raise BadRequestError(f"expected a JSON object with {_PAYLOADS}")


def _records(items: Any, key: str) -> list[Mapping[str, Any]]:
    if not isinstance(items, list):
        raise BadRequestError(f"'{key}' must be an array")
    rows: list[Mapping[str, Any]] = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            rows.append(item)
        elif isinstance(item, list) and key == "instances":
            rows.append(dict(zip(FEATURES, item, strict=False)))
        else:
            kind = "an object or an array" if key == "instances" else "an object"
            raise BadRequestError(f"'{key}'[{index}] must be {kind}")
    return rows


def _split(split: Any) -> list[Mapping[str, Any]]:
    if not isinstance(split, dict) or not isinstance(split.get("data"), list):
        raise BadRequestError("'dataframe_split' must be an object with a 'data' array")
    columns = split.get("columns", FEATURES)
    if not isinstance(columns, list | tuple) or not all(isinstance(c, str) for c in columns):
        raise BadRequestError("'dataframe_split.columns' must be an array of names")
    rows: list[Mapping[str, Any]] = []
    for index, values in enumerate(split["data"]):
        if not isinstance(values, list):
            raise BadRequestError(f"'dataframe_split.data'[{index}] must be an array")
        rows.append(dict(zip(columns, values, strict=False)))
    return rows


def _number(row: Mapping[str, Any], name: str) -> float:
    value = row.get(name)
    if value is None:
        raise BadRequestError(f"missing feature {name!r}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequestError(f"feature {name!r} must be a finite number")
    return float(value)


# -- the process -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Serve on 127.0.0.1 until SIGINT or SIGTERM; exit 2 when the port is taken."""
    parser = argparse.ArgumentParser(
        prog="python -m flowops.demo_model",
        description="The demo's credit model, answering as an MLflow scoring server.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.port))
    except OSError as exc:
        print(f"demo model: cannot listen on {HOST}:{args.port}: {exc.strerror}", file=sys.stderr)
        raise SystemExit(2) from None
    print("demo model: stopped", file=sys.stderr)


async def _serve(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(create_app(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, port).start()
        print(f"demo model: listening on http://{HOST}:{port}/invocations", file=sys.stderr)
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    main()
