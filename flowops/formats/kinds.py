"""The names of the formats and of the model servers' protocols, declared once."""

from __future__ import annotations

from typing import Literal, TypeAlias

__all__ = ["PayloadFormat", "ServingProtocol"]

PayloadFormat: TypeAlias = Literal[
    "instances",
    "kserve_v2",
    "inputs",
    "dataframe_split",
    "dataframe_records",
    "object",
    "csv",
    "unknown",
]
"""Which payload a request was; ``unknown`` when it was none that FlowOps reads."""

ServingProtocol: TypeAlias = Literal["kserve_v2", "mlflow", "http"]
"""How a model server is spoken to: KServe v2 REST, MLflow's scoring server, or plain HTTP
(a URL that takes a POST, such as a gateway route)."""
