"""Values between the window and the synthesis worker: requests, reports, job control."""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from pathlib import Path


class JobControl:
    """Job ids and cancellation, shared by the GUI thread and the worker thread.

    Plain Python under a lock, no Qt: the GUI thread cancels a job by calling `cancel` while
    the worker is busy inside that very job (a queued Qt call would only arrive after it).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_id = 0
        self._cancelled: set[int] = set()
        self._closed = False

    def new_job(self) -> int:
        with self._lock:
            self._last_id += 1
            return self._last_id

    def cancel(self, job_id: int) -> None:
        with self._lock:
            self._cancelled.add(job_id)

    def close(self) -> None:
        """Every job, running or queued, is cancelled from now on (the window is closing)."""
        with self._lock:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def is_cancelled(self, job_id: int) -> bool:
        return self._closed or job_id in self._cancelled

    def checker(self, job_id: int):
        """A callable for Synthesizer.stream / Player.write: True once the job is cancelled."""
        return lambda: self.is_cancelled(job_id)

    def forget(self, job_id: int) -> None:
        with self._lock:
            self._cancelled.discard(job_id)


@dataclass(frozen=True)
class TextRange:
    """Which part of the window's text a job reads: text[start:end], from the first segment
    ending after ``from_char`` (the whole range when nothing ends after it)."""

    start: int = 0
    end: int | None = None
    from_char: int = 0


@dataclass(frozen=True)
class PlayRequest:
    job_id: int
    text: str
    language: str
    voice: str
    speed: float
    output_device: str
    span: TextRange = TextRange()
    # perf_counter() when the person pressed Play: time to first audio counts from here.
    pressed_at: float = 0.0


@dataclass(frozen=True)
class ExportRequest:
    job_id: int
    text: str
    language: str
    voice: str
    speed: float
    path: Path
    span: TextRange = TextRange()


@dataclass(frozen=True)
class CloneRequest:
    job_id: int
    # Several samples make one voice, named after the first file.
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class SegmentSpan:
    """A segment of the job as the window sees it: its character span in the window's text."""

    index: int
    start: int
    end: int


@dataclass(frozen=True)
class ChunkSpan:
    """Where a chunk sits in the play (samples) and in the text (characters)."""

    job_id: int
    stream_offset: int
    length: int
    segment_index: int
    start: int
    end: int
    # perf_counter() when the chunk was fully handed to the player (0 before that).
    written_at: float = 0.0


@dataclass(frozen=True)
class JobStats:
    """A snapshot of a job's StreamStats, safe to hand to another thread."""

    audio_samples: int = 0
    sample_rate: int = 24000
    synthesis_seconds: float = 0.0
    time_to_first_chunk_ms: float | None = None
    ms_per_token: float | None = None
    tokens: int = 0
    segments: int = 0
    segments_done: int = 0

    @property
    def audio_seconds(self) -> float:
        return self.audio_samples / self.sample_rate

    @property
    def rtf(self) -> float | None:
        return self.synthesis_seconds / self.audio_seconds if self.audio_samples else None


@dataclass(frozen=True)
class JobResult:
    job_id: int
    kind: str  # "play", "export" or "clone"
    stats: JobStats | None = None
    path: Path | None = None
    voice_name: str | None = None


@dataclass(frozen=True)
class EngineChoice:
    """Which engine the worker runs: the local model (folder, device, precision) or a server."""

    kind: str = "local"  # "local" or "server"
    model_dir: str | None = None
    device: str = "auto"
    precision: str = "auto"
    server_url: str = ""
    api_key: str = ""

    @property
    def is_server(self) -> bool:
        return self.kind == "server"


@dataclass(frozen=True)
class ModelInfo:
    """What the window shows about the loaded model, or about the server it talks to."""

    device_name: str  # "NVIDIA H100 80GB HBM3" or "CPU (x86_64, 2 threads)"
    device_label: str  # short: the GPU's name, "CPU", or "Server"
    precision: str
    builtin_voices: tuple[str, ...]
    is_random_weights: bool = False
    warning: str | None = None
    # Set for a server: its address, and its saved voices (the local library is not used).
    server_url: str | None = None
    saved_voices: tuple[str, ...] = ()

    @property
    def is_server(self) -> bool:
        return self.server_url is not None

    @property
    def description(self) -> str:
        if self.is_server:
            details = ", ".join(part for part in (self.device_name, self.precision) if part)
            return f"Server: {self.server_url}" + (f" ({details})" if details else "")
        return f"{self.device_name}, {self.precision}"


@dataclass
class PlayJob:
    """The window's record of the current play: what it reads, and where each chunk landed."""

    request: PlayRequest
    segments: tuple[SegmentSpan, ...] = ()
    chunks: list[ChunkSpan] = field(default_factory=list)
    _offsets: list[int] = field(default_factory=list, repr=False)
    player: object | None = None  # audio.player.Player, once the worker started it
    stats: JobStats | None = None
    synthesis_done: bool = False
    # Set when the text was edited after Play: its character spans no longer match.
    text_changed: bool = False

    @property
    def job_id(self) -> int:
        return self.request.job_id

    def add_chunk(self, chunk: ChunkSpan) -> None:
        if self.chunks and chunk.stream_offset < self.chunks[-1].stream_offset:
            raise ValueError("chunks arrive in stream order")
        self.chunks.append(chunk)
        self._offsets.append(chunk.stream_offset)

    def chunk_at(self, position: int) -> ChunkSpan | None:
        """The chunk holding sample ``position`` of the play (None before the first)."""
        index = bisect.bisect_right(self._offsets, position) - 1
        return self.chunks[index] if index >= 0 else None

    def segment_at_char(self, position: int) -> SegmentSpan | None:
        """The segment holding character ``position``, or the next one after it."""
        for segment in self.segments:
            if position < segment.end:
                return segment
        return None
