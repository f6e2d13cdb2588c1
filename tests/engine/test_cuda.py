"""The GPU path, on a real NVIDIA GPU (skipped without one): device policy, half precision,
CUDA graphs, seamless streaming and the fall-back to the CPU when the GPU runs out of memory.

Run by scripts/gpu_check.sh on a lent GPU; `make test` skips them on a machine without CUDA.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.engine.test_stream import snr_db
from xtts_desktop.engine.stream import GenerationSettings, Synthesizer
from xtts_desktop.engine.text import Segment

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]

TEXT = "Hello there, this is a test of the graphics card."


@contextlib.contextmanager
def gpu_memory_cap(fraction: float):
    """Let this process use only `fraction` of the GPU: a real out-of-memory, no mock."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(fraction)
    try:
        yield
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


@pytest.fixture(scope="module")
def cuda_model(tiny_model_dir):
    from xtts_desktop.engine.model import load_model

    return load_model(tiny_model_dir, device="cuda", precision="fp32")


@pytest.fixture(scope="module")
def cuda_voice(cuda_model):
    from xtts_desktop.engine.voices import builtin_voices

    return next(iter(builtin_voices(cuda_model).values()))


def test_auto_picks_the_gpu_by_name_and_half_precision(tiny_model_dir):
    from xtts_desktop.engine.model import load_model

    loaded = load_model(tiny_model_dir, device="auto", precision="auto")
    assert loaded.device.torch_device == "cuda"
    assert torch.cuda.get_device_name(0) in loaded.device.name
    assert not loaded.device.warning
    assert loaded.precision == "fp16"
    assert next(loaded.xtts.parameters()).device.type == "cuda"
    assert next(loaded.gpt_transformer.parameters()).dtype == torch.float16


def test_stream_on_the_gpu_joins_to_the_full_decode(cuda_model, cuda_voice):
    """No seams on the GPU either: the joined chunks are the non-streaming decode."""
    settings = GenerationSettings.from_model(
        cuda_model, greedy=True, max_tokens_per_segment=60, first_chunk_tokens=4, chunk_tokens=9
    )
    synthesizer = Synthesizer(cuda_model)
    _, latents = synthesizer.synthesize_segment_tokens(TEXT, cuda_voice, "en", settings)
    full = synthesizer.decode_full(latents, cuda_voice)
    segment = Segment(index=0, text=TEXT, start=0, end=len(TEXT))
    chunks = list(synthesizer.stream_segments([segment], cuda_voice, "en", settings))
    assert len(chunks) >= 3
    streamed = np.concatenate([chunk.samples for chunk in chunks])
    assert snr_db(streamed, full) > 60


def test_half_precision_keeps_the_sound(cuda_model, cuda_voice):
    """fp16 GPT against fp32 on the same greedy tokens, on the GPU."""
    greedy = GenerationSettings.from_model(cuda_model, greedy=True, max_tokens_per_segment=60)
    fp32 = Synthesizer(cuda_model, static_cache=False)
    tokens, reference = fp32.synthesize_segment_tokens(TEXT, cuda_voice, "en", greedy)
    fast = Synthesizer(dataclasses.replace(cuda_model, precision="fp16"), static_cache=False)
    latents = fast.latents_for_tokens(TEXT, tokens, cuda_voice, "en")
    assert latents.shape == reference.shape
    latent_snr = snr_db(latents.float().flatten().cpu().numpy(), reference.flatten().cpu().numpy())
    audio_snr = snr_db(
        fp32.decode_full(latents.float(), cuda_voice), fp32.decode_full(reference, cuda_voice)
    )
    print(f"fp16 vs fp32 on the GPU: latents {latent_snr:.1f} dB, audio {audio_snr:.1f} dB")
    assert latent_snr > 25, latent_snr
    assert audio_snr > 25, audio_snr


def test_out_of_memory_at_load_falls_back_to_the_cpu(tiny_model_dir):
    from xtts_desktop.engine.model import load_model

    with gpu_memory_cap(1e-7):
        loaded = load_model(tiny_model_dir, device="cuda", precision="auto")
    assert loaded.device.torch_device == "cpu"
    assert "ran out of memory" in (loaded.device.warning or "")
    assert {p.device.type for p in loaded.xtts.parameters()} == {"cpu"}
    assert loaded.precision != "fp16"
    # It still speaks, on the CPU.
    from xtts_desktop.engine.voices import builtin_voices

    voice = next(iter(builtin_voices(loaded).values()))
    settings = GenerationSettings.from_model(loaded, greedy=True, max_tokens_per_segment=12)
    chunks = list(Synthesizer(loaded).stream("Still here.", voice, "en", settings))
    assert sum(len(chunk.samples) for chunk in chunks) > 0


def test_out_of_memory_mid_synthesis_moves_to_the_cpu_and_finishes(tiny_model_dir):
    from xtts_desktop.engine.model import load_model
    from xtts_desktop.engine.voices import builtin_voices

    loaded = load_model(tiny_model_dir, device="cuda", precision="fp16")
    voice = next(iter(builtin_voices(loaded).values()))
    settings = GenerationSettings.from_model(
        loaded, greedy=True, max_tokens_per_segment=30, first_chunk_tokens=4, chunk_tokens=6
    )
    text = "The first sentence is spoken on the GPU. The second one is not."
    stream = Synthesizer(loaded).stream(text, voice, "en", settings)
    first = next(stream)
    assert len(first.samples) > 0
    with gpu_memory_cap(1e-7):
        rest = list(stream)
    assert loaded.device.torch_device == "cpu"
    assert "ran out of memory" in (loaded.device.warning or "")
    assert {p.device.type for p in loaded.xtts.parameters()} == {"cpu"}
    assert rest, "synthesis went on after the fall-back"
    assert rest[-1].segment_index == 1 and rest[-1].segment_end


def test_say_on_the_gpu_writes_a_file(tiny_model_dir, tmp_path):
    """The command line end to end on CUDA (a real process), reporting the GPU."""
    out = tmp_path / "gpu.wav"
    result = subprocess.run(
        [
            sys.executable, "-m", "xtts_desktop", "say", "Spoken on the graphics card.",
            "--model-dir", str(tiny_model_dir), "--device", "cuda", "--no-play",
            "--out", str(out), "--json",
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["audio_seconds"] > 0
    assert torch.cuda.get_device_name(0) in report["device"]
    assert out.stat().st_size > 44
    assert "Traceback" not in result.stderr
