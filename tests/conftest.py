"""Fixtures every test directory may use (per-directory conftests add their own)."""

from __future__ import annotations

import os

import pytest

CLEARED_PREFIXES = ("FLOWOPS_", "MLFLOW_")
"""Environment variables that would change what settings or the MLflow client read."""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment without FlowOps' or MLflow's variables, so that a developer's own
    settings (``FLOWOPS_KAFKA__BOOTSTRAP``, ``MLFLOW_TRACKING_URI``) do not leak into the
    defaults a test checks. Use it with ``pytestmark = pytest.mark.usefixtures("clean_env")``."""
    for key in list(os.environ):
        if key.startswith(CLEARED_PREFIXES):
            monkeypatch.delenv(key)
