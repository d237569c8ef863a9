"""Test helpers every test directory imports (pytest puts ``tests/`` on the path:
``pythonpath`` in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["publish_secret_volume"]


def publish_secret_volume(volume: Path, files: dict[str, str], version: int) -> None:
    """Write ``files`` the way the kubelet updates a mounted Secret: a new directory,
    the ``..data`` link swapped to it in one rename, each file a link through
    ``..data``, the old directory removed."""
    volume.mkdir(exist_ok=True)
    fresh = volume / f"..2026_12_07_{version:02d}"
    fresh.mkdir()
    for name, text in files.items():
        (fresh / name).write_text(text)
    old = (volume / "..data").resolve() if (volume / "..data").exists() else None
    (volume / "..data_tmp").symlink_to(fresh.name)
    os.replace(volume / "..data_tmp", volume / "..data")
    for name in files:
        if not (volume / name).is_symlink():
            (volume / name).symlink_to(f"..data/{name}")
    if old is not None:
        shutil.rmtree(old)
