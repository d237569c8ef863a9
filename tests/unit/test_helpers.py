"""tests/helpers.py: the one poller the tests share, and the clean-environment fixture."""

from __future__ import annotations

import os

import pytest
from helpers import until, until_sync


@pytest.mark.asyncio
async def test_until_returns_the_first_truthy_answer_of_a_function() -> None:
    answers = iter([0, None, "found", "later"])
    assert await until(lambda: next(answers), "an answer", interval=0) == "found"


@pytest.mark.asyncio
async def test_until_awaits_a_coroutine_function() -> None:
    calls: list[int] = []

    async def condition() -> list[int] | None:
        calls.append(1)
        return calls if len(calls) == 3 else None

    assert await until(condition, "three calls", interval=0) == [1, 1, 1]


@pytest.mark.asyncio
async def test_until_fails_naming_what_it_awaited_and_the_detail() -> None:
    with pytest.raises(AssertionError) as failed:
        await until(lambda: False, "the reload", timeout=0, detail=lambda: "log tail")
    assert str(failed.value) == "not within 0 s: the reload:\nlog tail"


def test_until_sync_returns_the_answer_and_fails_with_the_name() -> None:
    answers = iter([False, 7])
    assert until_sync(lambda: next(answers), "seven", interval=0) == 7
    with pytest.raises(AssertionError, match="not within 0 s: never"):
        until_sync(lambda: None, "never", timeout=0)


@pytest.mark.usefixtures("clean_env")
def test_clean_env_removes_flowops_and_mlflow_variables() -> None:
    assert not [key for key in os.environ if key.startswith(("FLOWOPS_", "MLFLOW_"))]
