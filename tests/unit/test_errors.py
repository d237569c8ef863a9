"""The error tree: context attributes, messages and exit codes."""

from __future__ import annotations

import pytest

from flowops.errors import (
    BrokerError,
    ConfigError,
    EmptyInputError,
    EventError,
    FlowOpsError,
    InputError,
    MlflowError,
    ServiceError,
)


@pytest.mark.parametrize(
    ("error", "message", "exit_code"),
    [
        (ConfigError("drift.bins", "must be >= 2"), "config: drift.bins: must be >= 2", 2),
        (
            InputError("not a number", path="a.csv", column="x", row=3),
            "a.csv: row 3: column 'x': not a number",
            2,
        ),
        (InputError("no such column", column="x"), "column 'x': no such column", 2),
        (EmptyInputError("no rows", path="e.csv"), "e.csv: no rows", 2),
        (
            ServiceError("127.0.0.1:9092", "connection refused"),
            "127.0.0.1:9092: connection refused",
            3,
        ),
        (
            EventError("expected a number", event="traffic", field="batch.status[3]"),
            "traffic event: field 'batch.status[3]': expected a number",
            2,
        ),
        (EventError("not JSON", event="traffic"), "traffic event: not JSON", 2),
        (BrokerError("127.0.0.1:9092", "port taken"), "127.0.0.1:9092: port taken", 3),
        (MlflowError("http://m:5000", "HTTP 503", status=503), "http://m:5000: HTTP 503", 3),
    ],
)
def test_message_and_exit_code(error: FlowOpsError, message: str, exit_code: int) -> None:
    assert str(error) == message
    assert error.exit_code == exit_code
    assert isinstance(error, FlowOpsError)


def test_input_errors_are_value_errors() -> None:
    assert issubclass(InputError, ValueError)
    assert issubclass(EmptyInputError, InputError)


def test_context_is_kept() -> None:
    error = InputError("bad", path="p", column="c", row=1)
    assert (error.path, error.column, error.row, error.reason) == ("p", "c", 1, "bad")


def test_event_errors_are_input_errors_with_a_code() -> None:
    error = EventError("bad", event="drift alert", field="model", code="missing_field")
    assert isinstance(error, InputError)
    assert (error.reason, error.event, error.field, error.code) == (
        "bad",
        "drift alert",
        "model",
        "missing_field",
    )
    assert EventError("bad", event="traffic").code == "wrong_type"


def test_broker_errors_are_service_errors() -> None:
    assert issubclass(BrokerError, ServiceError)
    assert BrokerError("tansu", "not found").target == "tansu"
