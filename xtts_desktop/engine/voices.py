"""Voices: conditioning latents from built-in speakers or cloned samples, and the safetensors voice library."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xtts_desktop.errors import UserError

if TYPE_CHECKING:
    import torch

    from xtts_desktop.engine.model import LoadedModel

logger = logging.getLogger(__name__)

VOICE_FORMAT = "xtts-desktop-voice/1"
VOICE_SUFFIX = ".safetensors"
MIN_SPEECH_SECONDS = 2.0
# Files that can carry code: never opened, reported once when seen in the voices folder.
_UNSAFE_SUFFIXES = {".pth", ".pt", ".pkl", ".pickle", ".bin", ".ckpt", ".npy", ".npz", ".joblib"}
# A voice is about 130 kB ([1, 32, 1024] latents and a 512-value embedding); anything far
# larger is not a voice, and is not read into memory to find out.
MAX_VOICE_FILE_BYTES = 16 * 1024 * 1024
# Conditioning latents longer than this are not XTTS's (its perceiver gives 32 positions).
_MAX_LATENT_POSITIONS = 1024
_FLOAT_TYPES = {"F16", "BF16", "F32", "F64"}
MIN_SAMPLE_RATE = 8000
# torchaudio's resampler builds a kernel of (22050 / g) x (rate / g) taps for g = gcd(rate,
# 22050): 44100 Hz costs 2 x 1, but 44101 Hz (one a damaged header can claim) 22050 x 44101,
# 17 GB. Rates whose kernel would pass this many taps are rounded to a multiple of 50 Hz
# first (at most 0.3 % off at 8 kHz: nothing a speaker embedding can hear).
_MAX_RESAMPLE_TAPS = 4_000_000


@dataclass(frozen=True)
class Voice:
    """What XTTS needs to speak in a voice: GPT conditioning latents and a speaker embedding."""

    name: str
    gpt_cond_latent: torch.Tensor  # [1, T, width]
    speaker_embedding: torch.Tensor  # [1, 512, 1]
    kind: str = "builtin"  # "builtin", "saved" or "sample"
    metadata: dict[str, str] = field(default_factory=dict, compare=False)

    def check_compatible(self, width: int) -> None:
        if self.gpt_cond_latent.ndim != 3 or self.gpt_cond_latent.shape[-1] != width:
            raise UserError(
                f"The voice '{self.name}' was made with a different model "
                f"(width {self.gpt_cond_latent.shape[-1]}, this model {width}); clone it again."
            )


def builtin_voices(loaded: LoadedModel) -> dict[str, Voice]:
    """XTTS's built-in speakers from speakers_xtts.pth (loaded by coqui with weights_only)."""
    manager = loaded.xtts.speaker_manager
    voices = {}
    for name, entry in (manager.speakers if manager else {}).items():
        voices[name] = Voice(
            name=name,
            gpt_cond_latent=entry["gpt_cond_latent"].float().cpu(),
            speaker_embedding=entry["speaker_embedding"].float().cpu(),
            kind="builtin",
        )
    return voices


# ----- cloning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleAudio:
    """One voice sample as read from a file: float32 mono and its rate."""

    samples: np.ndarray
    sample_rate: int
    label: str = "the sample"


def speech_seconds(samples: np.ndarray, sample_rate: int) -> float:
    """Seconds of 20 ms frames loud enough to be speech (within 40 dB of the loudest frame)."""
    frame = max(1, int(sample_rate * 0.02))
    usable = len(samples) // frame * frame
    if usable == 0:
        return 0.0
    rms = np.sqrt(np.mean(samples[:usable].reshape(-1, frame).astype(np.float64) ** 2, axis=1))
    loudest = float(rms.max())
    if loudest < 10 ** (-60 / 20):
        return 0.0
    active = rms > max(loudest * 10 ** (-40 / 20), 10 ** (-55 / 20))
    return float(active.sum()) * frame / sample_rate


def check_sample(sample: SampleAudio) -> None:
    """Refuse with a reason: silent, too short, clipped, or not finite."""
    samples = sample.samples
    if samples.size == 0:
        raise UserError(f"{sample.label} holds no audio.")
    if not np.all(np.isfinite(samples)):
        raise UserError(f"{sample.label} contains invalid (NaN or infinite) samples.")
    if sample.sample_rate < MIN_SAMPLE_RATE:
        raise UserError(
            f"{sample.label} has a sample rate of {sample.sample_rate} Hz; speech needs at least "
            f"{MIN_SAMPLE_RATE} Hz."
        )
    peak = float(np.max(np.abs(samples)))
    if peak < 10 ** (-60 / 20):
        raise UserError(f"{sample.label} is silent; record about 6 seconds of clear speech.")
    seconds = speech_seconds(samples, sample.sample_rate)
    if seconds < MIN_SPEECH_SECONDS:
        raise UserError(
            f"{sample.label} has only {seconds:.1f} s of speech; at least {MIN_SPEECH_SECONDS:.0f} s "
            "are needed (about 6 s is best)."
        )
    clipped = float(np.mean(np.abs(samples) >= 0.999))
    if clipped > 0.01:
        raise UserError(
            f"{sample.label} is clipped ({clipped:.0%} of samples at full scale); record it less loud."
        )


def _resampling_rate(rate: int, target: int) -> int:
    """The rate to tell the resampler: `rate`, unless its kernel would be huge (see above)."""
    divisor = math.gcd(rate, target)
    if (target // divisor) * (rate // divisor) <= _MAX_RESAMPLE_TAPS:
        return rate
    return max(50, round(rate / 50) * 50)


def sample_hash(samples: Sequence[SampleAudio]) -> str:
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(str(sample.sample_rate).encode())
        digest.update(np.ascontiguousarray(sample.samples, dtype=np.float32).tobytes())
    return digest.hexdigest()


def clone_voice(loaded: LoadedModel, name: str, samples: Sequence[SampleAudio]) -> Voice:
    """Conditioning latents from one or more samples, as Xtts.get_conditioning_latents computes them."""
    import torch
    import torchaudio

    if not samples:
        raise UserError("Give at least one voice sample to clone.")
    for sample in samples:
        check_sample(sample)
    xtts = loaded.xtts
    cfg = xtts.config
    rate = 22050
    max_seconds = int(getattr(cfg, "max_ref_len", 30) or 30)
    device = loaded.torch_device
    embeddings = []
    audios = []
    with torch.inference_mode():
        for sample in samples:
            audio = torch.from_numpy(np.ascontiguousarray(sample.samples, dtype=np.float32))[
                None, :
            ]
            source_rate = _resampling_rate(sample.sample_rate, rate)
            if source_rate != rate:
                audio = torchaudio.functional.resample(audio, source_rate, rate)
            audio = audio[:, : rate * max_seconds].to(device)
            embeddings.append(xtts.get_speaker_embedding(audio, rate))
            audios.append(audio)
        gpt_cond_latent = xtts.get_gpt_cond_latents(
            torch.cat(audios, dim=-1),
            rate,
            length=int(getattr(cfg, "gpt_cond_len", 30) or 30),
            chunk_length=int(getattr(cfg, "gpt_cond_chunk_len", 4) or 4),
        )
        speaker_embedding = torch.stack(embeddings).mean(dim=0)
    return Voice(
        name=name,
        gpt_cond_latent=gpt_cond_latent.float().cpu(),
        speaker_embedding=speaker_embedding.float().cpu(),
        kind="sample",
        metadata={"sample_sha256": sample_hash(samples)},
    )


# ----- the voice library --------------------------------------------------------------------


def _slug(name: str) -> str:
    slug = re.sub(r"[^\w.-]+", "_", name.strip(), flags=re.UNICODE).strip("._")
    return slug[:80] or "voice"


def check_voice_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise UserError("A voice needs a name.")
    if len(name) > 100:
        raise UserError("A voice name can be at most 100 characters long.")
    if any(ord(c) < 32 for c in name):
        raise UserError("A voice name cannot contain control characters.")
    return name


@dataclass(frozen=True)
class VoiceInfo:
    name: str
    path: Path
    created: str


class VoiceLibrary:
    """One safetensors file per saved voice (latents plus metadata); never pickle."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._warned: set[Path] = set()

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        files = []
        for path in sorted(self.directory.iterdir()):
            if path.suffix == VOICE_SUFFIX and path.is_file():
                files.append(path)
            elif path.suffix.lower() in _UNSAFE_SUFFIXES and path not in self._warned:
                self._warned.add(path)
                logger.warning("ignoring %s: voices are only read from safetensors files", path)
        return files

    def list(self) -> list[VoiceInfo]:
        infos = []
        for path in self._files():
            try:
                metadata = _read_metadata(path)
            except UserError as error:
                if path not in self._warned:
                    self._warned.add(path)
                    logger.warning("ignoring voice file %s: %s", path, error)
                continue
            infos.append(VoiceInfo(metadata["name"], path, metadata.get("created", "")))
        return sorted(infos, key=lambda info: info.name.casefold())

    def names(self) -> list[str]:
        return [info.name for info in self.list()]

    def find(self, name: str) -> VoiceInfo | None:
        wanted = name.strip().casefold()
        return next((info for info in self.list() if info.name.casefold() == wanted), None)

    def load(self, name: str) -> Voice:
        info = self.find(name)
        if info is None:
            raise UserError(f"There is no saved voice named '{name}'.")
        return read_voice_file(info.path)

    def save(self, voice: Voice, *, overwrite: bool = False) -> Path:
        name = check_voice_name(voice.name)
        existing = self.find(name)
        if existing is not None and not overwrite:
            raise UserError(f"A voice named '{name}' already exists; choose another name.")
        path = existing.path if existing is not None else self._free_path(name)
        write_voice_file(voice, path)
        return path

    def _free_path(self, name: str) -> Path:
        base = _slug(name)
        path = self.directory / f"{base}{VOICE_SUFFIX}"
        number = 2
        while path.exists():
            path = self.directory / f"{base}-{number}{VOICE_SUFFIX}"
            number += 1
        return path

    def remove(self, name: str) -> None:
        info = self.find(name)
        if info is None:
            raise UserError(f"There is no saved voice named '{name}'.")
        info.path.unlink()

    def rename(self, old: str, new: str) -> None:
        new = check_voice_name(new)
        voice = self.load(old)
        clash = self.find(new)
        if clash is not None and clash.name.casefold() != old.strip().casefold():
            raise UserError(f"A voice named '{new}' already exists; choose another name.")
        old_path = self.find(old).path
        renamed = Voice(
            new, voice.gpt_cond_latent, voice.speaker_embedding, "saved", voice.metadata
        )
        new_path = self._free_path(new) if _slug(new) != old_path.stem else old_path
        write_voice_file(renamed, new_path)
        if new_path != old_path:
            old_path.unlink()

    def import_file(self, source: Path, name: str | None = None) -> Voice:
        voice = read_voice_file(Path(source))
        if name:
            voice = Voice(
                check_voice_name(name),
                voice.gpt_cond_latent,
                voice.speaker_embedding,
                "saved",
                voice.metadata,
            )
        self.save(voice)
        return voice

    def export_file(self, name: str, target: Path) -> None:
        target = Path(target)
        if target.suffix != VOICE_SUFFIX:
            raise UserError(
                f"Cannot export to {target.name}: voices are saved as {VOICE_SUFFIX} files."
            )
        write_voice_file(self.load(name), target)


def write_voice_file(voice: Voice, path: Path) -> None:
    """Latents and metadata as safetensors, written to a temporary file and renamed."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.is_dir():
        raise UserError(f"Cannot save the voice to {path}: it is a folder.")
    metadata = {k: str(v) for k, v in voice.metadata.items()}
    metadata.update(
        {
            "format": VOICE_FORMAT,
            "name": check_voice_name(voice.name),
            "created": voice.metadata.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    )
    tensors = {
        "gpt_cond_latent": voice.gpt_cond_latent.detach().float().cpu().contiguous(),
        "speaker_embedding": voice.speaker_embedding.detach().float().cpu().contiguous(),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise UserError(f"Cannot save the voice to {path}: {_os_reason(error)}.") from None
    os.close(fd)
    try:
        save_file(tensors, temporary, metadata=metadata)
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise UserError(f"Cannot save the voice to {path}: {_os_reason(error)}.") from None
        if isinstance(error, Exception) and "No space left" in str(error):
            # safetensors reports write failures as its own error, with the OS's words.
            raise UserError(f"Cannot save the voice to {path}: the disk is full.") from None
        raise


def _os_reason(error: OSError) -> str:
    reason = error.strerror or str(error) or type(error).__name__
    return reason[:1].lower() + reason[1:]


def _read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        size = path.stat().st_size
    except OSError as error:
        raise UserError(f"{path.name} cannot be read ({_os_reason(error)}).") from None
    if size > MAX_VOICE_FILE_BYTES:
        raise UserError(f"{path.name} is too large ({size / 1e6:.0f} MB) to be a voice file.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            # Shapes and types from the header alone: nothing is loaded to list a voice.
            layout = {
                key: (handle.get_slice(key).get_dtype(), tuple(handle.get_slice(key).get_shape()))
                for key in handle.keys()
            }
    except Exception as error:  # safetensors raises its own error types for broken headers
        raise UserError(f"{path.name} is not a valid voice file ({error}).") from None
    if metadata.get("format") != VOICE_FORMAT or not metadata.get("name"):
        raise UserError(f"{path.name} is not an XTTS Desktop voice file.")
    try:
        metadata["name"] = check_voice_name(metadata["name"])
    except UserError as error:
        reason = error.message.rstrip(".")
        raise UserError(f"{path.name} holds a voice without a usable name ({reason}).") from None
    if set(layout) != {"gpt_cond_latent", "speaker_embedding"}:
        raise UserError(f"{path.name} is not an XTTS Desktop voice file (unexpected tensors).")
    (latent_type, latent), (embedding_type, embedding) = (
        layout["gpt_cond_latent"],
        layout["speaker_embedding"],
    )
    if latent_type not in _FLOAT_TYPES or embedding_type not in _FLOAT_TYPES:
        raise UserError(f"{path.name} holds tensors of the wrong type for a voice.")
    if (
        len(latent) != 3
        or latent[0] != 1
        or not 1 <= latent[1] <= _MAX_LATENT_POSITIONS
        or latent[2] < 1
        or embedding != (1, 512, 1)
    ):
        raise UserError(f"{path.name} holds tensors of the wrong shape for a voice.")
    return metadata


def read_voice_file(path: Path) -> Voice:
    """A voice from a safetensors file: tensors and strings only, nothing that can run."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"The voice file {path} does not exist.")
    if path.suffix != VOICE_SUFFIX:
        raise UserError(
            f"{path.name} is not a .safetensors voice file; other formats are never opened."
        )
    metadata = _read_metadata(path)
    try:
        tensors = load_file(str(path))
    except Exception as error:
        raise UserError(f"{path.name} is not a valid voice file ({error}).") from None
    # Shapes and types were checked in the header by _read_metadata.
    latent = tensors["gpt_cond_latent"].float()
    embedding = tensors["speaker_embedding"].float()
    if not (bool(latent.isfinite().all()) and bool(embedding.isfinite().all())):
        raise UserError(f"{path.name} holds invalid (NaN or infinite) values.")
    return Voice(metadata["name"], latent, embedding, "saved", metadata)


def resolve_voice(loaded: LoadedModel, library: VoiceLibrary, name: str | None) -> Voice:
    """A built-in speaker or a saved voice by name (case-insensitive); the first built-in if None."""
    builtins = builtin_voices(loaded)
    if not name:
        if not builtins:
            raise UserError(
                "This model has no built-in speakers; choose a saved voice or a sample."
            )
        return next(iter(builtins.values()))
    wanted = name.strip().casefold()
    for voice_name, voice in builtins.items():
        if voice_name.casefold() == wanted:
            return voice
    if library.find(name) is not None:
        return library.load(name)
    known = list(builtins)[:6] + library.names()[:6]
    raise UserError(
        f"Unknown voice '{name}'. Try one of: {', '.join(known)} (see 'xtts-desktop voices list')."
    )


def builtin_speaker_names(model_dir: Path) -> list[str]:
    """Names in speakers_xtts.pth without loading the model (weights_only: no code can run)."""
    import torch

    path = Path(model_dir) / "speakers_xtts.pth"
    if not path.is_file():
        return []
    try:
        speakers = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        logger.warning("cannot read %s: %s", path, error)
        return []
    return list(speakers) if isinstance(speakers, dict) else []
