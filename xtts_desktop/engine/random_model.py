"""Random-weight XTTS v2 checkpoints built with coqui-tts's own classes, for tests and benchmarks."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# The XTTS v2 languages as the tokenizer spells their tags.
_LANGUAGE_TAGS = [
    "en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru",
    "nl", "cs", "ar", "zh-cn", "hu", "ko", "ja", "hi",
]  # fmt: skip

SPEAKER_NAMES = ("Ana Florence", "Claribel Dervla", "Damien Black", "Viktor Menelaos")


@dataclass(frozen=True)
class RandomModelSize:
    """The GPT dimensions of a random-weight model; HiFiGAN and the speaker encoder are fixed."""

    name: str
    layers: int
    width: int
    heads: int
    max_audio_tokens: int


TINY = RandomModelSize("tiny", layers=2, width=64, heads=2, max_audio_tokens=100)
# XTTS v2's real GPT: 30 layers, 1024 wide, 16 heads, 605 audio tokens.
FULL = RandomModelSize("full", layers=30, width=1024, heads=16, max_audio_tokens=605)
SIZES = {size.name: size for size in (TINY, FULL)}


def _vocabulary_characters() -> list[str]:
    """Single characters the cleaned text of any XTTS language can contain."""
    ranges = [
        (0x21, 0x7E),  # printable ASCII (space is the [SPACE] token)
        (0xA1, 0x17F),  # Latin-1 supplement and Latin Extended-A
        (0x370, 0x3FF),  # Greek
        (0x400, 0x4FF),  # Cyrillic
        (0x600, 0x6FF),  # Arabic
        (0x900, 0x97F),  # Devanagari
    ]
    chars = [chr(c) for start, end in ranges for c in range(start, end + 1)]
    return [c for c in chars if c.strip() and c not in "[]"]


def build_vocab(path: Path) -> int:
    """Write a character-level BPE vocab.json in XTTS's format; returns the vocabulary size."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = ["[STOP]", "[UNK]", "[SPACE]", "[START]"] + [f"[{tag}]" for tag in _LANGUAGE_TAGS]
    vocab: dict[str, int] = {}
    for token in specials + _vocabulary_characters():
        vocab.setdefault(token, len(vocab))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(specials)
    tokenizer.save(str(path))
    return len(vocab)


def build_random_model(directory: Path, size: RandomModelSize = TINY, seed: int = 0) -> Path:
    """Build a random-weight XTTS v2 folder (config.json, model.pth, vocab.json, speakers_xtts.pth).

    Written into a temporary folder beside ``directory`` and renamed, so a half-built model is
    never mistaken for a complete one.
    """
    import torch
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        vocab_size = build_vocab(staging / "vocab.json")
        start_text_token = json.loads((staging / "vocab.json").read_text())["model"]["vocab"][
            "[START]"
        ]
        config = XttsConfig()
        args = config.model_args
        args.gpt_layers = size.layers
        args.gpt_n_model_channels = size.width
        args.gpt_n_heads = size.heads
        args.decoder_input_dim = size.width
        args.gpt_max_audio_tokens = size.max_audio_tokens
        args.gpt_number_text_tokens = vocab_size
        args.gpt_start_text_token = start_text_token
        args.gpt_stop_text_token = 0
        # XTTS v2's real settings (its config.json), so the test model takes the same paths.
        args.gpt_num_audio_tokens = 1026
        args.gpt_start_audio_token = 1024
        args.gpt_stop_audio_token = 1025
        args.gpt_use_perceiver_resampler = True
        args.gpt_use_masking_gt_prompt_approach = True
        args.tokenizer_file = "vocab.json"
        config.temperature = 0.75
        config.repetition_penalty = 5.0
        config.top_k = 50
        config.top_p = 0.85
        config.gpt_cond_len = 30
        config.gpt_cond_chunk_len = 4
        config.max_ref_len = 30

        torch.manual_seed(seed)
        model = Xtts(config)
        model.tokenizer = VoiceBpeTokenizer(vocab_file=str(staging / "vocab.json"))
        model.init_models()
        torch.save({"model": model.state_dict()}, staging / "model.pth")
        config.save_json(str(staging / "config.json"))

        generator = torch.Generator().manual_seed(seed + 1)
        speakers = {}
        for name in SPEAKER_NAMES:
            embedding = torch.randn(1, 512, 1, generator=generator)
            speakers[name] = {
                "gpt_cond_latent": torch.randn(1, 32, size.width, generator=generator) * 0.5,
                "speaker_embedding": embedding / embedding.norm(),
            }
        torch.save(speakers, staging / "speakers_xtts.pth")
        (staging / "RANDOM_WEIGHTS").write_text(
            f"Random-weight XTTS v2 ({size.name}) for tests and benchmarks: it speaks noise.\n"
        )
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("built a random-weight XTTS model (%s) in %s", size.name, directory)
    return directory


def cached_random_model(cache_root: Path, size_name: str = "tiny") -> Path:
    """The random-weight model of that size in ``cache_root``, built on first use."""
    size = SIZES[size_name]
    directory = Path(cache_root) / f"random-xtts-{size.name}-v1"
    if not (directory / "model.pth").is_file():
        build_random_model(directory, size)
    return directory
