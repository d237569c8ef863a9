"""A CycloneDX SBOM of an image: the Python distributions its file system holds.

``flowops build`` saves each image it built to an archive (``docker-archive``: what
``docker save``, ``podman save``, ``nerdctl save`` and ``buildah push
docker-archive:`` write), and :func:`image_components` reads the ``*.dist-info/METADATA``
files of its layers, the last layer's copy winning and a whiteout (``.wh.<name>``)
removing what earlier layers held, as the image's file system would show them. The
components, with their package URLs (``pkg:pypi/<name>@<version>``), go to
:func:`cyclonedx`, a CycloneDX 1.5 JSON document that scanners read (Trivy ``sbom``,
Grype ``sbom:``, Dependency-Track).

Why not syft or trivy to make it: neither installs from the package registries FlowOps'
machines reach, and the Python packages are what FlowOps' own images add to their base:
its Containerfiles install nothing else (the base image's Debian packages are the base
image's own SBOM's business).

>>> doc = cyclonedx("flowops-worker:1.0", [Component("orjson", "3.10.0")],
...                 serial="urn:uuid:0", timestamp="2026-01-01T00:00:00Z")
>>> doc["components"][0]["purl"], doc["metadata"]["component"]["name"]
('pkg:pypi/orjson@3.10.0', 'flowops-worker:1.0')
"""

from __future__ import annotations

import email.parser
import json
import re
import tarfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final

from flowops._version import __version__
from flowops.errors import InputError

__all__ = ["SBOM_LABEL", "Component", "cyclonedx", "image_components", "write_sbom"]

SBOM_LABEL: Final = "io.flowops.sbom"
"""The image label naming its SBOM's file (written beside the image's build report)."""

_METADATA: Final = re.compile(r"(^|/)(site|dist)-packages/[^/]+\.dist-info/METADATA$")


@dataclass(frozen=True, order=True)
class Component:
    """A Python distribution found in an image."""

    name: str
    version: str

    @property
    def purl(self) -> str:
        """Its package URL; the name normalised as PEP 503 and the purl spec say.

        >>> Component("Typing_Extensions", "4.12.2").purl
        'pkg:pypi/typing-extensions@4.12.2'
        """
        return f"pkg:pypi/{re.sub(r'[-_.]+', '-', self.name).lower()}@{self.version}"


def image_components(archive: Path) -> list[Component]:
    """The distributions in the image saved at ``archive`` (docker-archive), sorted.

    Raises InputError when the archive has no ``manifest.json`` naming its layers.
    """
    with tarfile.open(archive) as outer:
        layers = _layers(outer, archive)
        found: dict[str, Component] = {}
        for layer in layers:
            member = outer.extractfile(layer)
            if member is not None:
                _read_layer(member, found)
    return sorted(found.values())


def cyclonedx(
    image: str,
    components: list[Component],
    *,
    serial: str | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """The CycloneDX 1.5 document of ``image`` holding ``components``."""
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial or f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": timestamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {
                "components": [{"type": "application", "name": "flowops", "version": __version__}]
            },
            "component": {"type": "container", "name": image, "bom-ref": image},
        },
        "components": [
            {
                "type": "library",
                "name": c.name,
                "version": c.version,
                "purl": c.purl,
                "bom-ref": c.purl,
            }
            for c in components
        ],
    }


def write_sbom(archive: Path, image: str, target: Path) -> int:
    """Write the SBOM of the image saved at ``archive`` to ``target``; the number of
    components."""
    components = image_components(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(cyclonedx(image, components), indent=2) + "\n")
    return len(components)


def _layers(outer: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    try:
        manifest_file = outer.extractfile("manifest.json")
    except KeyError:
        manifest_file = None
    if manifest_file is None:
        raise InputError("not an image archive: no manifest.json", path=str(archive))
    manifest = json.load(manifest_file)
    names = [name for entry in manifest for name in entry.get("Layers", [])]
    return [outer.getmember(name) for name in names]


def _read_layer(layer: IO[bytes], found: dict[str, Component]) -> None:
    """Apply one layer to what the earlier ones left: its whiteouts remove (``.wh.<name>``
    a file or folder, ``.wh..wh..opq`` all of a folder), its METADATA files add or
    replace."""
    added: dict[str, Component] = {}
    with tarfile.open(fileobj=layer, mode="r:*") as tar:
        for member in tar:
            path = PurePosixPath(member.name.lstrip("./"))
            if path.name == ".wh..wh..opq":
                _remove(found, str(path.parent) + "/")
            elif path.name.startswith(".wh."):
                gone = str(path.parent / path.name.removeprefix(".wh."))
                found.pop(gone, None)
                _remove(found, gone + "/")
            elif member.isfile() and _METADATA.search(str(path)):
                handle = tar.extractfile(member)
                component = _component(handle.read()) if handle is not None else None
                if component is not None:
                    added[str(path)] = component
    found.update(added)


def _remove(found: dict[str, Component], prefix: str) -> None:
    for key in [key for key in found if key.startswith(prefix)]:
        del found[key]


def _component(metadata: bytes) -> Component | None:
    headers = email.parser.BytesHeaderParser().parsebytes(metadata)
    name, version = headers.get("Name"), headers.get("Version")
    return Component(str(name), str(version)) if name and version else None
