"""Where FlowOps' log lines go when a command runs (libraries never configure logging).

>>> import io
>>> out = io.StringIO()
>>> log_to("flowops.example", out, "INFO", "%(levelname)s %(message)s")
>>> logging.getLogger("flowops.example").info("hello")
>>> out.getvalue()
'INFO hello\\n'
"""

from __future__ import annotations

import logging
from typing import TextIO

__all__ = ["LOG_FORMAT", "log_to", "quiet_kafka_client"]

LOG_FORMAT = "[%(asctime)s] [%(levelname)s] %(name)s: %(message)s"
"""How FlowOps' long-running commands (worker, gateway) write their log lines."""


def log_to(name: str, stream: TextIO, level: str | int, fmt: str) -> None:
    """Logger ``name`` writes to ``stream`` at ``level``, and only there (no propagation)."""
    logger = logging.getLogger(name)
    logger.setLevel(getattr(logging, level.upper()) if isinstance(level, str) else level)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(fmt))
    logger.handlers[:] = [handler]
    logger.propagate = False


def quiet_kafka_client() -> None:
    """aiokafka logs each failed connection; the command says what failed, once."""
    logger = logging.getLogger("aiokafka")
    logger.handlers[:] = [logging.NullHandler()]
    logger.propagate = False
