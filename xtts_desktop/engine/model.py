"""Find, check and load an XTTS v2 folder on a device and precision, through coqui-tts's own loader."""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import platform
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xtts_desktop import config
from xtts_desktop.errors import UserError

if TYPE_CHECKING:
    import torch
    from TTS.tts.models.xtts import Xtts

logger = logging.getLogger(__name__)

REQUIRED_FILES = ("config.json", "model.pth", "vocab.json", "speakers_xtts.pth")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "int8", "bf16", "fp16")
OUTPUT_SAMPLE_RATE = 24000

HOW_TO_GET_A_MODEL = (
    "run 'xtts-desktop download' or point --model-dir (or XTTS_DESKTOP_MODEL_DIR) at a folder "
    "holding " + ", ".join(REQUIRED_FILES)
)


@dataclass(frozen=True)
class ModelLocation:
    path: Path
    # Where the path came from, for messages: "--model-dir", "XTTS_DESKTOP_MODEL_DIR" or "default".
    source: str


def locate_model(explicit: str | os.PathLike[str] | None = None) -> ModelLocation:
    """--model-dir, else XTTS_DESKTOP_MODEL_DIR, else the folder `xtts-desktop download` (or
    "Use a model folder...") recorded, else the default folder in the user data dir."""
    if explicit:
        return ModelLocation(Path(explicit).expanduser(), "--model-dir")
    from_env = os.environ.get("XTTS_DESKTOP_MODEL_DIR")
    if from_env:
        return ModelLocation(Path(from_env).expanduser(), "XTTS_DESKTOP_MODEL_DIR")
    recorded = recorded_model_dir()
    if recorded is not None:
        return ModelLocation(recorded, "the recorded model folder")
    return ModelLocation(config.default_model_dir(), "the default location")


def recorded_model_dir() -> Path | None:
    """The folder in config_dir()/model.json, written by the download; None if absent or unreadable."""
    path = config.config_dir() / "model.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Path(raw["model_dir"]).expanduser() if raw.get("model_dir") else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def check_model_dir(location: ModelLocation | Path) -> Path:
    """Raise a UserError naming the first problem with an XTTS folder; return the folder."""
    if isinstance(location, Path):
        location = ModelLocation(location, "--model-dir")
    path = location.path
    if not path.exists():
        raise UserError(
            f"No XTTS v2 model found at {path} ({location.source}): {HOW_TO_GET_A_MODEL}."
        )
    if not path.is_dir():
        raise UserError(f"The model path {path} is not a folder: {HOW_TO_GET_A_MODEL}.")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise UserError(
            f"The model folder {path} is incomplete: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing; {HOW_TO_GET_A_MODEL}."
        )
    for name in REQUIRED_FILES:
        if (path / name).stat().st_size == 0:
            raise UserError(f"{path / name} is empty; download the model again.")
    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(
            f"{path / 'config.json'} is not valid JSON ({error}); download the model again."
        ) from None
    if not isinstance(raw, dict) or raw.get("model") != "xtts":
        raise UserError(
            f"{path / 'config.json'} is not an XTTS configuration; point at an XTTS v2 folder."
        )
    try:
        vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
        if not isinstance(vocab.get("model", {}).get("vocab"), dict):
            raise ValueError("no vocabulary")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
        raise UserError(
            f"{path / 'vocab.json'} is not a tokenizer vocabulary ({error}); download the model again."
        ) from None
    for name in ("model.pth", "speakers_xtts.pth"):
        # torch.save writes a zip archive; a truncated download fails this cheap check.
        if not _is_complete_zip(path / name):
            raise UserError(f"{path / name} is corrupt or truncated; download the model again.")
    return path


def _is_complete_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return len(archive.namelist()) > 0
    except (zipfile.BadZipFile, OSError):
        return False


def _check_vocab_loads(vocab: Path) -> None:
    """vocab.json must be a tokenizer that `tokenizers` can build (coqui's own error is a bare
    Exception naming no file)."""
    from tokenizers import Tokenizer

    try:
        Tokenizer.from_file(str(vocab))
    except Exception as error:  # tokenizers raises plain Exception for a malformed file
        first_line = (str(error).strip().splitlines() or [""])[0][:160]
        raise UserError(
            f"{vocab} is not a tokenizer vocabulary ({first_line}); download the model again."
        ) from None


def _unsafe_checkpoint(path: Path) -> Path:
    """Which of the two checkpoints weights_only refused (only asked once loading failed)."""
    import torch

    speakers = path / "speakers_xtts.pth"
    try:
        torch.load(speakers, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return speakers
    except Exception:  # noqa: BLE001 - another fault in this file; the refusal was model.pth's
        pass
    return path / "model.pth"


def _speakers_problem(speakers: object, width: int) -> str | None:
    """What is wrong with the table in speakers_xtts.pth, in words; None if it is usable."""
    import torch

    if not isinstance(speakers, dict):
        return "does not hold a table of speakers"
    for name, entry in speakers.items():
        latent = entry.get("gpt_cond_latent") if isinstance(entry, dict) else None
        embedding = entry.get("speaker_embedding") if isinstance(entry, dict) else None
        if not (
            isinstance(name, str)
            and isinstance(latent, torch.Tensor)
            and isinstance(embedding, torch.Tensor)
            and latent.is_floating_point()
            and embedding.is_floating_point()
            and latent.ndim == 3
            and latent.shape[-1] == width
            and embedding.numel() == 512
        ):
            return f"holds a speaker ({str(name)[:40]!r}) that this model cannot use"
    return None


@dataclass(frozen=True)
class DeviceChoice:
    torch_device: str  # "cpu" or "cuda"
    name: str  # "NVIDIA H100 80GB HBM3" or "CPU (x86_64, 2 threads)"
    # A sentence for the user when the choice is a compromise (no GPU): shown, not hidden.
    warning: str | None = None


def choose_device(requested: str = "auto") -> DeviceChoice:
    import torch

    if requested not in DEVICES:
        raise UserError(f"Unknown device '{requested}'; choose one of: {', '.join(DEVICES)}.")
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return DeviceChoice("cuda", torch.cuda.get_device_name(0))
    if requested == "mps":
        # Apple GPUs only when asked: some of XTTS's operations fall back to the CPU there.
        if not torch.backends.mps.is_available():
            raise UserError(
                "MPS was asked for, but torch sees no Apple GPU; use --device cpu or auto."
            )
        os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
        return DeviceChoice("mps", "Apple GPU (MPS)")
    cpu_name = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    if requested == "cuda":
        raise UserError(
            "CUDA was asked for, but torch sees no NVIDIA GPU; use --device cpu or auto."
        )
    if requested == "auto":
        return DeviceChoice(
            "cpu",
            cpu_name,
            warning="No CUDA GPU found: XTTS runs on the CPU, which is slower than real time on most machines.",
        )
    return DeviceChoice("cpu", cpu_name)


def choose_precision(requested: str, device: str) -> str:
    """fp32 unless asked otherwise; "auto" picks half precision for the GPT on CUDA."""
    if requested not in PRECISIONS:
        raise UserError(f"Unknown precision '{requested}'; choose one of: {', '.join(PRECISIONS)}.")
    if requested == "auto":
        if device == "cuda":
            return "fp16"
        if device == "cpu" and int8_weights_supported():
            return "int8"
        return "fp32"
    if requested == "fp16" and device != "cuda":
        raise UserError("fp16 needs a CUDA GPU; on the CPU use int8, bf16 or fp32.")
    if requested == "int8" and (device != "cpu" or not int8_weights_supported()):
        raise UserError(
            "int8 runs on the CPU only (with torch's int8 weight kernel); use fp16 on a GPU."
        )
    return requested


def int8_weights_supported() -> bool:
    """Whether this torch build has the CPU int8 weight-only matmul the int8 precision uses."""
    import torch

    try:
        x = torch.zeros(1, 8, dtype=torch.bfloat16)
        torch._weight_int8pack_mm(
            x, torch.zeros(4, 8, dtype=torch.int8), torch.ones(4, dtype=torch.bfloat16)
        )
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return True


def _int8_transformer(transformer: torch.nn.Module) -> torch.nn.Module:
    """A copy of GPT-2 whose matrix weights are int8 (one scale per output channel).

    At one token per step the GPT is memory-bound: int8 weights move a quarter of the bytes of
    fp32. Activations, layer norms and attention stay fp32; only the products run through
    torch's int8 weight-only kernel (bf16 in, as that kernel wants). Measured here on the
    full-size model: 1.6x faster per token, hidden states -47 dB from fp32.
    """
    import copy

    from transformers.pytorch_utils import Conv1D

    from xtts_desktop.engine.int8 import Int8WeightLinear

    fast = copy.deepcopy(transformer).eval()
    for module in list(fast.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, Conv1D):
                setattr(module, name, Int8WeightLinear.from_conv1d(child))
    return fast


def _null_position_embeddings(
    positions: torch.Tensor, width: int, dtype: torch.dtype
) -> torch.Tensor:
    import torch

    return torch.zeros(
        (positions.shape[0], positions.shape[1], width), dtype=dtype, device=positions.device
    )


@dataclass
class LoadedModel:
    """An XTTS v2 model loaded on a device, with what the app shows about it."""

    xtts: Xtts
    model_dir: Path
    device: DeviceChoice
    precision: str
    is_random_weights: bool

    sample_rate: int = OUTPUT_SAMPLE_RATE

    @property
    def torch_device(self) -> torch.device:
        import torch

        return torch.device(self.device.torch_device)

    @property
    def width(self) -> int:
        return int(self.xtts.args.gpt_n_model_channels)

    @functools.cached_property
    def gpt_transformer(self) -> torch.nn.Module:
        """The GPT-2 stack our token loop runs: coqui's own in fp32, else a half-precision copy.

        A copy, not a cast in place, so coqui's own code paths (cloning, inference(), the stock
        streaming the benchmark compares against) keep running on the fp32 model.
        """
        import copy

        transformer = self.xtts.gpt.gpt
        if self.precision == "fp32":
            return transformer
        if self.precision == "int8":
            return _int8_transformer(transformer)
        dtype = self.gpt_dtype
        fast = copy.deepcopy(transformer).to(dtype).eval()
        # coqui replaces GPT-2's position embedding with zeros in the default dtype, which would
        # promote every hidden state back to fp32: give the copy zeros of its own dtype.
        fast.wpe = functools.partial(_null_position_embeddings, width=self.width, dtype=dtype)
        return fast

    @property
    def gpt_dtype(self) -> torch.dtype:
        import torch

        return {
            "fp32": torch.float32,
            "int8": torch.float32,
            "bf16": torch.bfloat16,
            "fp16": torch.float16,
        }[self.precision]

    def fall_back_to_cpu(self, reason: str) -> None:
        """Move the model to the CPU (after the GPU ran out of memory), with the reason shown."""
        import torch

        logger.warning(reason)
        self.xtts.to("cpu")
        self.__dict__.pop("gpt_transformer", None)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.device = DeviceChoice("cpu", f"CPU ({platform.machine()})", warning=reason)
        self.precision = choose_precision("auto", "cpu")

    def describe(self) -> str:
        return f"{self.device.name}, {self.precision}"


_TORCH_DEFAULT_THREADS: int | None = None


def inference_threads() -> int:
    """CPU threads for synthesis: torch's own default (one per physical core), or
    XTTS_DESKTOP_THREADS.

    Measured on 2 cores (scripts/bench_parts.py), full-size int8 GPT: 53-62 ms a token on two
    threads, 100-109 ms on one, so synthesis uses every core; the audio callback and the
    window need little CPU. (When another program keeps a core busy, a thread team as large
    as the machine waits for its descheduled thread at every op: set XTTS_DESKTOP_THREADS
    lower on such a machine.)
    """
    global _TORCH_DEFAULT_THREADS
    value = os.environ.get("XTTS_DESKTOP_THREADS", "")
    if value.strip().isdigit() and int(value) > 0:
        return int(value)
    if _TORCH_DEFAULT_THREADS is None:
        import torch

        _TORCH_DEFAULT_THREADS = max(1, torch.get_num_threads())
    return _TORCH_DEFAULT_THREADS


def load_model(
    model_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    precision: str = "auto",
) -> LoadedModel:
    """Check the folder, then load it with XttsConfig and Xtts.load_checkpoint: real or test model alike."""
    location = locate_model(model_dir)
    path = check_model_dir(location)
    import torch

    if device in ("auto", "cpu") and not torch.cuda.is_available() or device == "cpu":
        torch.set_num_threads(inference_threads())
    choice = choose_device(device)
    chosen_precision = choose_precision(precision, choice.torch_device)
    if choice.warning:
        logger.info(choice.warning)

    import torch
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    xtts_config = XttsConfig()
    try:
        xtts_config.load_json(str(path / "config.json"))
    except Exception as error:  # coqpit raises many kinds for a config it cannot read
        raise UserError(
            f"{path / 'config.json'} cannot be used ({error}); download the model again."
        ) from None
    _check_vocab_loads(path / "vocab.json")
    model = None
    try:
        model = Xtts(xtts_config)
        model.load_checkpoint(xtts_config, checkpoint_dir=str(path), eval=True)
    except pickle.UnpicklingError:
        # coqui loads both files with torch's weights_only: a pickle holding anything but
        # tensors and plain containers is refused there, before any of it runs.
        raise UserError(
            f"{_unsafe_checkpoint(path)} holds Python objects besides tensors and was not loaded "
            "(loading it could run code); download the model again."
        ) from None
    except (RuntimeError, KeyError, EOFError, ValueError) as error:
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        if "size mismatch for gpt.text_embedding" in str(error):
            # coqui sizes the text embedding from vocab.json, so a foreign vocabulary shows here.
            raise UserError(
                f"{path / 'vocab.json'} does not match {path / 'model.pth'} (a different number of "
                "text tokens); the files come from different models, download the model again."
            ) from None
        if (
            "size mismatch" in str(error)
            or "Missing key" in str(error)
            or "Unexpected key" in str(error)
        ):
            raise UserError(
                f"{path / 'model.pth'} does not match {path / 'config.json'} ({first_line[:160]}); "
                "download the model again."
            ) from None
        raise UserError(
            f"{path / 'model.pth'} cannot be loaded ({first_line[:160]}); download the model again."
        ) from None
    except Exception as error:  # a checkpoint of the wrong structure fails anywhere in coqui
        logger.warning("loading the model in %s failed", path, exc_info=True)
        first_line = (str(error).strip().splitlines() or [""])[0][:160]
        # coqui reads speakers_xtts.pth first: once it is in, the fault is model.pth's.
        speakers_read = model is not None and getattr(model, "speaker_manager", None) is not None
        culprit = path / "model.pth" if speakers_read else path
        raise UserError(
            f"{culprit} cannot be loaded ({type(error).__name__}: {first_line}); "
            "download the model again."
        ) from None
    if model.speaker_manager is None:
        raise UserError(f"{path / 'speakers_xtts.pth'} cannot be loaded; download the model again.")
    problem = _speakers_problem(
        model.speaker_manager.speakers, int(model.args.gpt_n_model_channels)
    )
    if problem:
        raise UserError(f"{path / 'speakers_xtts.pth'} {problem}; download the model again.")
    loaded = LoadedModel(
        xtts=model,
        model_dir=path,
        device=choice,
        precision=chosen_precision,
        is_random_weights=(path / "RANDOM_WEIGHTS").exists(),
    )
    try:
        model.to(choice.torch_device)
    except torch.OutOfMemoryError:
        loaded.fall_back_to_cpu(
            "The GPU ran out of memory while loading XTTS: running on the CPU instead."
        )
    logger.info("loaded XTTS from %s on %s (%s)", path, loaded.device.name, loaded.precision)
    return loaded
