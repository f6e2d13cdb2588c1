"""Keeps PySide6 6.12 from crashing CPython 3.11: it drops references to None and True.

Measured here with PySide6-Essentials 6.12.0 on CPython 3.11.7: every Python call of a
void Qt method (QLabel.setText, QTimer.start, QApplication.processEvents, ...) returns None
without taking a reference to it, and every `signal.emit()`/`signal.disconnect()` does the
same with True. Their reference counts fall by one per call until CPython aborts with
"Fatal Python error: none_dealloc: deallocating None" (or bool_dealloc): after a few
hundred signals in a small script, after minutes in the window. PySide6 6.11.3 does not do
this, and CPython 3.12 made None, True and False immortal, which hides it.

`install()` probes for the loss and, only where it happens, does what CPython 3.12 does:
it raises the reference counts of None, True and False so far that no run can bring them
to zero. These three objects are never freed anyway, so the extra count costs nothing.
"""

from __future__ import annotations

import ctypes
import logging
import sys

from PySide6.QtCore import QObject, Signal

logger = logging.getLogger(__name__)

# A quarter of the largest count: unreachable by decrements, far from overflow by increments.
_IMMORTAL_BOOST = sys.maxsize >> 2
_PROBE_CALLS = 16
_done = False


class _Probe(QObject):
    probe = Signal()


def _loses(obj: object, call) -> bool:
    before = sys.getrefcount(obj)
    for _ in range(_PROBE_CALLS):
        call()
    return sys.getrefcount(obj) <= before - _PROBE_CALLS


def _boost(obj: object) -> bool:
    """Add _IMMORTAL_BOOST to obj's reference count (ob_refcnt is the first field)."""
    if hasattr(sys, "getobjects"):  # a Py_TRACE_REFS build: ob_refcnt is not first
        return False
    before = sys.getrefcount(obj)
    ctypes.c_ssize_t.from_address(id(obj)).value += _IMMORTAL_BOOST
    return sys.getrefcount(obj) - before == _IMMORTAL_BOOST


def install() -> list[str]:
    """Probe once per process; make the objects PySide6 loses references to immortal.

    Returns the names of the objects that were boosted (empty when nothing is lost).
    """
    global _done
    if _done or sys.version_info >= (3, 12):
        return []
    _done = True
    probe = _Probe()
    lost = []
    if _loses(None, lambda: probe.setObjectName("probe")):
        lost.append(None)
    if _loses(True, probe.probe.emit):
        lost.append(True)
        lost.append(False)  # disconnect() and emit() can return either
    boosted = [repr(obj) for obj in lost if _boost(obj)]
    if lost:
        logger.info(
            "PySide6 drops references to %s on this Python; made them immortal",
            ", ".join(repr(obj) for obj in lost),
        )
    if len(boosted) != len(lost):
        logger.error("could not protect %s from PySide6's reference loss", lost)
    return boosted
