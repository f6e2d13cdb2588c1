"""The HTTP server: a Starlette app streaming the engine's chunks as s16le PCM, one job at a time.

Threads. The event loop (uvicorn's) never runs the model: one dedicated worker thread takes
jobs from a bounded queue and runs Synthesizer.stream_segments; each chunk goes back to the
loop through `loop.call_soon_threadsafe` into the job's asyncio.Queue, and the response
sends it at once. The worker waits (interruptibly) when a slow client has more than
`max_buffered_seconds` of audio still unsent, so memory stays bounded.

Cancellation. Each response listens for the ASGI `http.disconnect` message while it waits
and streams; a disconnect sets the job's cancel event, which the engine checks before every
GPT token (a job still waiting in the queue is simply removed).

Errors. A request is checked completely (JSON, fields, language, voice, segments) before
it is queued, and the 200 status is only sent with the first audio: anything wrong before
that is a JSON {"error": "one sentence"} with a 4xx/5xx status. A failure after audio has
started cuts the body short, so the client sees an incomplete response, never a silent end.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from xtts_desktop.engine.stream import StreamStats
from xtts_desktop.errors import Cancelled, UserError
from xtts_desktop.server import (
    FORMAT_HEADERS,
    MAX_TEXT_CHARS,
    MEDIA_TYPE,
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    SynthesisRequest,
    float_to_s16le,
    parse_request,
    voice_names,
)

if TYPE_CHECKING:
    from xtts_desktop.engine.model import LoadedModel
    from xtts_desktop.engine.stream import Synthesizer
    from xtts_desktop.engine.voices import VoiceLibrary

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000
DEFAULT_QUEUE_SIZE = 4
# Audio a job may make ahead of a slow client before the GPU waits for it.
DEFAULT_MAX_BUFFERED_SECONDS = 300.0
# Retry-After when no job has finished yet to estimate from.
DEFAULT_JOB_SECONDS = 5.0
MAX_RETRY_AFTER = 300
ENDPOINTS = "POST /predict, GET /voices and GET /health"


class Busy(Exception):
    """The queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"busy, retry after {retry_after} s")
        self.retry_after = retry_after


class _Finished:
    """The last item of a job's stream: ``error`` is None when the audio is complete."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class SynthesisJob:
    """One request's synthesis: its cancel event, its stats and its chunk hand-off to the loop."""

    def __init__(
        self,
        number: int,
        request: SynthesisRequest,
        loop: asyncio.AbstractEventLoop,
        max_buffered_bytes: int,
    ) -> None:
        self.number = number
        self.request = request
        self.cancel_event = threading.Event()
        self.stats = StreamStats(sample_rate=SAMPLE_RATE)
        self.state = "waiting"  # waiting, running, completed, cancelled, failed
        self.submitted_at = time.monotonic()
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self._loop = loop
        self._items: asyncio.Queue[bytes | _Finished] = asyncio.Queue()
        self._space = threading.Condition()
        self._buffered = 0
        self._max_buffered = max(1, max_buffered_bytes)

    # ----- the worker thread -----------------------------------------------------------------

    def deliver(self, data: bytes) -> None:
        """Hand audio to the response; waits while the client is far behind. Raises Cancelled."""
        with self._space:
            while self._buffered >= self._max_buffered and not self.cancel_event.is_set():
                self._space.wait()
            if self.cancel_event.is_set():
                raise Cancelled()
            self._buffered += len(data)
        self._post(data)

    def finish(self, error: BaseException | None) -> None:
        self._post(_Finished(error))

    def _post(self, item: bytes | _Finished) -> None:
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)
        except RuntimeError:
            # The event loop is closed (the server stopped): nobody will read this.
            self.cancel()

    # ----- any thread ------------------------------------------------------------------------

    def cancel(self) -> None:
        self.cancel_event.set()
        with self._space:
            self._space.notify_all()

    def summary(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "id": self.number,
            "state": self.state,
            "characters": len(self.request.text),
            "language": self.request.language,
            "voice": self.request.voice.name,
            "segments": len(self.request.segments),
            "segments_done": stats.segments_done,
            "tokens": stats.tokens,
            "audio_seconds": round(stats.audio_seconds, 3),
            "time_to_first_chunk_ms": stats.time_to_first_chunk_ms,
            "synthesis_seconds": round(stats.synthesis_seconds, 3) if self.started_at else 0.0,
            "queue_wait_seconds": round(
                (self.started_at or time.monotonic()) - self.submitted_at, 3
            ),
        }

    # ----- the event loop --------------------------------------------------------------------

    async def next_item(self) -> bytes | _Finished:
        item = await self._items.get()
        if isinstance(item, bytes):
            with self._space:
                self._buffered -= len(item)
                self._space.notify_all()
        return item


class SynthesisService:
    """One worker thread running jobs one at a time, with a bounded queue in front of it."""

    def __init__(
        self,
        synthesizer: Synthesizer,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        max_buffered_seconds: float = DEFAULT_MAX_BUFFERED_SECONDS,
    ) -> None:
        if queue_size < 0:
            raise ValueError("queue_size must be 0 or more")
        self.synthesizer = synthesizer
        self.queue_size = queue_size
        self._max_buffered_bytes = int(max_buffered_seconds * SAMPLE_RATE * SAMPLE_WIDTH)
        self._cond = threading.Condition()
        self._waiting: deque[SynthesisJob] = deque()
        self._running: SynthesisJob | None = None
        self._closed = False
        self._numbers = itertools.count(1)
        self.counts = {"completed": 0, "cancelled": 0, "failed": 0, "rejected": 0}
        self._durations: deque[float] = deque(maxlen=10)
        self._last_job: dict[str, Any] | None = None
        self._thread = threading.Thread(
            target=self._work, name="xtts-server-synthesis", daemon=True
        )
        self._thread.start()

    # ----- the event loop side ---------------------------------------------------------------

    def submit(self, request: SynthesisRequest, loop: asyncio.AbstractEventLoop) -> SynthesisJob:
        """Queue a job, or raise Busy when one is running and ``queue_size`` are waiting."""
        with self._cond:
            active = len(self._waiting) + (self._running is not None)
            if self._closed or active >= 1 + self.queue_size:
                self.counts["rejected"] += 1
                raise Busy(self._retry_after_locked())
            job = SynthesisJob(next(self._numbers), request, loop, self._max_buffered_bytes)
            self._waiting.append(job)
            self._cond.notify_all()
        logger.info(
            "job %d queued: %d characters, %d segments, voice %s, language %s",
            job.number, len(request.text), len(request.segments),
            request.voice.name, request.language,
        )  # fmt: skip
        return job

    def cancel(self, job: SynthesisJob) -> None:
        """Stop a job: a waiting one leaves the queue now, a running one within a GPT token."""
        job.cancel()
        with self._cond:
            if job not in self._waiting:
                return
            self._waiting.remove(job)
            self._end_locked(job, "cancelled")
            self._cond.notify_all()
        job.finish(Cancelled())

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            running = self._running
            return {
                "busy": running is not None,
                "active_jobs": int(running is not None),
                "queue_length": len(self._waiting),
                "queue_size": self.queue_size,
                "jobs": dict(self.counts),
                "current_job": running.summary() if running is not None else None,
                "last_job": self._last_job,
            }

    def _retry_after_locked(self) -> int:
        typical = statistics.median(self._durations) if self._durations else DEFAULT_JOB_SECONDS
        running = self._running
        elapsed = time.monotonic() - running.started_at if running and running.started_at else 0.0
        return int(max(1, min(MAX_RETRY_AFTER, math.ceil(typical - elapsed))))

    def _end_locked(self, job: SynthesisJob, outcome: str) -> None:
        job.state = outcome
        job.ended_at = time.monotonic()
        self.counts[outcome] += 1
        if job.started_at is not None and outcome == "completed":
            self._durations.append(job.ended_at - job.started_at)
        self._last_job = job.summary()

    def close(self, timeout: float = 10.0) -> None:
        """Cancel everything and stop the worker thread (the server is shutting down)."""
        with self._cond:
            self._closed = True
            waiting = list(self._waiting)
            self._waiting.clear()
            running = self._running
            for job in waiting:
                self._end_locked(job, "cancelled")
            self._cond.notify_all()
        for job in waiting:
            job.cancel()
            job.finish(Cancelled())
        if running is not None:
            running.cancel()
        self._thread.join(timeout)

    # ----- the worker thread -----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._waiting.popleft()
                self._running = job
                job.state = "running"
                job.started_at = time.monotonic()
                job.stats = StreamStats(sample_rate=SAMPLE_RATE)
            outcome, error = self._run(job)
            with self._cond:
                self._running = None
                self._end_locked(job, outcome)
                self._cond.notify_all()
            job.finish(error)
            stats = job.stats
            logger.info(
                "job %d %s: %.1f s of audio in %.1f s, first chunk after %s ms, %d tokens",
                job.number, outcome, stats.audio_seconds, stats.synthesis_seconds,
                f"{stats.time_to_first_chunk_ms:.0f}" if stats.time_to_first_chunk_ms else "-",
                stats.tokens,
            )  # fmt: skip

    def _run(self, job: SynthesisJob) -> tuple[str, BaseException | None]:
        if job.cancel_event.is_set():
            return "cancelled", Cancelled()
        request = job.request
        chunks = self.synthesizer.stream_segments(
            request.segments,
            request.voice,
            request.language,
            request.settings,
            cancel=job.cancel_event,
            stats=job.stats,
        )
        try:
            # closing(): a generator left suspended would keep the synthesizer's lock.
            with contextlib.closing(chunks):
                for chunk in chunks:
                    if len(chunk.samples):
                        job.deliver(float_to_s16le(chunk.samples))
        except Cancelled as error:
            return "cancelled", error
        except UserError as error:
            logger.warning("job %d failed: %s", job.number, error.message)
            return "failed", error
        except Exception as error:
            logger.exception("job %d failed", job.number)
            return "failed", error
        job.stats.finished_at = job.stats.finished_at or time.perf_counter()
        return "completed", None


# ----- responses ------------------------------------------------------------------------------


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data, "more_body": False})


class PcmStreamResponse:
    """ASGI response streaming a job's audio; a client that goes away cancels the job."""

    def __init__(self, service: SynthesisService, job: SynthesisJob) -> None:
        self.service = service
        self.job = job
        headers = {
            "content-type": MEDIA_TYPE,
            "cache-control": "no-store",
            "x-accel-buffering": "no",
        }
        headers.update({name.lower(): value for name, value in FORMAT_HEADERS.items()})
        headers["x-job-id"] = str(job.number)
        self._headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def watch_for_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if self.job.state in ("waiting", "running"):
                        logger.info("job %d: the client disconnected; cancelling", self.job.number)
                    self.service.cancel(self.job)
                    return

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(watch_for_disconnect)
                try:
                    await self._stream(send)
                except OSError:
                    # ASGI 2.4 servers raise here when the client has gone.
                    pass
                finally:
                    group.cancel_scope.cancel()
        finally:
            # Whatever ended the response (done, disconnect, server shutdown), the job stops.
            self.service.cancel(self.job)

    async def _stream(self, send: Send) -> None:
        started = False
        while True:
            item = await self.job.next_item()
            if isinstance(item, bytes):
                if not started:
                    await send(
                        {"type": "http.response.start", "status": 200, "headers": self._headers}
                    )
                    started = True
                await send({"type": "http.response.body", "body": item, "more_body": True})
                continue
            error = item.error
            if error is None:
                if not started:
                    await send(
                        {"type": "http.response.start", "status": 200, "headers": self._headers}
                    )
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if started:
                # Returning without the final empty body makes the server drop the connection:
                # the client sees a truncated body rather than audio that silently stops.
                if isinstance(error, Cancelled):
                    return
                logger.warning(
                    "job %d: stream cut short (%s)", self.job.number, type(error).__name__
                )
                return
            if isinstance(error, Cancelled):
                await _send_json(
                    send, 503, {"error": "The server is shutting down; try again later."}
                )
            elif isinstance(error, UserError):
                await _send_json(send, 400, {"error": error.message})
            else:
                await _send_json(
                    send, 500, {"error": "The server failed while synthesizing; see its log."}
                )
            return


# ----- the app --------------------------------------------------------------------------------


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge()
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_BODY_BYTES:
            raise _TooLarge()
    return bytes(body)


class _TooLarge(Exception):
    pass


def _json_body(body: bytes) -> Any:
    if not body.strip():
        raise UserError('The request has no body: send JSON such as {"text": "Hello."}.')
    try:
        return json.loads(body)
    except json.JSONDecodeError as error:
        raise UserError(
            f"The request body is not valid JSON ({error.msg} at line {error.lineno}, "
            f"column {error.colno})."
        ) from None
    except (UnicodeDecodeError, RecursionError, ValueError):
        raise UserError("The request body is not valid JSON in UTF-8.") from None


def create_app(
    synthesizer_or_loaded: Synthesizer | LoadedModel,
    library: VoiceLibrary | None = None,
    api_key: str | None = None,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    *,
    max_text_chars: int = MAX_TEXT_CHARS,
    max_buffered_seconds: float = DEFAULT_MAX_BUFFERED_SECONDS,
) -> Starlette:
    """The ASGI app over a loaded engine. Its worker thread starts now and stops at shutdown.

    With ``api_key`` set, /predict and /voices need ``Authorization: Api-Key KEY``; /health
    answers everyone (for load balancers) but shows the model and the jobs only with the key.
    """
    from xtts_desktop.engine.stream import Synthesizer

    if isinstance(synthesizer_or_loaded, Synthesizer):
        synthesizer = synthesizer_or_loaded
    else:
        synthesizer = Synthesizer(synthesizer_or_loaded)
    if library is None:
        from xtts_desktop import config
        from xtts_desktop.engine.voices import VoiceLibrary

        library = VoiceLibrary(config.voices_dir())
    if api_key is not None and not api_key.strip():
        raise ValueError("api_key must not be empty (use None for no key)")
    key = api_key.strip().encode() if api_key else None
    service = SynthesisService(synthesizer, queue_size, max_buffered_seconds)
    loaded = synthesizer.loaded

    def authorized(request: Request) -> bool:
        if key is None:
            return True
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "api-key":
            token = ""
        return hmac.compare_digest(token.strip().encode(), key)

    def unauthorized(request: Request) -> Response:
        if "authorization" in request.headers:
            message = "The API key is wrong."
        else:
            message = "This server needs an API key: send the header 'Authorization: Api-Key KEY'."
        return error_response(401, message, {"WWW-Authenticate": 'Api-Key realm="xtts-desktop"'})

    async def predict(request: Request) -> Response | PcmStreamResponse:
        if not authorized(request):
            return unauthorized(request)
        try:
            body = await _read_body(request)
        except _TooLarge:
            return error_response(413, f"The request body is larger than {MAX_BODY_BYTES} bytes.")
        except ClientDisconnect:
            return Response(status_code=400)
        try:
            payload = _json_body(body)
            job_request = await run_in_threadpool(
                parse_request, payload, synthesizer, library, max_text_chars
            )
        except UserError as error:
            return error_response(400, error.message)
        try:
            job = service.submit(job_request, asyncio.get_running_loop())
        except Busy as busy:
            return error_response(
                503,
                f"The server is busy: one job is running and {service.queue_size} are waiting; "
                f"try again in {busy.retry_after} s.",
                {"Retry-After": str(busy.retry_after)},
            )
        return PcmStreamResponse(service, job)

    async def voices(request: Request) -> Response:
        if not authorized(request):
            return unauthorized(request)
        names = await run_in_threadpool(voice_names, synthesizer, library)
        return JSONResponse(names)

    async def health(request: Request) -> Response:
        snapshot = service.snapshot()
        body: dict[str, Any] = {
            "status": "ok",
            "auth_required": key is not None,
            "busy": snapshot["busy"],
            "queue_length": snapshot["queue_length"],
        }
        if authorized(request):
            body.update(snapshot)
            body.update(
                {
                    "model_dir": str(loaded.model_dir),
                    "device": loaded.device.name,
                    "precision": loaded.precision,
                    "random_weights": loaded.is_random_weights,
                    "sample_rate": SAMPLE_RATE,
                    "format": "s16le",
                    "channels": 1,
                }
            )
        return JSONResponse(body)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if error.status_code == 404:
            message = f"There is nothing at {request.url.path}; the endpoints are {ENDPOINTS}."
        elif error.status_code == 405:
            message = (
                f"{request.method} is not allowed on {request.url.path}; "
                f"the endpoints are {ENDPOINTS}."
            )
        else:
            message = str(error.detail)
        return error_response(error.status_code, message, dict(error.headers or {}))

    async def internal_error(request: Request, error: Exception) -> Response:
        return error_response(500, "The server failed on this request; see its log.")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await run_in_threadpool(service.close)

    app = Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/voices", voices, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.synthesizer = synthesizer
    app.state.library = library
    return app
