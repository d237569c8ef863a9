"""FlowOps keeps machine-learning models honest in production.

The public surface of the top-level package is small: the version and the error tree.
Drift kernels live in :mod:`flowops.drift`.
"""

from flowops._version import __version__
from flowops.errors import (
    BrokerError,
    ConfigError,
    EmptyInputError,
    EventError,
    FlowOpsError,
    InputError,
    MissingExtraError,
    MlflowError,
    ServiceError,
)

__all__ = [
    "BrokerError",
    "ConfigError",
    "EmptyInputError",
    "EventError",
    "FlowOpsError",
    "InputError",
    "MissingExtraError",
    "MlflowError",
    "ServiceError",
    "__version__",
]
