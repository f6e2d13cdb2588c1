"""Writes audio files atomically (streamed, any length) and reads voice samples as mono float32.

Writing goes to a hidden temporary file beside the target, which is renamed over the
target only once complete and flushed to disk: a failure or a cancelled export leaves
neither a half-written target nor the temporary file, and an existing target untouched.
Errors a person can fix (a missing folder, a read-only disk, a file that is not audio)
are `UserError`s with one sentence.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import soundfile as sf

from xtts_desktop.errors import UserError

__all__ = [
    "AudioFileWriter",
    "read_audio",
    "supported_extensions",
    "write_audio",
]

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE = 24000

# extension -> (libsndfile container, subtype). 16-bit PCM for the lossless ones.
_WRITE_FORMATS: dict[str, tuple[str, str]] = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".oga": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}
_READ_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
_READABLE_NAMES = "WAV, FLAC, OGG or MP3"
_WRITE_BLOCK = 1 << 18  # samples clipped and written at a time by write_audio
_READ_BLOCK = 1 << 16  # frames decoded at a time by read_audio (all channels)
# No real recording goes past 768 kHz (DXD/DSD conversions); a header claiming more is
# hostile or broken, and would make "the first 30 seconds" as large as a long file.
_MAX_READ_RATE = 768_000


def _available(container: str, subtype: str) -> bool:
    return container in sf.available_formats() and subtype in sf.available_subtypes(container)


def supported_extensions(for_writing: bool = False) -> tuple[str, ...]:
    """File name extensions (with the dot) this libsndfile can read, or write."""
    if for_writing:
        return tuple(ext for ext, fmt in _WRITE_FORMATS.items() if _available(*fmt))
    formats = sf.available_formats()
    wanted = {
        ".wav": "WAV",
        ".flac": "FLAC",
        ".ogg": "OGG",
        ".oga": "OGG",
        ".opus": "OGG",
        ".mp3": "MP3",
        ".aiff": "AIFF",
        ".aif": "AIFF",
    }
    return tuple(ext for ext in _READ_EXTENSIONS if wanted[ext] in formats)


def _save_error(path: Path, exc: BaseException) -> UserError:
    """One sentence for a failed save, from the OS error behind it."""
    number = getattr(exc, "errno", None)
    if isinstance(exc, PermissionError) or number in (errno.EACCES, errno.EPERM):
        reason = "permission denied"
    elif number == errno.ENOSPC:
        reason = "the disk is full"
    elif number == errno.EROFS:
        reason = "the disk is read-only"
    elif isinstance(exc, IsADirectoryError) or number == errno.EISDIR:
        reason = "it is a folder"
    elif isinstance(exc, NotADirectoryError) or number == errno.ENOTDIR:
        reason = f"{path.parent} is not a folder"
    elif isinstance(exc, FileNotFoundError) or number == errno.ENOENT:
        reason = f"the folder {path.parent} does not exist"
    elif isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror[:1].lower() + exc.strerror[1:]
    else:
        reason = str(exc).rstrip(".") or type(exc).__name__
    return UserError(f"Cannot save to {path}: {reason}.")


def _write_format(path: Path) -> tuple[str, str]:
    extension = path.suffix.lower()
    writable = supported_extensions(for_writing=True)
    if extension not in writable:
        shown = [ext for ext in writable if ext != ".oga"]  # .ogg says it
        names = ", ".join(shown[:-1]) + " or " + shown[-1]
        raise UserError(f"Cannot save '{path.name}': use a file name ending in {names}.")
    return _WRITE_FORMATS[extension]


def _check_target(path: Path) -> None:
    """Fail early, with the reason a person understands, before creating anything."""
    if path.is_dir():
        raise UserError(f"Cannot save to {path}: it is a folder.")
    parent = path.parent
    if not parent.exists():
        raise UserError(f"Cannot save to {path}: the folder {parent} does not exist.")
    if not parent.is_dir():
        raise UserError(f"Cannot save to {path}: {parent} is not a folder.")


class _GuardedFile:
    """The temporary file as libsndfile's virtual I/O sees it.

    An OS error (a full disk, a vanished device) is recorded and reported to libsndfile as
    a short write, instead of being raised inside its C callback, where Python would print
    a traceback and libsndfile would carry on. Unbuffered, so that every write reaches the
    OS at once and seek/tell never fail on a pending flush.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        if self.error is not None:
            return 0
        view = memoryview(data)
        done = 0
        try:
            # A disk filling up first takes part of a write; the retry then says why.
            while done < len(view):
                count = self.raw.write(view[done:])
                if not count:
                    break
                done += count
        except OSError as exc:
            self.error = exc
        return done

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()


def _open_folder(folder: Path) -> int | None:
    """A descriptor of the target's folder, to find the temporary file wherever it goes."""
    if os.unlink not in os.supports_dir_fd or not hasattr(os, "O_DIRECTORY"):
        return None
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None


class AudioFileWriter:
    """Streams mono chunks into an audio file that appears at `path` only when complete.

    Use as a context manager: a clean exit renames the finished file into place, an
    exception (or `abort()`) deletes the temporary file. The format follows the extension:
    .wav and .flac as 16-bit PCM, .ogg as Vorbis, .mp3 as MPEG layer III. Memory stays
    flat whatever the length: each chunk goes straight to disk.
    """

    def __init__(self, path: str | os.PathLike[str], sample_rate: int = DEFAULT_SAMPLE_RATE):
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        _check_target(self.path)
        container, subtype = _write_format(self.path)
        self.temp_path = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.part")
        self.frames_written = 0
        self._done = False
        # Held so that a folder renamed or deleted during the export is noticed, and the
        # temporary file removed from wherever the folder went.
        self._folder_fd = _open_folder(self.path.parent)
        try:
            # 'x': never clobber anything; the mode follows the umask like any new file.
            self._file: BinaryIO = open(self.temp_path, "xb", buffering=0)  # noqa: SIM115
        except OSError as exc:
            self._close_folder()
            raise _save_error(self.path, exc) from exc
        self._io = _GuardedFile(self._file)
        try:
            self._sound = sf.SoundFile(
                self._io,
                mode="w",
                samplerate=self.sample_rate,
                channels=1,
                format=container,
                subtype=subtype,
            )
        except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
            self._remove_temp()
            raise _save_error(self.path, exc) from exc

    @property
    def seconds_written(self) -> float:
        return self.frames_written / self.sample_rate

    def write(self, chunk: np.ndarray) -> None:
        """Append mono float samples (clipped to [-1, 1]; NaN or infinity is a bug: ValueError)."""
        if self._done:
            raise RuntimeError(f"write() after the writer for {self.path} was closed")
        data = np.asarray(chunk, dtype=np.float32)
        if data.ndim == 2 and data.shape[1] == 1:
            data = data[:, 0]
        if data.ndim != 1:
            self.abort()
            raise ValueError(f"expected mono samples, got an array of shape {data.shape}")
        if not np.isfinite(data).all():
            self.abort()
            raise ValueError("samples contain NaN or infinity")
        # PCM conversion in libsndfile wraps values past full scale around: clip first.
        data = np.clip(data, -1.0, 1.0)
        try:
            self._sound.write(data)
        except (sf.LibsndfileError, RuntimeError, OSError, AssertionError) as exc:
            # soundfile asserts that every frame was written: a short write (full disk) lands here.
            self.abort()
            raise _save_error(self.path, self._io.error or exc) from exc
        if self._io.error is not None:
            self.abort()
            raise _save_error(self.path, self._io.error)
        self.frames_written += data.shape[0]

    def close(self) -> Path:
        """Finish the file and rename it onto `path`; returns `path`. Idempotent."""
        if self._done:
            return self.path
        try:
            self._sound.close()
            if self._io.error is not None:
                raise self._io.error
            os.fsync(self._file.fileno())
            self._file.close()
        except (sf.LibsndfileError, RuntimeError, OSError, AssertionError) as exc:
            self.abort()
            raise _save_error(self.path, self._io.error or exc) from exc
        if not self._folder_is_in_place():
            self.abort()
            raise UserError(
                f"Cannot save to {self.path}: the folder {self.path.parent} was moved or "
                "deleted during the export."
            )
        try:
            os.replace(self.temp_path, self.path)
        except OSError as exc:
            self.abort()
            raise _save_error(self.path, exc) from exc
        self._done = True
        self._close_folder()
        _sync_folder(self.path.parent)
        logger.info("saved %s (%.1f s)", self.path, self.seconds_written)
        return self.path

    def abort(self) -> None:
        """Give up: delete the temporary file; the target is left as it was. Idempotent."""
        if self._done:
            return
        self._done = True
        for closer in (self._sound.close, self._file.close):
            try:
                closer()
            except Exception as exc:  # noqa: BLE001 - already failing; removing the file matters
                logger.debug("closing %s while aborting: %s", self.temp_path, exc)
        self._remove_temp()

    def _folder_is_in_place(self) -> bool:
        """Whether the target's folder is still the one the export began in."""
        if self._folder_fd is None:
            return True
        try:
            now, then = os.stat(self.path.parent), os.fstat(self._folder_fd)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == (then.st_dev, then.st_ino)

    def _remove_temp(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass
        try:
            if self._folder_fd is not None:
                # Through the folder's descriptor: found even if the folder was renamed.
                try:
                    os.unlink(self.temp_path.name, dir_fd=self._folder_fd)
                except FileNotFoundError:
                    pass
            else:
                self.temp_path.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("could not remove the temporary file %s: %s", self.temp_path, exc)
        finally:
            self._close_folder()

    def _close_folder(self) -> None:
        if self._folder_fd is not None:
            try:
                os.close(self._folder_fd)
            except OSError:
                pass
            self._folder_fd = None

    def __enter__(self) -> AudioFileWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (best effort: not every OS lets a folder be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_audio(
    path: str | os.PathLike[str],
    samples: np.ndarray,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> Path:
    """Write mono float samples to `path` atomically (format from the extension)."""
    data = np.asarray(samples, dtype=np.float32).reshape(-1)
    with AudioFileWriter(path, sample_rate) as writer:
        for start in range(0, data.shape[0], _WRITE_BLOCK):
            writer.write(data[start : start + _WRITE_BLOCK])
    return writer.path


def read_audio(
    path: str | os.PathLike[str], max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 mono (channels averaged) and its sample rate.

    Only the first `max_seconds` are decoded, so an hour-long file costs no more than its
    first seconds. No resampling: the rate is returned as found.
    """
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    path = Path(path)
    if not path.exists():
        raise UserError(f"Cannot read {path}: it does not exist.")
    if path.is_dir():
        raise UserError(f"Cannot read {path}: it is a folder, not an audio file.")
    if not path.is_file():  # a pipe or a device would block or never end
        raise UserError(f"Cannot read {path}: it is not a regular file.")
    try:
        if path.stat().st_size == 0:
            raise UserError(f"Cannot read {path}: it is empty.")
    except OSError as exc:
        raise UserError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    not_audio = UserError(
        f"Cannot read {path}: it is not an audio file this app can read ({_READABLE_NAMES})."
    )
    try:
        sound = sf.SoundFile(path)
    except PermissionError as exc:
        raise UserError(f"Cannot read {path}: permission denied.") from exc
    except OSError as exc:
        reason = exc.strerror.lower() if exc.strerror else str(exc)
        raise UserError(f"Cannot read {path}: {reason}.") from exc
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        logger.info("libsndfile refused %s: %s", path, exc)
        raise not_audio from exc
    with sound:
        sample_rate = int(sound.samplerate)
        if sound.frames == 0 or sample_rate <= 0:
            raise UserError(f"Cannot read {path}: it contains no audio.")
        if sample_rate > _MAX_READ_RATE:
            raise UserError(
                f"Cannot read {path}: its sample rate ({sample_rate} Hz) is not one of real "
                "audio; the file is damaged."
            )
        frames = -1  # everything
        if max_seconds is not None:
            frames = max(1, math.ceil(max_seconds * sample_rate))
            if 0 < sound.frames < frames:
                frames = sound.frames
        try:
            # Mixed down block by block: a file of many channels costs no more than mono.
            parts = [
                block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
                for block in sound.blocks(
                    blocksize=max(256, _READ_BLOCK // max(1, sound.channels)),
                    frames=frames,
                    dtype="float32",
                    always_2d=True,
                )
            ]
        except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
            logger.info("decoding %s failed: %s", path, exc)
            raise UserError(f"Cannot read {path}: it is damaged and could not be decoded.") from exc
    mono = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    if mono.shape[0] == 0:
        raise UserError(f"Cannot read {path}: it contains no audio.")
    if not np.isfinite(mono).all():
        raise UserError(
            f"Cannot read {path}: it contains invalid samples (not a number, or infinite)."
        )
    return np.ascontiguousarray(mono, dtype=np.float32), sample_rate
