"""flowops.events.schema_files: docs/events/*.json are what the code generates, and the
traffic schema's models accept and reject what the hand-written decoder does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from flowops.errors import EventError
from flowops.events.codec import decode_traffic
from flowops.events.schema_files import (
    TrafficBatchMessage,
    TrafficRowMessage,
    event_schemas,
    main,
    render,
    write_schemas,
)

DOCS = Path(__file__).resolve().parents[3] / "docs" / "events"
REGENERATE = "regenerate with: python -m flowops.events.schema_files docs/events"


@pytest.mark.parametrize("name", sorted(event_schemas()))
def test_committed_schema_is_what_the_code_generates(name: str) -> None:
    committed = (DOCS / name).read_text(encoding="utf-8")
    assert committed == render(event_schemas()[name]), REGENERATE


def test_no_stale_schema_files() -> None:
    assert sorted(path.name for path in DOCS.glob("*.json")) == sorted(event_schemas()), REGENERATE


@pytest.mark.parametrize(("name", "schema"), sorted(event_schemas().items()))
def test_every_schema_has_its_header(name: str, schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"].startswith("FlowOps ")
    assert schema["x-cloudevents-type"].startswith("dev.flowops.")
    assert schema["x-kafka-topic"].startswith("flowops.")
    assert name.endswith(".v1.json")


@pytest.mark.parametrize("name", ["drift-alert.v1.json", "health.v1.json", "dead-letter.v1.json"])
def test_schema_version_is_required_and_constant(name: str) -> None:
    schema = event_schemas()[name]
    assert schema["required"][0] == "schema_version"
    assert schema["properties"]["schema_version"]["const"] == 1
    assert schema["additionalProperties"] is False


def test_write_schemas_and_main_write_every_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = write_schemas(tmp_path / "a")
    assert sorted(path.name for path in written) == sorted(event_schemas())
    assert main([str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.count(".v1.json") == len(event_schemas())
    assert (tmp_path / "b" / "traffic.v1.json").read_text() == written[0].read_text()


# --- the traffic schema's models agree with the decoder ----------------------------------

ROW = {
    "schema_version": 1,
    "model": "credit",
    "version": "3",
    "request_id": "r-1",
    "timestamp": 1764291600.25,
    "features": {"age": 41, "income": 52000.0, "region": "north", "x": None},
    "prediction": 0.12,
    "latency_ms": 8.5,
    "status": 200,
}
COLUMNS = {
    "request_id": ["r-1", "r-2"],
    "timestamp": [1764291600.25, 1764291600.31],
    "features": {"age": [41, 37], "income": [52000.0, None], "region": ["north", "south"]},
    "prediction": [0.12, {"p": 1}],
    "latency_ms": [8.5, 9.1],
    "status": [200, 503],
}
BATCH = {"schema_version": 1, "model": "credit", "version": "3", "batch": COLUMNS}


def with_(message: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {key: value for key, value in (message | changes).items() if value is not DROP}


def with_columns(**changes: Any) -> dict[str, Any]:
    return with_(BATCH, batch=with_(COLUMNS, **changes))


DROP = object()

MESSAGES = [
    ROW,
    BATCH,
    with_(ROW, features={}),
    with_(ROW, prediction=None),
    with_(ROW, timestamp=1),
    with_(ROW, version=""),
    with_(ROW, schema_version=2),
    with_(ROW, schema_version=True),
    with_(ROW, schema_version=DROP),
    with_(ROW, model=""),
    with_(ROW, model=None),
    with_(ROW, request_id=1),
    with_(ROW, timestamp="1"),
    with_(ROW, latency_ms=True),
    with_(ROW, status=1.0),
    with_(ROW, status=2**63),
    with_(ROW, features={"a": True}),
    with_(ROW, features={"a": [1]}),
    with_(ROW, features=[]),
    with_(ROW, extra=1),
    with_(ROW, prediction=DROP),
    with_(ROW, batch=COLUMNS),
    with_columns(request_id=[]),
    with_columns(request_id=["a", None]),
    with_columns(timestamp=[1, "2"]),
    with_columns(status=[200, True]),
    with_columns(status=[200, 2**63]),
    with_columns(features={"a": [1, {}]}),
    with_columns(features={"a": "x"}),
    with_columns(prediction=DROP),
    with_columns(extra=[]),
    with_(BATCH, batch=[]),
    [ROW],
    "row",
    # the optional fields
    with_(ROW, variant="a", parse_error="the body is not JSON"),
    with_(ROW, variant=None, parse_error=None),
    with_(ROW, variant=1),
    with_(ROW, parse_error=[]),
    with_(ROW, parse_error=False),
    with_columns(variant=["a", None], parse_error=[None, "not JSON"]),
    with_columns(variant=[None, None]),
    with_columns(variant=None),
    with_columns(variant="a"),
    with_columns(parse_error=[None, 1]),
    with_(BATCH, variant="a"),
]


def schema_accepts(message: Any) -> bool:
    adapter: TypeAdapter[BaseModel] = TypeAdapter(TrafficRowMessage | TrafficBatchMessage)
    try:
        adapter.validate_json(orjson.dumps(message))
    except ValidationError:
        return False
    return True


def decoder_accepts(message: Any) -> bool:
    try:
        decode_traffic(orjson.dumps(message))
    except EventError:
        return False
    return True


@pytest.mark.parametrize("message", MESSAGES)
def test_schema_and_decoder_agree(message: Any) -> None:
    assert schema_accepts(message) == decoder_accepts(message)


def test_the_documented_examples_are_accepted() -> None:
    assert schema_accepts(ROW)
    assert schema_accepts(BATCH)


@pytest.mark.parametrize("column", ["status", "variant", "parse_error"])
def test_unequal_columns_are_beyond_the_schema(column: str) -> None:
    ragged = with_columns(**{column: [200] if column == "status" else ["x"]})
    assert schema_accepts(ragged)
    assert not decoder_accepts(ragged)


def test_the_optional_fields_are_not_required() -> None:
    schema = event_schemas()["traffic.v1.json"]["$defs"]
    for name in ("TrafficRowMessage", "TrafficColumns"):
        assert {"variant", "parse_error"} <= set(schema[name]["properties"])
        assert not {"variant", "parse_error"} & set(schema[name]["required"])


def test_the_alerts_window_verdict_is_optional_and_whole() -> None:
    """Added within version 1: not required, null by default; when there, every field of
    it is."""
    schema = event_schemas()["drift-alert.v1.json"]
    assert "window_verdict" in schema["properties"]
    assert "window_verdict" not in schema["required"]
    assert schema["properties"]["window_verdict"]["default"] is None
    body = schema["$defs"]["WindowVerdictBody"]
    assert (
        set(body["required"])
        == set(body["properties"])
        == {
            "drift",
            "verdict",
            "drifted_features",
            "compared_features",
            "drifted_share",
            "drifted_names",
        }
    )
    assert "verdict" in schema["properties"]["test"]["examples"]
