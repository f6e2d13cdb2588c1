"""The CPU numbers behind BENCHMARKS.md's per-change table, each measured on its own.

    .venv/bin/python scripts/bench_parts.py          # full-size random weights, about 4 minutes

- GPT step: Hugging Face's forward with its growing cache against our step on a preallocated
  cache (int8 weights), on 2 threads and on 1, with the tokens compared; and fp32 weights;
- rejected: int4 weights per matmul and bf16 autocast on HiFiGAN (speed and SNR against fp32).
Medians of repeated runs; the machine should be otherwise idle.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xtts_desktop import config  # noqa: E402
from xtts_desktop.engine.model import load_model  # noqa: E402
from xtts_desktop.engine.random_model import cached_random_model  # noqa: E402
from xtts_desktop.engine.stream import GenerationSettings, Synthesizer  # noqa: E402
from xtts_desktop.engine.voices import builtin_voices  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog near the river bank."


def snr_db(signal: torch.Tensor, reference: torch.Tensor) -> float:
    noise = ((signal.double() - reference.double()) ** 2).sum().clamp_min(1e-30)
    return float(10 * torch.log10((reference.double() ** 2).sum() / noise))


def median_seconds(run, repeats: int = 3) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def gpt_step(loaded, voice) -> None:
    settings = GenerationSettings.from_model(loaded, greedy=True, max_tokens_per_segment=80)
    for threads in (2, 1):
        torch.set_num_threads(threads)
        results = {}
        for name, static in (("Hugging Face forward", False), ("our step", True)):
            synthesizer = Synthesizer(loaded, static_cache=static)
            tokens = []

            def run(synthesizer=synthesizer, tokens=tokens):
                tokens[:] = synthesizer.synthesize_segment_tokens(TEXT, voice, "en", settings)[0]

            seconds = median_seconds(run)
            results[name] = (seconds * 1000 / len(tokens), list(tokens))
        (hf_ms, hf_tokens), (ours_ms, ours_tokens) = results.values()
        print(
            f"GPT step, int8, {threads} thread(s), 80 tokens (prefix included): Hugging Face "
            f"{hf_ms:.1f} ms/token, ours {ours_ms:.1f} ms/token ({hf_ms / ours_ms:.2f}x); "
            f"same tokens: {hf_tokens == ours_tokens}",
            flush=True,
        )
    torch.set_num_threads(2)
    fp32 = Synthesizer(dataclasses.replace(loaded, precision="fp32"), static_cache=False)
    tokens = []

    def run_fp32():
        tokens[:] = fp32.synthesize_segment_tokens(TEXT, voice, "en", settings)[0]

    print(
        f"GPT step, fp32 weights, 2 threads, Hugging Face forward: "
        f"{median_seconds(run_fp32) * 1000 / len(tokens):.1f} ms/token (the int8 rows' baseline)",
        flush=True,
    )


def decoder(loaded, voice) -> None:
    coqui = loaded.xtts.hifigan_decoder.waveform_decoder
    frames = torch.randn(1, loaded.width, 120, generator=torch.Generator().manual_seed(0))
    speaker = voice.speaker_embedding
    with torch.inference_mode():
        reference = coqui(frames, g=speaker)
        fp32 = median_seconds(lambda: coqui(frames, g=speaker), repeats=5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16_seconds = median_seconds(lambda: coqui(frames, g=speaker), repeats=5)
            bf16 = coqui(frames, g=speaker).float()
    print(
        f"HiFiGAN, 120 frames, 2 threads: fp32 {fp32 * 1000:.0f} ms; rejected bf16 autocast "
        f"{bf16_seconds * 1000:.0f} ms ({fp32 / bf16_seconds:.2f}x), "
        f"{snr_db(bf16, reference):.1f} dB from fp32",
        flush=True,
    )


def int4_matmul() -> None:
    """One 1024 -> 4096 product at batch 1 (a GPT MLP matrix): int8 per channel vs int4."""
    generator = torch.Generator().manual_seed(0)
    rows, columns = 4096, 1024
    weight = torch.randn(rows, columns, generator=generator) * 0.02
    x = torch.randn(1, columns, generator=generator)
    reference = x @ weight.t()
    xb = x.to(torch.bfloat16)
    scales = weight.abs().amax(1) / 127
    q8 = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
    int8 = lambda: torch._weight_int8pack_mm(xb, q8, scales.to(torch.bfloat16))  # noqa: E731
    group = 32
    grouped = weight.reshape(rows, columns // group, group)
    low, high = grouped.amin(-1, keepdim=True), grouped.amax(-1, keepdim=True)
    step = (high - low).clamp(min=1e-8) / 15
    q4 = torch.round((grouped - low) / step).clamp(0, 15).to(torch.int32).reshape(rows, columns)
    packed = torch._convert_weight_to_int4pack_for_cpu(q4, 1)
    scale_zero = torch.stack([step.squeeze(-1), (low + 8 * step).squeeze(-1)], -1)
    scale_zero = scale_zero.transpose(0, 1).contiguous().to(torch.bfloat16)
    int4 = lambda: torch._weight_int4pack_mm_for_cpu(xb, packed, group, scale_zero)  # noqa: E731
    for name, product in (("int8", int8), ("int4 (groups of 32)", int4)):
        seconds = median_seconds(lambda product=product: [product() for _ in range(200)])
        print(
            f"matmul 1024->4096, 2 threads, {name}: {seconds / 200 * 1e6:.0f} us, "
            f"{snr_db(product().float(), reference):.1f} dB from fp32",
            flush=True,
        )


def main() -> None:
    torch.set_num_threads(2)
    model_dir = cached_random_model(config.cache_dir(), "full")
    loaded = load_model(model_dir, device="cpu", precision="int8")
    torch.set_num_threads(2)
    voice = next(iter(builtin_voices(loaded).values()))
    gpt_step(loaded, voice)
    decoder(loaded, voice)
    int4_matmul()


if __name__ == "__main__":
    main()
