"""How much memory the process really uses, for the long-run tests.

Resident memory is a poor leak detector in a process that has loaded and freed models: glibc
keeps freed heap mapped (measured in the whole suite: ~970 MB free inside malloc's arenas),
and how much of it is resident moved by up to 100 MB from one Play/Stop to the next with no
leak at all (a CI run failed on 78 MB). What malloc itself counts as in use does not:
370.4-370.6 MB at nine of ten readings over 250 Play/Stop cycles, where resident memory read
anything from 1497 to 1694 MB. Every tensor on the CPU, every NumPy array and every PortAudio
buffer is malloc'd, so a leak of any of them shows up there, to the byte (keeping a 13 kB
chunk per play: +2.7 MB over 200 plays, a failure; resident memory grew 10 MB, no failure).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import itertools
import os
import statistics


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


_LIBC = _libc()
_MALLINFO2 = getattr(_LIBC, "mallinfo2", None)  # glibc 2.33 and later
if _MALLINFO2 is not None:
    _MALLINFO2.restype = _MallInfo2


def resident_bytes(trim: bool = False) -> int:
    """Resident memory; with trim, after handing malloc's free pages back to the OS first."""
    if trim and _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def in_use_bytes() -> int:
    """Bytes malloc has handed out and not had back (all arenas plus mmapped blocks).

    Without glibc's mallinfo2, resident memory after a trim: noisier, same meaning."""
    gc.collect()
    if _MALLINFO2 is None:
        return resident_bytes(trim=True)
    info = _MALLINFO2()
    return info.uordblks + info.hblkhd


def growth(readings: dict[int, int]) -> tuple[float, int]:
    """From readings of in_use_bytes() keyed by cycle number: the bytes gained per cycle (the
    median of the steps between consecutive readings) and the bytes gained in all (the lowest
    of the last three readings against the lowest of the first three).

    A leak of something per cycle raises every step alike. What is not a leak comes in jumps
    that one step takes: a cache or a pool that grows by a block now and then (measured over
    2,500 window Play/Stop cycles: about 1 kB a cycle, plus a jump of 0.5-2.5 MB every few
    hundred cycles, with or without oneDNN's primitive cache), or an allocation in passing
    that one reading catches (35 MB once, in the whole suite)."""
    cycles = sorted(readings)
    steps = [
        (readings[later] - readings[earlier]) / (later - earlier)
        for earlier, later in itertools.pairwise(cycles)
    ]
    first = min(readings[cycle] for cycle in cycles[:3])
    last = min(readings[cycle] for cycle in cycles[-3:])
    return statistics.median(steps), last - first
