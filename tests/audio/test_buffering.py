"""The start-up buffer policy on its own, fed arrival times: when a play may start."""

from __future__ import annotations

import pytest

from xtts_desktop.audio.buffering import StartupBuffer


def feed(policy: StartupBuffer, chunks: list[tuple[float, float]]) -> float:
    """Arrivals (time, seconds of audio) with nothing played; returns what is buffered."""
    buffered = 0.0
    for arrived_at, seconds in chunks:
        buffered += seconds
        policy.arrived(arrived_at, seconds, buffered)
    return buffered


def first_ready(policy: StartupBuffer, chunks: list[tuple[float, float]], step=0.005) -> float:
    """Replays the arrivals on a clock; the first time the policy lets the play start."""
    policy.began(0.0)
    buffered, index, now = 0.0, 0, 0.0
    while now < 30.0:
        while index < len(chunks) and chunks[index][0] <= now:
            buffered += chunks[index][1]
            policy.arrived(chunks[index][0], chunks[index][1], buffered)
            index += 1
        if policy.ready(now, buffered):
            return now
        now += step
    raise AssertionError("never ready")


def test_chunks_faster_than_real_time_start_with_the_second_chunk() -> None:
    policy = StartupBuffer(margin_seconds=0.25)
    # A GPU: a small first chunk at 100 ms, then chunks every 30 ms.
    chunks = [(0.10, 0.14), (0.13, 0.28), (0.16, 0.56), (0.19, 1.1)]
    started = first_ready(policy, chunks)
    assert chunks[1][0] <= started < chunks[1][0] + 0.01
    assert policy.production_rate is not None and policy.production_rate > 1


def test_a_start_slower_than_real_time_waits_until_the_next_chunk_is_covered() -> None:
    policy = StartupBuffer(margin_seconds=0.25)
    # This CPU: chunks double in size and each takes about as long as it plays.
    chunks = [(0.2, 0.14), (0.55, 0.28), (1.1, 0.57), (2.05, 1.11), (3.05, 1.12), (4.0, 1.1)]
    started = first_ready(policy, chunks)
    # Playing from `started`, every later chunk arrives before the audio before it is played
    # out, with 0.1 s to spare (what the host's own buffer takes at a start).
    played_before = 0.0
    for arrived_at, seconds in chunks:
        if arrived_at > started:
            assert arrived_at + 0.1 <= started + played_before, (started, arrived_at)
        played_before += seconds
    assert started < 1.5  # and not much later than needed


def test_the_hold_is_bounded_in_audio_and_in_time() -> None:
    slow = [(0.5 * n + 0.5, 0.1) for n in range(100)]  # five times slower than real time
    by_time = StartupBuffer(max_seconds=1.5, max_wait_seconds=2.0)
    started = first_ready(by_time, slow)
    assert started == pytest.approx(0.5 + 2.0, abs=0.01)
    by_audio = StartupBuffer(max_seconds=0.3, max_wait_seconds=60.0)
    started = first_ready(by_audio, slow)
    assert started == pytest.approx(slow[2][0], abs=0.01)  # the third 0.1 s chunk
    at_once = StartupBuffer(max_seconds=0.0)
    assert first_ready(at_once, slow) == pytest.approx(slow[0][0], abs=0.01)


def test_running_dry_holds_until_the_next_chunks_cover_the_wait() -> None:
    policy = StartupBuffer(max_seconds=1.5, margin_seconds=0.1, max_wait_seconds=5.0)
    policy.began(0.0)
    feed(policy, [(0.05, 1.0), (0.1, 1.0)])
    assert policy.ready(0.1, 2.0)
    policy.ran_dry(3.0)
    assert not policy.ready(3.0, 0.0)
    assert not policy.ready(3.01, 0.05)  # audio, but no arrival measured since running dry
    # The chunk that ran late came 3.4 s after the one before: the next may be as late, so
    # its half second is not enough...
    policy.arrived(3.5, 0.5, 0.5)
    assert not policy.ready(3.5, 0.5)
    assert not policy.ready(4.5, 0.5)
    # ...until chunks come faster than they play again (or the most it holds is there).
    policy.arrived(3.6, 0.5, 1.0)
    assert policy.ready(3.6, 1.0)
    # ...or for the longest wait, counted from running dry.
    policy.ran_dry(10.0)
    policy.arrived(10.5, 0.2, 0.2)
    assert not policy.ready(14.9, 0.2)
    assert policy.ready(15.0, 0.2)


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        StartupBuffer(max_seconds=-1)
