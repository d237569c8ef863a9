"""SBOMs of built images (flowops/ops/sbom.py and the SBOM step of flowops/ops/build.py):
the Python distributions of an image's layers as the file system shows them, written as
CycloneDX beside the image, which is labelled with the file's name."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from flowops.errors import InputError
from flowops.ops.build import BuildRequest, BuildSettings, build, sbom_name
from flowops.ops.builders import Command, FakeRunner, cli_builder
from flowops.ops.sbom import SBOM_LABEL, Component, image_components

SITE = "usr/local/lib/python3.11/site-packages"


def metadata(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: x\n\n".encode()


def layer(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def archive(path: Path, layers: list[Mapping[str, bytes]]) -> Path:
    """A docker-archive: one tar a layer, and manifest.json naming them in order."""
    names = [f"{i}/layer.tar" for i in range(len(layers))]
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["x:1"], "Layers": names}]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in [
            *zip(names, map(layer, layers), strict=True),
            ("manifest.json", manifest),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_the_last_layer_wins_and_a_whiteout_removes(tmp_path: Path) -> None:
    first = {
        f"{SITE}/orjson-3.10.0.dist-info/METADATA": metadata("orjson", "3.10.0"),
        f"{SITE}/gone-1.0.dist-info/METADATA": metadata("gone", "1.0"),
        f"{SITE}/orjson/__init__.py": b"",
    }
    second = {
        f"{SITE}/orjson-3.10.0.dist-info/METADATA": metadata("orjson", "3.10.1"),
        f"{SITE}/.wh.gone-1.0.dist-info": b"",
        "usr/lib/python3/dist-packages/Typing_Extensions-4.12.2.dist-info/METADATA": metadata(
            "Typing_Extensions", "4.12.2"
        ),
    }
    found = image_components(archive(tmp_path / "image.tar", [first, second]))
    assert found == [Component("Typing_Extensions", "4.12.2"), Component("orjson", "3.10.1")]
    assert found[0].purl == "pkg:pypi/typing-extensions@4.12.2"


def test_an_opaque_folder_hides_what_earlier_layers_put_in_it(tmp_path: Path) -> None:
    first = {
        f"{SITE}/old-1.0.dist-info/METADATA": metadata("old", "1.0"),
        f"other/{SITE}/kept-2.0.dist-info/METADATA": metadata("kept", "2.0"),
    }
    second = {
        f"{SITE}/.wh..wh..opq": b"",
        f"{SITE}/new-3.0.dist-info/METADATA": metadata("new", "3.0"),
    }
    found = image_components(archive(tmp_path / "image.tar", [first, second]))
    assert found == [Component("kept", "2.0"), Component("new", "3.0")]


def test_a_file_that_is_no_image_archive_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.tar"
    with tarfile.open(path, "w"):
        pass
    with pytest.raises(InputError, match=r"x\.tar: not an image archive"):
        image_components(path)


class SavingRunner(FakeRunner):
    """The fake runner, which also writes an image archive where a save asks for one."""

    async def __call__(self, command: Command, on_line: object) -> int:
        code = await super().__call__(command, on_line)  # type: ignore[arg-type]
        target = next((a for a in command.argv if a.startswith("docker-archive:")), None)
        if target is not None:
            files = {f"{SITE}/flowops-0.1.0.dist-info/METADATA": metadata("flowops", "0.1.0")}
            archive(Path(target.split(":")[1]), [files])
        return code


def test_build_writes_each_images_sbom_and_labels_the_image(tmp_path: Path) -> None:
    containerfiles = tmp_path / "infra" / "containerfiles"
    containerfiles.mkdir(parents=True)
    (containerfiles / "worker.Containerfile").write_text("FROM scratch\n")
    settings = BuildSettings(containerfiles=containerfiles, context=tmp_path)
    runner = SavingRunner()
    report = asyncio.run(
        build(
            BuildRequest(("worker",), ("1.0",)),
            settings,
            progress=_Quiet(),
            builder=cli_builder("buildah", "buildah"),
            runner=runner,
        )
    )
    (result,) = report.results
    assert result.state == "built", result.errors
    sbom = tmp_path / "build" / "sbom" / sbom_name("flowops-worker", "1.0")
    assert result.sbom == str(sbom)
    assert result.sbom_components == 1
    document = json.loads(sbom.read_text())
    assert document["bomFormat"] == "CycloneDX"
    assert document["metadata"]["component"]["name"] == "flowops-worker:1.0"
    assert [c["purl"] for c in document["components"]] == ["pkg:pypi/flowops@0.1.0"]
    bud = runner.commands[0].argv
    assert f"{SBOM_LABEL}={sbom.name}" in bud


def test_an_image_that_cannot_be_saved_fails_at_sbom(tmp_path: Path) -> None:
    containerfiles = tmp_path / "infra" / "containerfiles"
    containerfiles.mkdir(parents=True)
    (containerfiles / "worker.Containerfile").write_text("FROM scratch\n")
    settings = BuildSettings(containerfiles=containerfiles, context=tmp_path)
    runner = FakeRunner()  # answers the save, writes nothing
    report = asyncio.run(
        build(
            BuildRequest(("worker",), ("1.0",)),
            settings,
            progress=_Quiet(),
            builder=cli_builder("buildah", "buildah"),
            runner=runner,
        )
    )
    (result,) = report.results
    assert (result.state, result.failed_at) == ("failed", "sbom")
    assert result.errors


class _Quiet:
    def start(self, service: str, refs: object) -> None:
        pass

    def line(self, service: str, line: str) -> None:
        pass

    def finish(self, result: object) -> None:
        pass
