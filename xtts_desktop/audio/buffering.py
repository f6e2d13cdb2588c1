"""When a streaming play may start, or resume after running dry: the start-up buffer policy.

A streaming engine's first chunks can come slower than they play even when synthesis as a
whole is faster than real time: XTTS starts with a small chunk (for a low time to first
audio) and each chunk costs a decode however small. Played at once, such a start runs dry
again and again. So the player holds the device on silence until the ring holds enough
audio to last until the next chunk is expected, and enough to cover the shortfall of a
production rate below real time over a short horizon; both are estimated from the chunks'
arrival times and lengths, nothing is assumed about the engine. When chunks come faster
than real time (a GPU), the estimate is about one chunk interval, met at once.

The wait is bounded: never more than `max_seconds` of audio held back, never longer than
`max_wait_seconds` after the first chunk of the hold, and none at all once the input has
ended (a short text plays as soon as it is there).

Threads. `began`, `arrived` and `ran_dry` are called by the producer (the first two) and
the audio callback (the last); `ready` by the callback. Each writes plain attributes (an
atomic assignment each under the GIL); a reader that sees one update before another only
opens a moment earlier or later. No allocation of buffers, no locks, no logging.
"""

from __future__ import annotations

import math

__all__ = ["StartupBuffer"]

# The most the next chunk interval is predicted to grow over the last one. Chunks that grow
# (XTTS doubles them up to a limit) take longer to make: the next interval is predicted to
# grow as the last interval did, or as the last chunk's length did, whichever is more.
_MAX_GROWTH = 2.0


class StartupBuffer:
    """The hold-back decision for one play (and each re-buffer after it ran dry).

    All times are time.perf_counter() seconds; all amounts are seconds of audio.
    """

    def __init__(
        self,
        max_seconds: float = 1.5,
        max_wait_seconds: float = 2.0,
        margin_seconds: float = 0.2,
        horizon_seconds: float = 4.0,
    ) -> None:
        """max_seconds: never hold back more audio than this. max_wait_seconds: never hold
        longer than this after the hold's first chunk. margin_seconds: audio to spare when
        the next chunk comes as predicted (the device's own buffer fills first at a start,
        so it should cover the output latency). horizon_seconds: how far ahead a production
        rate below real time must be covered."""
        if max_seconds < 0 or max_wait_seconds < 0 or margin_seconds < 0 or horizon_seconds < 0:
            raise ValueError("buffering limits must not be negative")
        self.max_seconds = float(max_seconds)
        self.max_wait_seconds = float(max_wait_seconds)
        self.margin_seconds = float(margin_seconds)
        self.horizon_seconds = float(horizon_seconds)
        self.began(0.0)

    def began(self, now: float) -> None:
        """A play begins: the producer starts making its audio now."""
        self._began_at = now
        self._last_arrival = now
        self._last_interval: float | None = None
        self._last_chunk_seconds: float | None = None
        self._produced = 0.0
        self.hold_since: float | None = None  # the first chunk of this hold arrived then
        self.open_at = math.inf  # the wait until the next chunk is covered from then on
        self.required_seconds = 0.0  # audio the ring must hold, for the rate's shortfall
        self.production_rate: float | None = None  # seconds of audio per second so far

    def arrived(self, now: float, seconds: float, buffered_seconds: float) -> None:
        """A chunk of `seconds` of audio arrived; the ring now holds `buffered_seconds`."""
        interval = max(0.0, now - self._last_arrival)
        growth = 1.0
        if self._last_interval:
            growth = max(growth, interval / self._last_interval)
        if self._last_chunk_seconds:
            growth = max(growth, seconds / self._last_chunk_seconds)
        predicted_wait = interval * min(_MAX_GROWTH, growth)
        self._last_arrival = now
        self._last_interval = interval
        self._last_chunk_seconds = seconds
        self._produced += seconds
        elapsed = now - self._began_at
        rate = self._produced / elapsed if elapsed > 0 else math.inf
        self.production_rate = rate
        shortfall = (1.0 - rate) * self.horizon_seconds if rate < 1.0 else 0.0
        self.required_seconds = min(self.max_seconds, shortfall + self.margin_seconds)
        # Playing from open_at on, what is buffered lasts until the next chunk plus the margin.
        self.open_at = now + predicted_wait + self.margin_seconds - buffered_seconds
        if self.hold_since is None:
            self.hold_since = now

    def ran_dry(self, now: float) -> None:
        """The ring ran dry mid-play: hold again until the next chunks make it safe."""
        self.hold_since = now
        self.open_at = math.inf

    def ready(self, now: float, buffered_seconds: float) -> bool:
        """Whether the device may take audio now (the input has not ended)."""
        if buffered_seconds <= 0:
            return False
        if buffered_seconds >= self.max_seconds:
            return True
        if self.hold_since is not None and now - self.hold_since >= self.max_wait_seconds:
            return True
        return now >= self.open_at and buffered_seconds >= self.required_seconds
