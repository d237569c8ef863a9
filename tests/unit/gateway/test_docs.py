"""docs/gateway.md stays the gateway's reference: every settings key is in its table,
and its example files are valid settings as written."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from flowops.config import load_settings
from flowops.gateway.config import GatewaySettings, gateway_settings

DOC = Path(__file__).resolve().parents[3] / "docs" / "gateway.md"


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


def test_every_gateway_key_is_in_the_reference_table() -> None:
    text = DOC.read_text()
    documented = set(re.findall(r"^\| `(gateway\.[^`]+)` \|", text, flags=re.MULTILINE))
    expected = set(keys(GatewaySettings, "gateway"))
    assert expected - documented == set(), "settings missing from docs/gateway.md"
    assert documented - expected == set(), "docs/gateway.md names keys that do not exist"


def test_the_example_files_are_valid_settings() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 2  # the quick start's and the worked example's
    for block in blocks:
        gateway = gateway_settings(load_settings(overrides=yaml.safe_load(block)))
        assert gateway.routes
