"""``streams.references.References``: profiles parsed once per value, bad ones set aside."""

from __future__ import annotations

import numpy as np

from flowops.drift import Profile
from flowops.events import ReferenceProfile, Topics
from streams.references import References


def profile_bytes(model: str, version: str | None = None) -> bytes:
    profile = Profile.from_columns({"x": np.arange(50.0)}, model=model)
    return ReferenceProfile.from_profile(profile, version=version, created_at=1.0).to_json()


def test_a_profile_is_parsed_once_per_value() -> None:
    table = {b"credit": profile_bytes("credit")}
    references = References(table)
    first = references.get("credit")
    assert first is not None
    assert references.get("credit") is not None
    assert references.get("credit")[0] is first[0]  # type: ignore[index]
    assert references.profile("credit") is not None
    table[b"credit"] = profile_bytes("credit", version="2")
    found = references.get("credit")
    assert found is not None
    assert (found[0] is first[0], found[1].version) == (False, "2")


def test_a_model_without_a_profile_has_none() -> None:
    assert References({}).get("nobody") is None


def test_an_unusable_value_is_set_aside_once_for_the_dead_letter_topic() -> None:
    references = References({b"credit": b'{"schema_version": 1}'})
    assert references.get("credit") is None
    assert references.get("credit") is None
    [reject] = references.take_rejects()
    assert (reject.topic, reject.key, reject.code) == (
        Topics.REFERENCES,
        b"credit",
        "missing_field",
    )
    assert references.take_rejects() == []
