"""AudioRing: capacity, wrap-around, flush and a real two-thread producer/consumer run."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xtts_desktop.audio.ring import AudioRing


def test_rejects_non_positive_capacity() -> None:
    with pytest.raises(ValueError):
        AudioRing(0)


def test_write_stops_at_capacity_and_reports_free_space() -> None:
    ring = AudioRing(10)
    assert ring.free() == 10
    assert ring.write(np.arange(7, dtype=np.float32)) == 7
    assert ring.available() == 7
    assert ring.free() == 3
    assert ring.write(np.arange(7, dtype=np.float32)) == 3
    assert ring.free() == 0
    assert ring.write(np.ones(1, dtype=np.float32)) == 0
    assert ring.total_written == 10


def test_wrap_around_keeps_order() -> None:
    ring = AudioRing(8)
    out = np.full(8, -1.0, dtype=np.float32)
    assert ring.write(np.arange(6, dtype=np.float32)) == 6
    assert ring.read_into(out[:5]) == 5
    np.testing.assert_array_equal(out[:5], np.arange(5))
    # Write index is at 6: these 7 samples wrap past the end of the buffer.
    assert ring.write(np.arange(100, 107, dtype=np.float32)) == 7
    out[:] = -1.0
    assert ring.read_into(out) == 8
    np.testing.assert_array_equal(out, [5, 100, 101, 102, 103, 104, 105, 106])
    assert ring.available() == 0
    assert ring.total_read == 13


def test_read_into_leaves_the_rest_of_out_untouched() -> None:
    ring = AudioRing(16)
    ring.write(np.array([1.0, 2.0], dtype=np.float32))
    out = np.full(5, 9.0, dtype=np.float32)
    assert ring.read_into(out) == 2
    np.testing.assert_array_equal(out, [1.0, 2.0, 9.0, 9.0, 9.0])
    assert ring.read_into(out) == 0


def test_accepts_other_dtypes_and_shapes() -> None:
    ring = AudioRing(4)
    assert ring.write(np.array([[0.5], [0.25]], dtype=np.float64)) == 2
    out = np.zeros(2, dtype=np.float32)
    ring.read_into(out)
    np.testing.assert_array_equal(out, [0.5, 0.25])


def test_clear_drops_unread_audio_and_counts_it() -> None:
    ring = AudioRing(8)
    ring.write(np.arange(5, dtype=np.float32))
    out = np.zeros(2, dtype=np.float32)
    ring.read_into(out)
    assert ring.clear() == 3
    assert ring.available() == 0
    assert ring.free() == 8
    assert ring.total_flushed == 3
    assert ring.read_into(out) == 0
    # The ring keeps working after a flush, from the producer's current position.
    ring.write(np.array([7.0, 8.0], dtype=np.float32))
    assert ring.read_into(out) == 2
    np.testing.assert_array_equal(out, [7.0, 8.0])


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(min_value=1, max_value=40),
    operations=st.lists(
        st.tuples(st.sampled_from(["write", "read", "clear"]), st.integers(0, 60)), max_size=60
    ),
)
def test_behaves_like_a_bounded_fifo(capacity: int, operations: list[tuple[str, int]]) -> None:
    ring = AudioRing(capacity)
    model: list[float] = []
    next_value = 0.0
    for operation, size in operations:
        if operation == "write":
            data = np.arange(next_value, next_value + size, dtype=np.float32)
            next_value += size
            written = ring.write(data)
            assert written == min(size, capacity - len(model))
            model.extend(data[:written].tolist())
        elif operation == "read":
            out = np.zeros(size, dtype=np.float32)
            count = ring.read_into(out)
            assert count == min(size, len(model))
            assert out[:count].tolist() == model[:count]
            del model[:count]
        else:
            assert ring.clear() == len(model)
            model.clear()
        assert ring.available() == len(model)
        assert ring.free() == capacity - len(model)


def _consume(
    ring: AudioRing, total: int, block: int, received: np.ndarray, deadline: float
) -> None:
    out = np.zeros(block, dtype=np.float32)
    position = 0
    while position < total and time.monotonic() < deadline:
        count = ring.read_into(out)
        received[position : position + count] = out[:count]
        position += count
        if count == 0:
            time.sleep(0)  # yield the GIL to the producer


def test_concurrent_producer_and_consumer_keep_a_ramp_intact() -> None:
    total = 1_000_003
    ramp = np.arange(total, dtype=np.float64).astype(np.float32)
    # float32 holds integers exactly up to 2**24: the ramp is exact.
    assert total < 2**24
    ring = AudioRing(4093)  # prime: writes and reads wrap at ever-changing offsets
    received = np.full(total, -1.0, dtype=np.float32)
    max_fill = 0
    deadline = time.monotonic() + 30.0
    consumer = threading.Thread(
        target=_consume, args=(ring, total, 333, received, deadline), daemon=True
    )
    consumer.start()
    position = 0
    chunk_sizes = [1, 17, 1000, 4093, 5000, 257]
    step = 0
    while position < total and time.monotonic() < deadline:
        size = chunk_sizes[step % len(chunk_sizes)]
        step += 1
        written = ring.write(ramp[position : position + size])
        position += written
        max_fill = max(max_fill, ring.available())
        if written == 0:
            time.sleep(0)
    consumer.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not consumer.is_alive(), "consumer did not receive every sample before the deadline"
    assert position == total
    assert max_fill <= ring.capacity
    np.testing.assert_array_equal(received, ramp)
    assert ring.total_read == total


def test_clear_during_concurrent_reads_never_resurrects_audio() -> None:
    """After clear() returns, the consumer only ever sees samples written after it."""
    ring = AudioRing(1024)
    stop = threading.Event()
    seen: list[float] = []

    def consumer() -> None:
        out = np.zeros(64, dtype=np.float32)
        while not stop.is_set():
            count = ring.read_into(out)
            if count:
                seen.extend(out[:count].tolist())
            else:
                time.sleep(0)

    thread = threading.Thread(target=consumer, daemon=True)
    thread.start()
    try:
        for round_number in range(200):
            ring.write(np.full(1000, -1.0, dtype=np.float32))  # to be flushed
            ring.clear()
            marker = float(round_number)
            seen_before = len(seen)
            ring.write(np.full(10, marker, dtype=np.float32))
            deadline = time.monotonic() + 5.0
            while ring.available() and time.monotonic() < deadline:
                time.sleep(0)
            assert ring.available() == 0
            # Everything read after the flush is the marker, never the flushed -1s...
            tail = seen[seen_before:]
            assert all(value == marker for value in tail[-10:])
    finally:
        stop.set()
        thread.join(timeout=5)
    # ...and every marker arrived exactly once.
    markers = [value for value in seen if value >= 0]
    assert len(markers) == 200 * 10
