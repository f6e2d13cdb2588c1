"""Fixtures for the audio tests: a responsive PulseAudio null sink and a Player on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pulse import keep_sink_awake, pulse_available


@pytest.fixture(scope="session")
def awake_sink() -> Iterator[None]:
    """Keeps the default null sink rendering in small blocks for the whole session."""
    if not pulse_available():
        pytest.skip("PulseAudio is not running: run the tests with `make test`")
    with keep_sink_awake():
        yield
