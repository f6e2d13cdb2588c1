"""The remote engine: the same streaming synthesis from `xtts-desktop serve` (or a Truss) over HTTP.

Standard library HTTP (http.client), so the client needs no package of its own, and the
socket stays in reach: cancelling a stream shuts the socket down from a watcher thread,
which wakes a read blocked on a quiet server at once and tells the server (by the closed
connection) to stop synthesizing within a token.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from xtts_desktop.engine.stream import StreamStats
from xtts_desktop.errors import Cancelled, UserError
from xtts_desktop.server import SAMPLE_RATE, PcmDecoder

logger = logging.getLogger(__name__)

READ_SIZE = 65536
# Cancel is a callable: the watcher asks it this often while a stream runs.
CANCEL_POLL_S = 0.05
MAX_ERROR_BODY = 65536


@dataclass
class RemoteStats(StreamStats):
    """Timings of one remote stream, measured at the client (network included).

    The engine's StreamStats, so a window shows either alike; the server sends no token
    counts, so those stay 0 (and ms_per_token None).
    """

    sample_rate: int = SAMPLE_RATE
    response_at: float | None = None
    bytes_received: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "time_to_first_chunk_ms": self.time_to_first_chunk_ms,
            "synthesis_seconds": self.synthesis_seconds,
            "audio_seconds": self.audio_seconds,
            "rtf": self.rtf,
            "bytes_received": self.bytes_received,
        }


class _CancelWatcher:
    """Shuts the connection's socket down once ``cancel()`` turns true (wakes a blocked read)."""

    def __init__(self, cancel: Callable[[], bool], connection: http.client.HTTPConnection) -> None:
        self._cancel = cancel
        self._connection = connection
        self._done = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._watch, name="xtts-remote-cancel", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(CANCEL_POLL_S):
            if self._cancel():
                self.fired = True
                sock = self._connection.sock
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _cancel_check(cancel: Callable[[], bool] | threading.Event | None) -> Callable[[], bool] | None:
    if cancel is None:
        return None
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    return cancel


class RemoteEngine:
    """A client of the streaming endpoint: voices(), health() and stream() of float32 chunks."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
    ) -> None:
        """``url`` is the server (http://host:port) or a full .../predict URL (a Truss);
        ``timeout`` is how long the server may stay silent (queue wait included)."""
        text = (url or "").strip()
        if text and "://" not in text:
            text = "http://" + text
        parts = urllib.parse.urlsplit(text)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise UserError(
                f"'{url}' is not a server address; write it like http://192.168.1.20:8080."
            )
        path = parts.path.rstrip("/")
        if path.endswith("/predict"):
            path = path[: -len("/predict")]
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port or (443 if self._https else 80)
        self._base_path = path
        self.url = f"{parts.scheme}://{parts.netloc}{path}"
        self.api_key = api_key.strip() if api_key and api_key.strip() else None
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)

    # ----- plumbing --------------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=self.connect_timeout,
                context=ssl.create_default_context(),
            )
        else:
            connection = http.client.HTTPConnection(
                self._host, self._port, timeout=self.connect_timeout
            )
        try:
            connection.connect()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise self._network_error(error) from None
        connection.sock.settimeout(self.timeout)
        return connection

    def _headers(self, json_body: bool) -> dict[str, str]:
        headers = {
            "Accept": "application/octet-stream, application/json",
            "User-Agent": "xtts-desktop",
        }
        if json_body:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Api-Key {self.api_key}"
        return headers

    def _network_error(self, error: BaseException) -> UserError:
        if isinstance(error, ConnectionRefusedError):
            return UserError(
                f"Cannot connect to the server at {self.url}: nothing is listening there "
                "(is 'xtts-desktop serve' running?)."
            )
        if isinstance(error, socket.gaierror):
            return UserError(f"Cannot find the server '{self._host}': the name does not resolve.")
        if isinstance(error, TimeoutError):
            return UserError(f"The server at {self.url} did not answer within {self.timeout:g} s.")
        if isinstance(error, ssl.SSLError):
            return UserError(
                f"The secure connection to {self.url} failed ({error.reason or error})."
            )
        if isinstance(error, (http.client.HTTPException, ConnectionError)):
            return UserError(f"The server at {self.url} closed the connection unexpectedly.")
        if isinstance(error, OSError):
            return UserError(f"Cannot reach the server at {self.url} ({error.strerror or error}).")
        return UserError(f"Cannot talk to the server at {self.url} ({error}).")

    def _status_error(self, response: http.client.HTTPResponse, path: str) -> UserError:
        status = response.status
        try:
            raw = response.read(MAX_ERROR_BODY)
        except (OSError, http.client.HTTPException):
            raw = b""
        message = ""
        try:
            body = json.loads(raw)
            if isinstance(body, dict):
                # Our server says "error"; a Truss (FastAPI) says "detail".
                message = str(body.get("error") or body.get("detail") or "")
        except ValueError:
            message = raw.decode("utf-8", "replace").strip()[:200]
        if status in (401, 403):
            if self.api_key is None:
                return UserError(
                    f"The server at {self.url} needs an API key; give it with the server's address."
                )
            return UserError(f"The server at {self.url} did not accept the API key; check it.")
        if status == 503:
            retry = (response.getheader("Retry-After") or "").strip()
            when = f"in {retry} s" if retry.isdigit() else "in a moment"
            return UserError(
                f"The server at {self.url} is busy with other requests; try again {when}."
            )
        if status == 404:
            return UserError(
                f"The server at {self.url} has no {path}; check the address "
                "(an xtts-desktop server, or a Truss's .../predict URL)."
            )
        if 400 <= status < 500 and message:
            return UserError(message)
        detail = f" ({message})" if message else ""
        return UserError(
            f"The server at {self.url} answered HTTP {status} {response.reason}{detail}."
        )

    def _get_json(self, path: str) -> Any:
        connection = self._connect()
        try:
            try:
                connection.request("GET", self._base_path + path, headers=self._headers(False))
                response = connection.getresponse()
                if response.status != 200:
                    raise self._status_error(response, path)
                data = response.read()
            except (OSError, http.client.HTTPException) as error:
                raise self._network_error(error) from None
        finally:
            connection.close()
        try:
            return json.loads(data)
        except ValueError:
            raise UserError(f"The server at {self.url} did not answer {path} with JSON.") from None

    # ----- the API ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The server's /health: busy, queue length, and (with the key) model, device, jobs."""
        body = self._get_json("/health")
        if not isinstance(body, dict):
            raise UserError(f"The server at {self.url} answered /health with something unexpected.")
        return body

    def voices_by_kind(self) -> dict[str, list[str]]:
        """{"builtin": [...], "saved": [...]} as the server lists them."""
        body = self._get_json("/voices")
        if not isinstance(body, dict):
            raise UserError(f"The server at {self.url} answered /voices with something unexpected.")
        return {kind: [str(name) for name in body.get(kind) or []] for kind in ("builtin", "saved")}

    def voices(self) -> list[str]:
        """The server's built-in speakers, then its saved voices."""
        groups = self.voices_by_kind()
        return list(dict.fromkeys(groups["builtin"] + groups["saved"]))

    def stream(
        self,
        text: str,
        voice: str | None,
        language: str,
        speed: float = 1.0,
        cancel: Callable[[], bool] | threading.Event | None = None,
        stats: RemoteStats | None = None,
        *,
        chunk_size: int | None = None,
        seed: int | None = None,
        greedy: bool | None = None,
    ) -> Iterator[np.ndarray]:
        """Float32 mono 24 kHz chunks as they arrive. Raises UserError for what the server
        refuses or a broken connection, Cancelled when ``cancel`` turns true (checked while
        waiting, within about 50 ms). Closing the iterator early closes the connection, which
        cancels the synthesis on the server."""
        payload: dict[str, Any] = {"text": text, "language": language, "speed": speed}
        if voice:
            payload["voice"] = voice
        for name, value in (("chunk_size", chunk_size), ("seed", seed), ("greedy", greedy)):
            if value is not None:
                payload[name] = value
        body = json.dumps(payload).encode("utf-8")
        check = _cancel_check(cancel)
        stats = stats if stats is not None else RemoteStats()
        stats.started_at = time.perf_counter()
        if check is not None and check():
            raise Cancelled()
        connection = self._connect()
        watcher = _CancelWatcher(check, connection) if check is not None else None

        def cancelled() -> bool:
            return watcher is not None and (watcher.fired or bool(check and check()))

        try:
            try:
                connection.request(
                    "POST", self._base_path + "/predict", body=body, headers=self._headers(True)
                )
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as error:
                if cancelled():
                    raise Cancelled() from None
                raise self._network_error(error) from None
            stats.response_at = time.perf_counter()
            if response.status != 200:
                raise self._status_error(response, "/predict")
            rate = (response.getheader("X-Sample-Rate") or str(SAMPLE_RATE)).strip()
            if rate != str(SAMPLE_RATE):
                raise UserError(
                    f"The server at {self.url} sends audio at {rate} Hz; "
                    f"this app expects {SAMPLE_RATE}."
                )
            decoder = PcmDecoder()
            while True:
                if cancelled():
                    raise Cancelled()
                try:
                    data = response.read1(READ_SIZE)
                except (OSError, http.client.HTTPException) as error:
                    if cancelled():
                        raise Cancelled() from None
                    if isinstance(error, TimeoutError):
                        raise self._network_error(error) from None
                    raise UserError(
                        f"The connection to the server at {self.url} broke "
                        "in the middle of the audio."
                    ) from None
                if not data:
                    break
                stats.bytes_received += len(data)
                samples = decoder.feed(data)
                if len(samples):
                    if stats.first_chunk_at is None:
                        stats.first_chunk_at = time.perf_counter()
                    stats.audio_samples += len(samples)
                    yield samples
            if cancelled():
                raise Cancelled()
            if decoder.has_partial_sample:
                raise UserError(
                    f"The server at {self.url} sent an odd number of bytes; the audio is damaged."
                )
            stats.finished_at = time.perf_counter()
        finally:
            if watcher is not None:
                watcher.stop()
            connection.close()
