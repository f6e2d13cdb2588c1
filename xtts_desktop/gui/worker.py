"""The synthesis worker: a QObject in its own QThread; owns the model, runs one job at a time.

Design. The worker writes audio straight into the Player's ring from its own thread and
emits only small frozen values (ChunkSpan, JobStats, JobResult) as Qt signals. The other
design, emitting every chunk to a GUI-side slot that writes into the ring, would either
make the GUI thread wait on a full ring (a frozen window) or make the worker poll the ring
to apply back-pressure. Here `Player.write` itself is the back-pressure: it blocks the
worker, interruptibly (``cancelled=``), while two seconds of audio are already queued, so
memory stays flat for any length of text and the GUI thread never touches a sample.

Threads and signals.
- GUI thread -> worker: requests (PlayRequest, ExportRequest, CloneRequest) travel as queued
  signals through `WorkerHost`, so they run in order on the worker thread. Cancellation
  does not: it is `JobControl.cancel(job_id)`, a plain call under a lock that the worker
  reads between GPT tokens (the `cancel` callable of Synthesizer.stream) and while it waits
  in Player.write. The GUI also calls Player.stop()/pause()/resume() directly (each takes
  well under a millisecond): Stop is silent at once, not one token later.
- Worker -> GUI thread: every signal is emitted from the worker thread (a QThread), never
  from the PortAudio callback (PYSIDE-3124). Each carries its job id; the window drops
  whatever belongs to a job that is no longer current.
- A play job starts with Player.stop() (flushing anything an older job left in the ring)
  and emits `chunkWritten` only for audio written while the job was still current, so Stop
  and a new Play never mix audio.
- Shutdown (`WorkerHost.shutdown`): close the JobControl (every job is cancelled within a
  token), stop the player (wakes a blocked write), quit the thread's event loop and wait for
  it, then close the player's stream.

The engine. The worker runs either the local model or a server (`xtts_desktop.remote`),
chosen by an `EngineChoice` (`configure`). Both feed the same play and export loops with
`Chunk`s. The server sends bare PCM, no segment spans, so the worker segments the text
itself (`engine.text.require_segments`, character limits only: no tokenizer without the
model) and asks the server for one segment per request, adding the engine's sentence pause
between them: each chunk then belongs to a known segment, and the highlight is exact at
sentence granularity. The server may split a segment further (its token limit); that audio
still lies inside the segment's span. The player keeps more audio ahead for a server
(`REMOTE_AHEAD_SECONDS`), so the next sentence's request, sent once the previous one is all
received, has time to answer before the ring runs dry. Cancelling a job shuts the request's
socket down (RemoteEngine's watcher), which also stops the synthesis on the server.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from xtts_desktop import config
from xtts_desktop.errors import Cancelled, UserError
from xtts_desktop.gui.jobs import (
    ChunkSpan,
    CloneRequest,
    EngineChoice,
    ExportRequest,
    JobControl,
    JobResult,
    JobStats,
    ModelInfo,
    PlayRequest,
    SegmentSpan,
    TextRange,
)

logger = logging.getLogger(__name__)

# Threads that did not stop in time (a model load cannot be interrupted): kept referenced so
# that Qt never destroys a running QThread; app.main() waits for them before exiting.
_ABANDONED: list[tuple[QThread, QObject]] = []

# XTTS reads at most 30 s of a sample: no need to read more of a long file.
MAX_SAMPLE_SECONDS = 30.0
# The player's ring: two seconds ahead for the local engine; more for a server, whose next
# sentence starts with a network round trip and the server's own time to first chunk.
LOCAL_AHEAD_SECONDS = 2.0
REMOTE_AHEAD_SECONDS = 5.0
# Connecting to a server (health and voices) must not hold the worker, or a closing window,
# for the minute a stream may wait in the server's queue.
PROBE_TIMEOUT_S = 5.0
CLONE_NEEDS_LOCAL = (
    "Cloning needs the local engine; save the voice on the server with `xtts-desktop voices add`."
)


@dataclass(frozen=True)
class ServerProbe:
    """What a server says about itself: its model (with the key), its voices, its load."""

    url: str
    device: str
    precision: str
    random_weights: bool
    builtin_voices: tuple[str, ...]
    saved_voices: tuple[str, ...]
    busy: bool
    queue_length: int

    def summary(self) -> str:
        model = ", ".join(part for part in (self.device, self.precision) if part) or "a model"
        voices = (
            f"{len(self.builtin_voices)} built-in and {len(self.saved_voices)} saved "
            f"voice{'' if len(self.saved_voices) == 1 else 's'}"
        )
        load = f"busy, {self.queue_length} waiting" if self.busy else "idle"
        noise = " (a test model: it speaks noise)" if self.random_weights else ""
        return f"Connected to {self.url}: {model}{noise}; {voices}; {load}."


def probe_server(url: str, api_key: str | None, timeout: float = PROBE_TIMEOUT_S) -> ServerProbe:
    """Ask a server for its health and voices (the voices also check the API key).

    Blocks for up to ``timeout`` per request: call it off the GUI thread. Raises UserError
    with one sentence for a bad address, a refused key or an unreachable server.
    """
    from xtts_desktop.remote import RemoteEngine

    engine = RemoteEngine(url, api_key or None, timeout=timeout, connect_timeout=timeout)
    health = engine.health()
    voices = engine.voices_by_kind()
    return ServerProbe(
        url=engine.url,
        device=str(health.get("device") or ""),
        precision=str(health.get("precision") or ""),
        random_weights=bool(health.get("random_weights")),
        builtin_voices=tuple(voices["builtin"]),
        saved_voices=tuple(voices["saved"]),
        busy=bool(health.get("busy")),
        queue_length=int(health.get("queue_length") or 0),
    )


def _snapshot(stats: Any, segment_ended: bool = False) -> JobStats:
    """A frozen copy of StreamStats; ``segment_ended`` counts the segment whose last chunk was
    just yielded (the stream counts it only when asked for the next chunk)."""
    return JobStats(
        audio_samples=stats.audio_samples,
        sample_rate=stats.sample_rate,
        synthesis_seconds=stats.synthesis_seconds,
        time_to_first_chunk_ms=stats.time_to_first_chunk_ms,
        ms_per_token=stats.ms_per_token,
        tokens=stats.tokens,
        segments=stats.segments,
        segments_done=min(stats.segments, stats.segments_done + int(segment_ended)),
    )


def unique_voice_name(stem: str, taken: list[str]) -> str:
    """The file's stem as a voice name, numbered when a voice already has that name."""
    base = " ".join(stem.replace("_", " ").split())[:90] or "voice"
    taken_folded = {name.casefold() for name in taken}
    name, number = base, 2
    while name.casefold() in taken_folded:
        name = f"{base} {number}"
        number += 1
    return name


class SynthesisWorker(QObject):
    """Owns the model, the synthesizer and the player; lives in the synthesis QThread."""

    modelStatus = Signal(str)  # "Loading model…", "Warming up…"
    modelReady = Signal(object)  # ModelInfo
    modelFailed = Signal(str)  # one sentence for the person
    outputDevicesListed = Signal(object)  # list[audio.player.OutputDevice]
    jobStarted = Signal(int, str)  # job id, kind
    segmentsPlanned = Signal(int, object, int)  # job id, tuple[SegmentSpan], first index read
    playbackStarted = Signal(int, object)  # job id, the Player now playing it
    chunkQueued = Signal(int, object)  # job id, ChunkSpan: before its audio enters the ring
    chunkWritten = Signal(int, object)  # job id, ChunkSpan: all of it is in the ring
    statsUpdated = Signal(int, object)  # job id, JobStats
    jobFinished = Signal(int, object)  # job id, JobResult
    jobCancelled = Signal(int)
    jobFailed = Signal(int, str)

    def __init__(
        self,
        control: JobControl,
        model_dir: str | Path | None = None,
        device: str = "auto",
        precision: str = "auto",
        *,
        warm_up: bool = True,
        loaded: Any = None,
        engine: EngineChoice | None = None,
    ) -> None:
        super().__init__()
        self.control = control
        if model_dir is None and loaded is not None:
            model_dir = loaded.model_dir  # a later device or precision change reloads it
        self.model_dir = model_dir
        self.device = device
        self.precision = precision
        self.warm_up = warm_up
        self.loaded = loaded  # engine.model.LoadedModel
        # The engine to start with: the local model unless a server is chosen.
        self.choice = engine or EngineChoice(
            "local", str(model_dir) if model_dir else None, device, precision
        )
        self.remote: Any = None  # remote.RemoteEngine, when the engine is a server
        self.synthesizer: Any = None
        # The player of the latest play. The GUI thread reads it (a plain attribute) to stop
        # or pause it; only this thread creates or replaces it.
        self.player: Any = None
        self._player_device: str | None = None
        self.model_error: str | None = None
        # For tests and benchmarks: GenerationSettings fields to override (e.g. seed).
        self.generation_overrides: dict[str, Any] = {}

    # ----- start-up ---------------------------------------------------------------------

    @Slot()
    def start(self) -> None:
        """List the audio outputs, then load and warm up the model, or connect to the server."""
        self._list_output_devices()
        if self.choice.is_server:
            self.loaded = None  # a model handed over is not used with a server
            self._connect(self.choice)
        else:
            self._load()

    @Slot(str, str, str)
    def reload(self, model_dir: str, device: str = "", precision: str = "") -> None:
        """Load a model folder (after a download or "Use a model folder..."), on another
        device or precision when given; "" keeps the current one."""
        self.configure(
            EngineChoice(
                "local",
                model_dir or None,
                device or self.device,
                precision or self.precision,
            )
        )

    @Slot(object)
    def configure(self, choice: EngineChoice) -> None:
        """Switch to the engine chosen in Preferences: (re)load the local model on its device
        and precision, or connect to a server. The model in memory is dropped either way."""
        self.choice = choice
        self.remote = None
        self.model_error = None
        self.loaded = None
        self.synthesizer = None
        if choice.is_server:
            self._connect(choice)
            return
        if choice.model_dir:
            self.model_dir = choice.model_dir
        self.device = choice.device or "auto"
        self.precision = choice.precision or "auto"
        self._load()

    def _connect(self, choice: EngineChoice) -> None:
        from xtts_desktop.remote import RemoteEngine

        self.modelStatus.emit("Connecting to the server…")
        try:
            engine = RemoteEngine(choice.server_url, choice.api_key or None)
            probe = probe_server(choice.server_url, choice.api_key)
        except UserError as error:
            self.model_error = error.message
            self.modelFailed.emit(error.message)
            return
        except Exception as error:  # a bug: logged with its traceback
            logger.exception("connecting to the server failed")
            self.model_error = (
                f"The server could not be used ({type(error).__name__}: {error}); "
                f"details are in {config.log_dir() / 'xtts-desktop.log'}."
            )
            self.modelFailed.emit(self.model_error)
            return
        self.remote = engine
        logger.info("using the server at %s", engine.url)
        self.modelReady.emit(
            ModelInfo(
                device_name=probe.device,
                device_label="Server",
                precision=probe.precision,
                builtin_voices=probe.builtin_voices,
                is_random_weights=probe.random_weights,
                server_url=engine.url,
                saved_voices=probe.saved_voices,
            )
        )

    def _load(self) -> None:
        self.modelStatus.emit("Loading model…")
        try:
            from xtts_desktop.engine.model import load_model
            from xtts_desktop.engine.stream import Synthesizer
            from xtts_desktop.engine.voices import builtin_voices

            if self.loaded is None:
                self.loaded = load_model(
                    self.model_dir, device=self.device, precision=self.precision
                )
            self.synthesizer = Synthesizer(self.loaded)
            builtins = builtin_voices(self.loaded)
            if self.warm_up and builtins and not self.control.closed:
                self.modelStatus.emit("Warming up…")
                self.synthesizer.warm_up(next(iter(builtins.values())))
        except UserError as error:
            self.model_error = error.message
            self.loaded = None
            self.synthesizer = None
            self.modelFailed.emit(error.message)
            return
        except Exception as error:  # a bug or a broken install: logged with its traceback
            logger.exception("loading the model failed")
            self.model_error = (
                f"The model could not be loaded ({type(error).__name__}: {error}); "
                f"details are in {config.log_dir() / 'xtts-desktop.log'}."
            )
            self.loaded = None
            self.synthesizer = None
            self.modelFailed.emit(self.model_error)
            return
        device = self.loaded.device
        self.modelReady.emit(
            ModelInfo(
                device_name=device.name,
                device_label="CPU" if device.torch_device == "cpu" else device.name,
                precision=self.loaded.precision,
                builtin_voices=tuple(builtins),
                is_random_weights=self.loaded.is_random_weights,
                warning=device.warning,
            )
        )

    def _list_output_devices(self) -> None:
        try:
            from xtts_desktop.audio.player import list_output_devices

            devices = list_output_devices()
        except Exception:  # no PortAudio: the window still opens, Play reports it
            logger.exception("listing the audio outputs failed")
            devices = []
        self.outputDevicesListed.emit(devices)

    # ----- jobs -------------------------------------------------------------------------

    def _require_model(self) -> None:
        if self.remote is None and self.synthesizer is None:
            raise UserError(self.model_error or "The model is not loaded yet.")

    @property
    def sample_rate(self) -> int:
        return self.synthesizer.sample_rate if self.synthesizer is not None else 24000

    def _run(self, job_id: int, kind: str, body) -> None:
        """Runs one job: every outcome is a signal, never an exception out of a slot."""
        if self.control.is_cancelled(job_id):
            self.jobCancelled.emit(job_id)
            return
        self.jobStarted.emit(job_id, kind)
        try:
            result = body()
        except Cancelled:
            logger.debug("job %d (%s) cancelled", job_id, kind)
            self.jobCancelled.emit(job_id)
        except UserError as error:
            logger.info("job %d (%s) refused: %s", job_id, kind, error.message)
            self.jobFailed.emit(job_id, error.message)
        except Exception as error:
            logger.exception("job %d (%s) failed", job_id, kind)
            self.jobFailed.emit(
                job_id,
                f"Something went wrong ({type(error).__name__}: {error}); "
                f"details are in {config.log_dir() / 'xtts-desktop.log'}.",
            )
        else:
            self.jobFinished.emit(job_id, result)
        finally:
            self.control.forget(job_id)

    def _plan(self, job_id: int, text: str, language: str, span: TextRange) -> tuple[list, int]:
        """Segments of text[span.start:span.end] with offsets into the whole text, and the
        index of the first one to read."""
        from xtts_desktop.engine.text import Segment

        end = len(text) if span.end is None else span.end
        start = max(0, min(span.start, end))
        if self.remote is not None:
            from xtts_desktop.engine.text import normalize_language, require_segments

            # Character limits only (the tokenizer is the server's); it checks the language.
            pieces = require_segments(text[start:end], normalize_language(language))
        else:
            pieces = self.synthesizer.segments(text[start:end], language)
        segments = [
            Segment(index=i, text=piece.text, start=piece.start + start, end=piece.end + start)
            for i, piece in enumerate(pieces)
        ]
        first = next((s.index for s in segments if s.end > span.from_char), 0)
        spans = tuple(SegmentSpan(s.index, s.start, s.end) for s in segments)
        self.segmentsPlanned.emit(job_id, spans, first)
        return segments, first

    def _voice(self, name: str):
        from xtts_desktop.engine.voices import VoiceLibrary, resolve_voice

        return resolve_voice(self.loaded, VoiceLibrary(config.voices_dir()), name or None)

    def _settings(self, speed: float):
        from xtts_desktop.engine.stream import GenerationSettings

        return GenerationSettings.from_model(self.loaded, speed=speed, **self.generation_overrides)

    def _chunks(
        self,
        segments: list,
        voice_name: str,
        language: str,
        speed: float,
        cancelled: Callable[[], bool],
        stats: Any,
    ) -> Iterator[Any]:
        """The job's audio as engine Chunks, from the local model or the server. What can be
        checked here (voice, settings) is checked before this returns."""
        if self.remote is not None:
            return self._remote_chunks(segments, voice_name, language, speed, cancelled, stats)
        voice = self._voice(voice_name)
        settings = self._settings(speed)
        return self.synthesizer.stream_segments(
            segments, voice, language, settings, cancelled, stats
        )

    def _remote_chunks(
        self,
        segments: list,
        voice_name: str,
        language: str,
        speed: float,
        cancelled: Callable[[], bool],
        stats: Any,
    ) -> Iterator[Any]:
        """One request per segment, so every chunk's segment is known; the engine's pause
        between sentences is added here, as the server adds it between its own segments."""
        import numpy as np

        from xtts_desktop.engine.stream import Chunk, GenerationSettings
        from xtts_desktop.remote import RemoteStats

        engine = self.remote
        options: dict[str, Any] = {}
        overrides = self.generation_overrides
        if overrides.get("seed") is not None:
            options["seed"] = overrides["seed"]
        if overrides.get("greedy") is not None:
            options["greedy"] = overrides["greedy"]
        if overrides.get("chunk_tokens"):
            options["chunk_size"] = max(5, int(overrides["chunk_tokens"]))
        pause_s = overrides.get("sentence_pause_s", GenerationSettings.sentence_pause_s)
        pause = np.zeros(int(pause_s * stats.sample_rate), dtype=np.float32)
        stats.segments = len(segments)
        offset = 0
        for number, segment in enumerate(segments):
            pieces = engine.stream(
                segment.text,
                voice_name or None,
                language,
                speed,
                cancelled,
                RemoteStats(),
                **options,
            )
            with contextlib.closing(pieces):
                for samples in pieces:
                    chunk = Chunk(
                        samples,
                        segment.index,
                        segment.start,
                        segment.end,
                        False,
                        time.perf_counter(),
                        offset,
                    )
                    offset += len(samples)
                    stats.audio_samples += len(samples)
                    if stats.first_chunk_at is None:
                        stats.first_chunk_at = chunk.produced_at
                    yield chunk
            if number < len(segments) - 1 and len(pause):
                chunk = Chunk(
                    pause,
                    segment.index,
                    segment.start,
                    segment.end,
                    True,
                    time.perf_counter(),
                    offset,
                )
                offset += len(pause)
                stats.audio_samples += len(pause)
                yield chunk
            stats.segments_done += 1
        stats.finished_at = time.perf_counter()

    def _player_for(self, output_device: str):
        from xtts_desktop.audio.player import PlaybackState, Player

        ahead = REMOTE_AHEAD_SECONDS if self.remote is not None else LOCAL_AHEAD_SECONDS
        player = self.player
        if (
            player is not None
            and self._player_device == output_device
            and player.capacity_seconds == ahead
            and player.state not in (PlaybackState.CLOSED, PlaybackState.FAILED)
        ):
            return player
        if player is not None:
            player.close()
            self.player = None
        player = Player(device=output_device or None, ahead_seconds=ahead)
        self._player_device = output_device
        self.player = player
        return player

    @Slot(object)
    def play(self, request: PlayRequest) -> None:
        self._run(request.job_id, "play", lambda: self._play(request))

    def _play(self, request: PlayRequest) -> JobResult:
        from xtts_desktop.engine.stream import StreamStats

        self._require_model()
        job_id = request.job_id
        cancelled = self.control.checker(job_id)
        segments, first = self._plan(job_id, request.text, request.language, request.span)
        stats = StreamStats(sample_rate=self.sample_rate)
        chunks = self._chunks(
            segments[first:], request.voice, request.language, request.speed, cancelled, stats
        )
        player = self._player_for(request.output_device)
        player.stop()  # whatever an earlier job left in the ring is never heard
        if cancelled():
            raise Cancelled()
        player.start()
        self.playbackStarted.emit(job_id, player)
        stats.started_at = time.perf_counter()
        try:
            # closing(): a cancelled server request closes its connection now, not at GC.
            with contextlib.closing(chunks):
                for chunk in chunks:
                    self._play_chunk(job_id, chunk, player, cancelled, stats)
            player.end_of_input()
        except Cancelled:
            player.stop()
            raise
        return JobResult(job_id, "play", stats=_snapshot(stats))

    def _play_chunk(self, job_id: int, chunk: Any, player: Any, cancelled, stats: Any) -> None:
        span = ChunkSpan(
            job_id,
            chunk.stream_offset,
            len(chunk.samples),
            chunk.segment_index,
            chunk.start,
            chunk.end,
        )
        if cancelled():  # the stream checks between tokens; a decode may end after
            raise Cancelled()
        self.chunkQueued.emit(job_id, span)
        written = player.write(chunk.samples, cancelled=cancelled)
        # Checked after the write too: audio written once the job went stale sits in
        # a stopped play that the next job flushes, and is not reported as written.
        if cancelled():
            raise Cancelled()
        if not written:
            raise UserError(player.error or "Playback stopped.")
        self.chunkWritten.emit(
            job_id,
            ChunkSpan(
                job_id,
                span.stream_offset,
                span.length,
                span.segment_index,
                span.start,
                span.end,
                time.perf_counter(),
            ),
        )
        self.statsUpdated.emit(job_id, _snapshot(stats, chunk.segment_end))

    @Slot(object)
    def export(self, request: ExportRequest) -> None:
        self._run(request.job_id, "export", lambda: self._export(request))

    def _export(self, request: ExportRequest) -> JobResult:
        from xtts_desktop.audio.files import AudioFileWriter
        from xtts_desktop.engine.stream import StreamStats

        self._require_model()
        job_id = request.job_id
        cancelled = self.control.checker(job_id)
        segments, _ = self._plan(job_id, request.text, request.language, request.span)
        stats = StreamStats(sample_rate=self.sample_rate)
        chunks = self._chunks(
            segments, request.voice, request.language, request.speed, cancelled, stats
        )
        writer = AudioFileWriter(request.path, sample_rate=self.sample_rate)
        completed = False
        try:
            with contextlib.closing(chunks):
                for chunk in chunks:
                    writer.write(chunk.samples)
                    self.statsUpdated.emit(job_id, _snapshot(stats, chunk.segment_end))
            if cancelled():
                raise Cancelled()
            writer.close()
            completed = True
        finally:
            if not completed:
                writer.abort()
        logger.info("exported %.1f s of audio to %s", stats.audio_seconds, request.path)
        return JobResult(job_id, "export", stats=_snapshot(stats), path=Path(request.path))

    @Slot(object)
    def clone(self, request: CloneRequest) -> None:
        self._run(request.job_id, "clone", lambda: self._clone(request))

    def _clone(self, request: CloneRequest) -> JobResult:
        from xtts_desktop.audio.files import read_audio
        from xtts_desktop.engine.voices import SampleAudio, Voice, VoiceLibrary, clone_voice

        self._require_model()
        if self.remote is not None:
            raise UserError(CLONE_NEEDS_LOCAL)
        if not request.paths:
            raise UserError("Give at least one voice sample to clone.")
        samples = []
        for path in request.paths:
            audio, rate = read_audio(Path(path), max_seconds=MAX_SAMPLE_SECONDS)
            samples.append(SampleAudio(audio, rate, label=f"The sample {Path(path).name}"))
            if self.control.is_cancelled(request.job_id):
                raise Cancelled()
        library = VoiceLibrary(config.voices_dir())
        taken = library.names() + self._builtin_names()
        name = unique_voice_name(Path(request.paths[0]).stem, taken)
        voice = clone_voice(self.loaded, name, samples)
        if self.control.is_cancelled(request.job_id):
            raise Cancelled()
        metadata = dict(voice.metadata, source=Path(request.paths[0]).name)
        library.save(Voice(name, voice.gpt_cond_latent, voice.speaker_embedding, "saved", metadata))
        logger.info("cloned the voice %r from %s", name, ", ".join(map(str, request.paths)))
        return JobResult(request.job_id, "clone", voice_name=name)

    def _builtin_names(self) -> list[str]:
        manager = self.loaded.xtts.speaker_manager if self.loaded is not None else None
        return list(manager.speakers) if manager is not None else []

    # ----- shutdown (GUI thread, after the thread has finished) --------------------------

    def release(self) -> None:
        player, self.player = self.player, None
        if player is not None:
            player.close()


class WorkerHost(QObject):
    """Starts the worker's thread, forwards requests to it as queued signals, shuts it down."""

    _startRequested = Signal()
    _playRequested = Signal(object)
    _exportRequested = Signal(object)
    _cloneRequested = Signal(object)
    _reloadRequested = Signal(str, str, str)
    _configureRequested = Signal(object)

    def __init__(self, worker: SynthesisWorker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName("synthesis")
        worker.moveToThread(self.thread)
        self._startRequested.connect(worker.start)
        self._playRequested.connect(worker.play)
        self._exportRequested.connect(worker.export)
        self._cloneRequested.connect(worker.clone)
        self._reloadRequested.connect(worker.reload)
        self._configureRequested.connect(worker.configure)
        self._shut_down = False

    def start(self) -> None:
        self.thread.start()
        self._startRequested.emit()

    def play(self, request: PlayRequest) -> None:
        self._playRequested.emit(request)

    def export(self, request: ExportRequest) -> None:
        self._exportRequested.emit(request)

    def clone(self, request: CloneRequest) -> None:
        self._cloneRequested.emit(request)

    def reload(self, model_dir: str, device: str = "", precision: str = "") -> None:
        """Load a model folder in the worker ("" keeps the current device or precision)."""
        self._reloadRequested.emit(str(model_dir or ""), device or "", precision or "")

    def configure(self, choice: EngineChoice) -> None:
        """Switch the worker to another engine: the local model or a server."""
        self._configureRequested.emit(choice)

    @property
    def is_shut_down(self) -> bool:
        return self._shut_down

    def shutdown(self, timeout_s: float = 60.0) -> bool:
        """Cancel everything, stop the audio, stop the thread and wait for it. Idempotent.

        Returns whether the thread finished. A job stops within one GPT token; only a model
        load in progress (coqui's loader cannot be interrupted) can take longer.
        """
        if self._shut_down:
            return self.thread.isFinished() or not self.thread.isRunning()
        self._shut_down = True
        self.worker.control.close()
        player = self.worker.player
        if player is not None:
            player.stop()
        self.thread.quit()
        finished = self.thread.wait(int(timeout_s * 1000))
        if finished:
            self.worker.release()
        else:
            logger.error("the synthesis thread did not stop within %.0f s", timeout_s)
            self.thread.setParent(None)
            _ABANDONED.append((self.thread, self.worker))
        return finished


def wait_for_abandoned_threads() -> None:
    """Wait (without limit) for threads that outlived their window: their jobs are cancelled,
    so only an uninterruptible model load can still be running."""
    while _ABANDONED:
        thread, worker = _ABANDONED.pop()
        thread.wait()
        worker.release()
