"""Files re-read when they change (flowops/gateway/reload.py), including a Kubernetes
Secret volume's atomic ``..data`` symlink swap."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from volumes import publish_secret_volume

from flowops.gateway.reload import FileWatcher


class Loads:
    """A reload that reads the file, and fails on content saying ``bad``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.loaded = [path.read_text()]

    async def __call__(self) -> None:
        text = self.path.read_text()
        if "bad" in text:
            raise ValueError("not a list of keys")
        self.loaded.append(text)


async def settle(watcher: FileWatcher) -> bool:
    """Two looks: a change is acted on once it has stayed the same for one look."""
    first = await watcher.check()
    return await watcher.check() or first


@pytest.mark.asyncio
async def test_a_kubernetes_symlink_swap_is_seen_and_reloaded_once(tmp_path: Path) -> None:
    publish_secret_volume(tmp_path, {"keys.yaml": "one"}, 1)
    loads = Loads(tmp_path / "keys.yaml")
    watcher = FileWatcher("keys", [tmp_path / "keys.yaml"], loads)
    assert not await settle(watcher)  # nothing changed
    publish_secret_volume(tmp_path, {"keys.yaml": "two"}, 2)
    assert not await watcher.check()  # changed: wait one look for it to settle
    assert await watcher.check()
    assert not await settle(watcher)
    assert loads.loaded == ["one", "two"]


@pytest.mark.asyncio
async def test_a_file_rewritten_in_place_or_renamed_over_is_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("one")
    loads = Loads(path)
    watcher = FileWatcher("keys", [path], loads)
    path.write_text("two, longer")
    assert await settle(watcher)
    (tmp_path / "new").write_text("three")
    os.replace(tmp_path / "new", path)
    assert await settle(watcher)
    assert loads.loaded == ["one", "two, longer", "three"]


@pytest.mark.asyncio
async def test_a_bad_new_file_keeps_the_old_settings_and_logs_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    publish_secret_volume(tmp_path, {"keys.yaml": "one"}, 1)
    loads = Loads(tmp_path / "keys.yaml")
    watcher = FileWatcher("gateway credentials", [tmp_path / "keys.yaml"], loads)
    publish_secret_volume(tmp_path, {"keys.yaml": "bad"}, 2)
    with caplog.at_level(logging.WARNING, logger="flowops.gateway"):
        assert await settle(watcher)
        for _ in range(3):  # looked at again and again: not tried, not logged again
            assert not await watcher.check()
    assert loads.loaded == ["one"]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1
    assert "kept the previous ones: not a list of keys" in lines[0]
    assert "keys.yaml" in lines[0]
    publish_secret_volume(tmp_path, {"keys.yaml": "three"}, 3)  # the next good one is loaded
    assert await settle(watcher)
    assert loads.loaded == ["one", "three"]


@pytest.mark.asyncio
async def test_a_file_that_disappears_is_a_failed_reload_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("one")
    loads = Loads(path)
    watcher = FileWatcher("keys", [path], loads)
    path.unlink()
    assert await settle(watcher)  # tried: FileNotFoundError, logged, old ones kept
    assert loads.loaded == ["one"]
