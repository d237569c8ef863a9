"""The one exception tree of FlowOps.

Every error FlowOps raises on purpose derives from :class:`FlowOpsError`; the CLI turns
each into one line on stderr and the exit code drawn here, never a traceback::

    FlowOpsError                      exit 2 unless noted
    ├── ConfigError                   a setting is missing or wrong (.key, .reason)
    ├── MissingExtraError             the command needs an install extra (.extra, .module)
    ├── InputError (ValueError)       user data that cannot be used (.path, .line, .column, .row)
    │   ├── EmptyInputError           a file or sample with nothing to compare
    │   └── EventError                an event that cannot be decoded (.event, .field, .code)
    └── ServiceError                  a service FlowOps needs did not answer (.target), exit 3
        ├── BrokerError               the Kafka broker: not found, not started, not answering
        ├── MlflowError               the MLflow tracking server: no answer, a refusal, a store
        │                             FlowOps cannot write to (.status: the HTTP status or None)
        └── ClusterError              the Kubernetes API server: no answer (exit 3), or a
                                      refusal (.status 401, 403, 404, 422: exit 2) naming its verb

Errors carry their context as attributes so callers can act on them without parsing the
message:

>>> err = InputError("not a number: 'abc'", path="data.csv", column="age", row=7)
>>> str(err)
"data.csv: row 7: column 'age': not a number: 'abc'"
>>> err.exit_code
2
"""

from __future__ import annotations

from typing import Literal, TypeAlias

__all__ = [
    "BrokerError",
    "ClusterError",
    "ConfigError",
    "EmptyInputError",
    "EventError",
    "EventErrorCode",
    "FlowOpsError",
    "InputError",
    "MissingExtraError",
    "MlflowError",
    "ServiceError",
]


class FlowOpsError(Exception):
    """Root of every error FlowOps raises on purpose."""

    exit_code: int = 2


class ConfigError(FlowOpsError):
    """A setting is missing or invalid; ``key`` is its dotted name (``drift.bins``)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"config: {key}: {reason}")


class MissingExtraError(FlowOpsError):
    """A command needs a package that this install left out: ``extra`` is the install
    extra that brings it (``worker``), ``module`` the module that is missing (``faust``).

    >>> str(MissingExtraError("worker", "faust"))
    "this command needs flowops[worker] (faust is not installed): pip install 'flowops[worker]'"
    """

    def __init__(self, extra: str, module: str) -> None:
        self.extra = extra
        self.module = module
        super().__init__(
            f"this command needs flowops[{extra}] ({module} is not installed): "
            f"pip install 'flowops[{extra}]'"
        )


class InputError(FlowOpsError, ValueError):
    """Data given by the user cannot be used; names the file, place and column when known.

    ``row`` is the 1-based data row; ``line`` is the file's line as an editor shows it,
    and is what the message names when both are known.

    >>> str(InputError("not a number: 'n/a'", path="a.csv", line=3, row=2, column="x"))
    "a.csv: line 3: column 'x': not a number: 'n/a'"
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str | None = None,
        column: str | None = None,
        row: int | None = None,
        line: int | None = None,
    ) -> None:
        self.reason = reason
        self.path = path
        self.column = column
        self.row = row
        self.line = line
        place = f"line {line}" if line is not None else f"row {row}" if row is not None else None
        where = [part for part in (path, place) if part]
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(": ".join([*where, reason]))


class EmptyInputError(InputError):
    """A file, column or sample holds no usable values."""


EventErrorCode: TypeAlias = Literal[
    "bad_json",
    "schema_version",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "bad_batch",
    "bad_header",
]
"""What is wrong with an event, in a word fit for a metric label or a dead letter."""


class EventError(InputError):
    """An event (a Kafka message) that cannot be decoded; names the event kind and field.

    ``code`` says what kind of fault it is (:data:`EventErrorCode`), ``field`` where it
    is, as a dotted path (``batch.features.age``).

    >>> err = EventError("expected a number", event="traffic", field="latency_ms")
    >>> str(err), err.code
    ("traffic event: field 'latency_ms': expected a number", 'wrong_type')
    """

    def __init__(
        self,
        reason: str,
        *,
        event: str,
        field: str | None = None,
        code: EventErrorCode = "wrong_type",
    ) -> None:
        super().__init__(reason, column=field)
        self.event = event
        self.field = field
        self.code: EventErrorCode = code
        where = f"field {field!r}: " if field is not None else ""
        self.args = (f"{event} event: {where}{reason}",)


class ServiceError(FlowOpsError):
    """A service FlowOps depends on (broker, MLflow, a model server) did not answer."""

    exit_code = 3

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"{target}: {reason}")


class BrokerError(ServiceError):
    """The Kafka broker: no binary to start, a port taken, no answer, a failed send.

    ``target`` is the broker's address (``127.0.0.1:9092``); the message says what to do.
    """


class MlflowError(ServiceError):
    """The MLflow tracking server did not answer, refused a request, or keeps the run's
    artifacts where FlowOps cannot write.

    ``target`` is the tracking server's URL; ``status`` the HTTP status of a refusal
    (None when nothing answered).

    >>> err = MlflowError("http://127.0.0.1:5000", "HTTP 503: unavailable", status=503)
    >>> str(err), err.exit_code, err.status
    ('http://127.0.0.1:5000: HTTP 503: unavailable', 3, 503)
    """

    def __init__(self, target: str, reason: str, *, status: int | None = None) -> None:
        super().__init__(target, reason)
        self.status = status


class ClusterError(ServiceError):
    """The Kubernetes API server did not answer (exit 3), or refused a request (exit 2).

    ``target`` is the API server's URL; ``status`` the HTTP status of a refusal (None when
    nothing answered). A refusal is the user's to fix (credentials, RBAC, an invalid
    object), so it exits 2 like any configuration error.

    >>> err = ClusterError("https://k8s:6443", "forbidden: patch deployments.apps", status=403)
    >>> str(err), err.exit_code
    ('https://k8s:6443: forbidden: patch deployments.apps', 2)
    """

    def __init__(self, target: str, reason: str, *, status: int | None = None) -> None:
        super().__init__(target, reason)
        self.status = status
        self.exit_code = 3 if status is None or status >= 500 else 2
