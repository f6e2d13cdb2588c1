"""A preallocated single-producer, single-consumer float32 mono ring (synthesis -> PortAudio)."""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["AudioRing"]


class AudioRing:
    """Fixed-size float32 mono ring for one producer thread and one consumer thread.

    The read and write indices only ever grow (Python ints: assigning one is atomic under
    the GIL); the position in the buffer is the index modulo the capacity. The producer
    only assigns the write index and the consumer only the read index, so `write` and
    `read_into` need no lock between them. `clear` may run on any thread while the
    consumer reads: both take a lock that `read_into` holds only for one block's copy, so
    a flush never loses to a concurrent read and the callback never waits for long.
    """

    def __init__(self, capacity_samples: int) -> None:
        if capacity_samples <= 0:
            raise ValueError(f"capacity_samples must be positive, got {capacity_samples}")
        self._capacity = int(capacity_samples)
        self._buffer = np.zeros(self._capacity, dtype=np.float32)
        self._write_index = 0
        self._read_index = 0
        self._delivered = 0
        self._flushed = 0
        self._consumer_lock = threading.Lock()

    # -- both sides ---------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """How many samples the ring holds when full."""
        return self._capacity

    def available(self) -> int:
        """Samples written and not yet read (what the consumer may read now)."""
        return self._write_index - self._read_index

    def free(self) -> int:
        """Samples the producer may write now without overwriting unread audio."""
        return self._capacity - (self._write_index - self._read_index)

    @property
    def total_written(self) -> int:
        """All samples ever accepted by `write`."""
        return self._write_index

    @property
    def total_read(self) -> int:
        """All samples ever handed to the consumer by `read_into` (flushed ones excluded)."""
        return self._delivered

    @property
    def total_flushed(self) -> int:
        """All samples dropped unread by `clear`."""
        return self._flushed

    # -- producer -----------------------------------------------------------------------

    def write(self, samples: np.ndarray) -> int:
        """Copy as many of `samples` as fit; returns how many were written (maybe 0)."""
        data = np.asarray(samples, dtype=np.float32).reshape(-1)
        # A stale (too small) read index only makes the free space look smaller: safe.
        write_index = self._write_index
        count = min(data.shape[0], self._capacity - (write_index - self._read_index))
        if count <= 0:
            return 0
        start = write_index % self._capacity
        first = min(count, self._capacity - start)
        self._buffer[start : start + first] = data[:first]
        if count > first:
            self._buffer[: count - first] = data[first:count]
        # Publish only after the copy: the consumer never sees unwritten samples.
        self._write_index = write_index + count
        return count

    # -- consumer -----------------------------------------------------------------------

    def read_into(self, out: np.ndarray) -> int:
        """Copy up to len(out) samples into the 1-D array `out`; returns how many.

        Samples of `out` past the returned count are left untouched. No allocation of
        buffers, no logging: safe to call from the PortAudio callback.
        """
        with self._consumer_lock:
            read_index = self._read_index
            count = min(out.shape[0], self._write_index - read_index)
            if count <= 0:
                return 0
            start = read_index % self._capacity
            first = min(count, self._capacity - start)
            out[:first] = self._buffer[start : start + first]
            if count > first:
                out[first:count] = self._buffer[: count - first]
            self._read_index = read_index + count
            self._delivered += count
            return count

    # -- any thread ---------------------------------------------------------------------

    def clear(self) -> int:
        """Drop everything written so far and not yet read; returns how many samples.

        Safe against a concurrent `read_into`. A `write` running at the same moment on the
        producer thread may still land after the flush: callers that need a clean cut stop
        their producer first (the Player does so under its write lock).
        """
        with self._consumer_lock:
            write_index = self._write_index
            dropped = write_index - self._read_index
            self._read_index = write_index
            self._flushed += dropped
            return dropped
