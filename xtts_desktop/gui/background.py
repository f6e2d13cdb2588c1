"""Short background tasks on a pool thread; results arrive on the GUI thread."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from xtts_desktop import config
from xtts_desktop.errors import UserError

logger = logging.getLogger(__name__)


class _Relay(QObject):
    # Emitted from a pool thread (a thread Qt created); delivered queued on the GUI thread.
    done = Signal(int, object)
    failed = Signal(int, str)


class _Task(QRunnable):
    def __init__(self, token: int, function: Callable[[], Any], relay: _Relay) -> None:
        super().__init__()
        self.token = token
        self.function = function
        self.relay = relay

    def run(self) -> None:
        try:
            result = self.function()
        except UserError as error:
            self.relay.failed.emit(self.token, error.message)
        except Exception as error:
            logger.exception("background task failed")
            self.relay.failed.emit(
                self.token,
                f"Something went wrong ({type(error).__name__}: {error}); "
                f"details are in {config.log_dir() / 'xtts-desktop.log'}.",
            )
        else:
            self.relay.done.emit(self.token, result)


class BackgroundTasks(QObject):
    """Runs a function off the GUI thread; `on_done(result)` or `on_failed(message)` runs on it.

    Errors are passed along, never swallowed: a UserError's sentence as it is, anything else
    logged with its traceback and reported in one sentence.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done)
        self._relay.failed.connect(self._on_failed)
        self._callbacks: dict[int, tuple[Callable[[Any], None], Callable[[str], None]]] = {}
        self._tokens = itertools.count(1)

    def submit(
        self,
        function: Callable[[], Any],
        on_done: Callable[[Any], None],
        on_failed: Callable[[str], None],
    ) -> int:
        token = next(self._tokens)
        self._callbacks[token] = (on_done, on_failed)
        self.pool.start(_Task(token, function, self._relay))
        return token

    def forget(self) -> None:
        """No callback runs for the tasks submitted so far (they still finish, unseen)."""
        self._callbacks.clear()

    @property
    def pending(self) -> int:
        return len(self._callbacks)

    @Slot(int, object)
    def _on_done(self, token: int, result: Any) -> None:
        callbacks = self._callbacks.pop(token, None)
        if callbacks is not None:
            callbacks[0](result)

    @Slot(int, str)
    def _on_failed(self, token: int, message: str) -> None:
        callbacks = self._callbacks.pop(token, None)
        if callbacks is not None:
            callbacks[1](message)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Forget queued tasks and wait for the running one; no callback runs after this."""
        self._callbacks.clear()
        self.pool.clear()
        self.pool.waitForDone(int(timeout_s * 1000))
