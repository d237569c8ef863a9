"""docs/gateway.md and docs/monitor.md stay the references of their sections: every
settings key is in the table, no key that does not exist is, and the example files are
valid settings as written."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from flowops.config import load_settings
from flowops.gateway.config import GatewaySettings, gateway_settings
from flowops.monitor.config import MonitorSettings, monitor_settings

DOCS = Path(__file__).resolve().parents[2] / "docs"
SECTIONS = [
    pytest.param("gateway", GatewaySettings, 5, id="gateway"),
    pytest.param("monitor", MonitorSettings, 2, id="monitor"),
]


def keys(model: type[BaseModel], prefix: str) -> Iterator[str]:
    """Every leaf key under ``prefix``: lists of sections as ``name[]``, maps as
    ``name.<subject>``."""
    for name, field in model.model_fields.items():
        yield from _keys_of(field.annotation, f"{prefix}.{name}")


def _keys_of(annotation: Any, key: str) -> Iterator[str]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        sections = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if sections:
            yield from keys(sections[0], key)
            return
    if origin is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        yield from keys(args[0], key + "[]")
        return
    if origin is dict and isinstance(args[1], type) and issubclass(args[1], BaseModel):
        yield from keys(args[1], key + ".<subject>")
        return
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from keys(annotation, key)
        return
    yield key


@pytest.mark.parametrize(("section", "model", "examples"), SECTIONS)
def test_every_key_is_in_the_reference_table(
    section: str, model: type[BaseModel], examples: int
) -> None:
    text = (DOCS / f"{section}.md").read_text()
    pattern = rf"^\| `({section}\.[^`]+)` \|"
    documented = set(re.findall(pattern, text, flags=re.MULTILINE))
    expected = set(keys(model, section))
    assert expected - documented == set(), f"settings missing from docs/{section}.md"
    assert documented - expected == set(), f"docs/{section}.md names keys that do not exist"


@pytest.mark.parametrize(("section", "model", "examples"), SECTIONS)
def test_the_example_files_are_valid_settings(
    section: str, model: type[BaseModel], examples: int
) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", (DOCS / f"{section}.md").read_text(), re.DOTALL)
    assert len(blocks) == examples
    check = gateway_settings if section == "gateway" else monitor_settings
    for block in blocks:
        assert check(load_settings(overrides=yaml.safe_load(block)))
