"""The one exception tree of FlowOps.

Every error FlowOps raises on purpose derives from :class:`FlowOpsError`; the CLI turns
each into one line on stderr and the exit code drawn here, never a traceback::

    FlowOpsError                      exit 2 unless noted
    ├── ConfigError                   a setting is missing or wrong (.key, .reason)
    ├── InputError (ValueError)       user data that cannot be used (.path, .line, .column, .row)
    │   └── EmptyInputError           a file or sample with nothing to compare
    └── ServiceError                  a service FlowOps needs did not answer (.target), exit 3

Errors carry their context as attributes so callers can act on them without parsing the
message:

>>> err = InputError("not a number: 'abc'", path="data.csv", column="age", row=7)
>>> str(err)
"data.csv: row 7: column 'age': not a number: 'abc'"
>>> err.exit_code
2
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EmptyInputError",
    "FlowOpsError",
    "InputError",
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


class ServiceError(FlowOpsError):
    """A service FlowOps depends on (broker, MLflow, a model server) did not answer."""

    exit_code = 3

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"{target}: {reason}")
