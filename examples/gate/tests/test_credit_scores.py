"""Unit tests of the demo credit model, the project's own suite that `flowops test` runs."""

from __future__ import annotations

import pytest

from flowops.demo_model import score

APPLICANT = {"age": 41, "income": 52_000, "debt_ratio": 0.3, "region": "north", "channel": "web"}


def test_a_score_is_a_probability() -> None:
    assert 0.0 < score(APPLICANT) < 1.0


@pytest.mark.parametrize(("low", "high"), [(0.1, 0.3), (0.3, 0.6), (0.6, 0.9)])
def test_more_debt_is_more_risk(low: float, high: float) -> None:
    assert score({**APPLICANT, "debt_ratio": low}) < score({**APPLICANT, "debt_ratio": high})


def test_more_income_is_less_risk() -> None:
    assert score({**APPLICANT, "income": 90_000}) < score(APPLICANT)


def test_the_same_applicant_gets_the_same_score() -> None:
    assert score(dict(APPLICANT)) == score(APPLICANT)
