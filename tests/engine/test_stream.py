"""The streaming synthesizer against coqui's own non-streaming path, on the tiny random model."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from xtts_desktop.engine.stream import GenerationSettings, StreamStats, Synthesizer, stable_prefix
from xtts_desktop.engine.text import Segment
from xtts_desktop.errors import Cancelled

TEXT = "Hello there, this is a test."


def snr_db(signal: np.ndarray, reference: np.ndarray) -> float:
    assert len(signal) == len(reference), (len(signal), len(reference))
    noise = np.sum((signal.astype(np.float64) - reference) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(noise, 1e-30)))


def one_segment(text: str = TEXT) -> list[Segment]:
    return [Segment(index=0, text=text, start=0, end=len(text))]


@pytest.fixture(scope="module")
def greedy(tiny_model):
    return GenerationSettings.from_model(tiny_model, greedy=True, max_tokens_per_segment=60)


def test_greedy_tokens_match_coqui_generate(synthesizer, builtin_voice, greedy, tiny_model):
    tokens, latents = synthesizer.synthesize_segment_tokens(TEXT, builtin_voice, "en", greedy)
    text_tokens = torch.IntTensor(synthesizer.encode(TEXT, "en")).unsqueeze(0)
    with torch.inference_mode():
        reference = tiny_model.xtts.gpt.generate(
            cond_latents=builtin_voice.gpt_cond_latent,
            text_inputs=text_tokens,
            do_sample=False,
            repetition_penalty=greedy.repetition_penalty,
        )
    reference_tokens = reference[0].tolist()[:60]
    assert tokens == reference_tokens
    assert latents.shape == (1, len(tokens), tiny_model.width)


def test_stream_equals_coqui_inference(synthesizer, builtin_voice, tiny_model):
    """Greedy, uncapped: the joined stream is XTTS's own non-streaming output (no seams)."""
    # Uncapped (XTTS's own limit), as inference() runs: the tiny model stops by itself.
    settings = GenerationSettings.from_model(
        tiny_model, greedy=True, chunk_tokens=12, max_tokens_per_segment=10_000
    )
    chunks = list(synthesizer.stream_segments(one_segment(), builtin_voice, "en", settings))
    streamed = np.concatenate([chunk.samples for chunk in chunks])
    reference = tiny_model.xtts.inference(
        TEXT,
        "en",
        builtin_voice.gpt_cond_latent,
        builtin_voice.speaker_embedding,
        do_sample=False,
        repetition_penalty=settings.repetition_penalty,
    )["wav"]
    assert len(chunks) >= 3, "the text should stream in several chunks"
    assert snr_db(streamed, reference) > 60


@pytest.mark.parametrize("speed", [1.0, 0.7, 1.6])
def test_chunks_join_to_the_full_decode(synthesizer, builtin_voice, greedy, speed):
    settings = greedy.replace(speed=speed, first_chunk_tokens=4, chunk_tokens=7)
    _, latents = synthesizer.synthesize_segment_tokens(TEXT, builtin_voice, "en", settings)
    full = synthesizer.decode_full(latents, builtin_voice, speed=speed)
    chunks = list(synthesizer.stream_segments(one_segment(), builtin_voice, "en", settings))
    streamed = np.concatenate([chunk.samples for chunk in chunks])
    assert snr_db(streamed, full) > 60
    assert chunks[-1].segment_end and not any(chunk.segment_end for chunk in chunks[:-1])


def test_first_chunk_is_small_and_decoder_windows_stay_bounded(tiny_model, builtin_voice, greedy):
    windows: list[int] = []

    class CountingSynthesizer(Synthesizer):
        def decode_frames(self, frames, speaker_embedding):
            windows.append(frames.shape[-1])
            return super().decode_frames(frames, speaker_embedding)

    synthesizer = CountingSynthesizer(tiny_model)
    settings = greedy.replace(first_chunk_tokens=4, chunk_tokens=10)
    chunks = list(synthesizer.stream_segments(one_segment(), builtin_voice, "en", settings))
    samples_per_token = 1024 * 24000 / 22050
    assert len(chunks[0].samples) <= 4 * samples_per_token
    assert len(chunks[0].samples) < len(chunks[1].samples)
    # Each window holds one chunk's new frames plus fixed context: never the whole sentence.
    frames_per_chunk = 10 * 4 * 24000 / 22050
    limit = frames_per_chunk + 2 * settings.decoder_context_frames + 8
    assert len(windows) >= 4
    assert max(windows[:-1]) <= limit


def test_stable_prefix_is_never_changed_by_later_latents():
    torch.manual_seed(0)
    latents = torch.randn(1, 40, 8)
    import torch.nn.functional as F

    for n in range(2, 39):
        stable, length = n, n
        short = latents[:, :n].transpose(1, 2)
        long = latents.transpose(1, 2)
        for scale in (0.8, 4.0, 24000 / 22050):
            stable, length = stable_prefix(stable, length, scale)
            short = F.interpolate(short, scale_factor=[scale], mode="linear")
            long = F.interpolate(long, scale_factor=[scale], mode="linear")
        assert short.shape[-1] == length
        assert torch.equal(short[..., :stable], long[..., :stable])


def test_cancellation_stops_within_a_token(synthesizer, builtin_voice, greedy):
    stats = StreamStats()
    cancel = threading.Event()
    tokens_when_cancelled = []

    def check() -> bool:
        if stats.tokens >= 5 and not cancel.is_set():
            cancel.set()
            tokens_when_cancelled.append(stats.tokens)
        return cancel.is_set()

    with pytest.raises(Cancelled):
        for _ in synthesizer.stream_segments(
            one_segment(), builtin_voice, "en", greedy, check, stats
        ):
            pass
    assert tokens_when_cancelled == [5]
    assert stats.tokens == 5


def test_seed_makes_sampling_reproducible(synthesizer, builtin_voice, tiny_model):
    settings = GenerationSettings.from_model(tiny_model, seed=7, max_tokens_per_segment=25)
    first, _ = synthesizer.synthesize_segment_tokens(TEXT, builtin_voice, "en", settings)
    again, _ = synthesizer.synthesize_segment_tokens(TEXT, builtin_voice, "en", settings)
    other, _ = synthesizer.synthesize_segment_tokens(
        TEXT, builtin_voice, "en", settings.replace(seed=8)
    )
    assert first == again
    assert first != other


def test_sentences_are_separated_by_a_short_pause(synthesizer, builtin_voice, greedy):
    text = "One sentence here. And another one."
    settings = greedy.replace(max_tokens_per_segment=12, sentence_pause_s=0.2)
    stats = StreamStats()
    chunks = list(synthesizer.stream(text, builtin_voice, "en", settings, stats=stats))
    ends = [chunk for chunk in chunks if chunk.segment_end]
    assert [chunk.segment_index for chunk in ends] == [0, 1]
    first_end = ends[0].samples
    pause = int(0.2 * 24000)
    assert np.all(first_end[-pause:] == 0)
    assert np.any(ends[1].samples[-pause:] != 0), "no pause after the last sentence"
    spans = {(chunk.start, chunk.end) for chunk in chunks}
    assert [text[s:e] for s, e in sorted(spans)] == ["One sentence here.", "And another one."]
    offsets = [chunk.stream_offset for chunk in chunks]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert stats.audio_samples == sum(len(chunk.samples) for chunk in chunks)
    assert stats.time_to_first_chunk_ms is not None and stats.rtf is not None


def test_long_unpunctuated_text_streams_in_segments(synthesizer, builtin_voice, greedy):
    text = " ".join(["word"] * 400)
    segments = synthesizer.segments(text, "en")
    assert len(segments) >= 2
    assert all(len(segment.text) <= 250 for segment in segments)
    settings = greedy.replace(max_tokens_per_segment=6)
    chunks = list(synthesizer.stream_segments(segments[:2], builtin_voice, "en", settings))
    assert {chunk.segment_index for chunk in chunks} == {0, 1}


SAMPLES = {
    "en": "Hello world.", "es": "Hola mundo.", "fr": "Bonjour le monde.", "de": "Hallo Welt.",
    "it": "Ciao mondo.", "pt": "Olá mundo.", "pl": "Witaj świecie.", "tr": "Merhaba dünya.",
    "ru": "Привет, мир.", "nl": "Hallo wereld.", "cs": "Ahoj světe.", "ar": "مرحبا بالعالم.",
    "zh-cn": "你好，世界。", "hu": "Helló világ.", "ko": "안녕하세요 세계.", "ja": "こんにちは世界。",
    "hi": "नमस्ते दुनिया।",
}  # fmt: skip


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_every_language_tokenizes(synthesizer, language):
    tokens = synthesizer.encode(SAMPLES[language], language)
    vocab = synthesizer.xtts.tokenizer.tokenizer.get_vocab()
    tag = "[zh-cn]" if language == "zh-cn" else f"[{language}]"
    assert tokens[0] == vocab[tag]
    assert len(tokens) > 3


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_faster_precisions_keep_the_sound(tiny_model, builtin_voice, greedy, precision):
    """Same greedy tokens, fp32 against the faster precision: latents and audio stay close."""
    import dataclasses

    from xtts_desktop.engine.stream import Synthesizer as Engine

    fp32 = Engine(tiny_model)
    tokens, reference = fp32.synthesize_segment_tokens(TEXT, builtin_voice, "en", greedy)
    fast = Engine(dataclasses.replace(tiny_model, precision=precision))
    latents = fast.latents_for_tokens(TEXT, tokens, builtin_voice, "en")
    assert latents.shape == reference.shape
    latent_snr = snr_db(latents.flatten().numpy(), reference.flatten().numpy())
    audio_snr = snr_db(
        fp32.decode_full(latents, builtin_voice), fp32.decode_full(reference, builtin_voice)
    )
    floor = 40 if precision == "int8" else 25
    assert latent_snr > floor, latent_snr
    assert audio_snr > floor, audio_snr


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_static_kv_cache_reproduces_the_dynamic_one(tiny_model, builtin_voice, greedy, precision):
    """Our lean step on a preallocated cache (the default) against Hugging Face's forward with
    its growing cache: same tokens, same latents, across segments and streams."""
    import dataclasses

    loaded = dataclasses.replace(tiny_model, precision=precision)
    dynamic = Synthesizer(loaded, static_cache=False)
    static = Synthesizer(loaded)
    settings = greedy.replace(max_tokens_per_segment=40)
    tokens, latents = dynamic.synthesize_segment_tokens(TEXT, builtin_voice, "en", settings)
    static_tokens, static_latents = static.synthesize_segment_tokens(
        TEXT, builtin_voice, "en", settings
    )
    assert static._stepper is not None
    assert static_tokens == tokens
    assert snr_db(static_latents.flatten().numpy(), latents.flatten().numpy()) > 100
    # The cache is reused across segments and streams without leaking state.
    again, _ = static.synthesize_segment_tokens(TEXT, builtin_voice, "en", settings)
    other_text, _ = static.synthesize_segment_tokens(
        "Another sentence.", builtin_voice, "en", settings
    )
    reference_other, _ = dynamic.synthesize_segment_tokens(
        "Another sentence.", builtin_voice, "en", settings
    )
    assert again == tokens and other_text == reference_other


def test_fixed_shape_step_equals_the_eager_step(tiny_model, builtin_voice, greedy):
    """The masked, fixed-shape step that CUDA captures as a graph, run on the CPU here."""
    from xtts_desktop.engine.static_gpt import StaticStepper

    class FixedShapeStepper(StaticStepper):
        def step(self, embedding):
            self.step_input.copy_(embedding.to(self.dtype))
            self.step_position.fill_(self.length)
            self._step()
            self.length += 1
            return self.step_output[:, -1]

    class FixedShapeSynthesizer(Synthesizer):
        def _static_stepper(self, positions):
            if self._stepper is None:
                self._stepper = FixedShapeStepper(
                    self.loaded.gpt_transformer, positions + 16, use_cuda_graph=False
                )
            return self._stepper

    settings = greedy.replace(max_tokens_per_segment=40)
    eager_tokens, eager_latents = Synthesizer(tiny_model).synthesize_segment_tokens(
        TEXT, builtin_voice, "en", settings
    )
    fixed = FixedShapeSynthesizer(tiny_model)
    tokens, latents = fixed.synthesize_segment_tokens(TEXT, builtin_voice, "en", settings)
    assert isinstance(fixed._stepper, FixedShapeStepper)
    assert tokens == eager_tokens
    assert snr_db(latents.flatten().numpy(), eager_latents.flatten().numpy()) > 100


@pytest.mark.cuda
def test_cuda_graph_stream_equals_eager(tiny_model_dir, builtin_voice):
    """On a GPU: the CUDA-graph step gives the eager step's tokens (greedy, fp32)."""
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU")
    from xtts_desktop.engine.model import load_model
    from xtts_desktop.engine.voices import builtin_voices

    loaded = load_model(tiny_model_dir, device="cuda", precision="fp32")
    voice = next(iter(builtin_voices(loaded).values()))
    settings = GenerationSettings.from_model(loaded, greedy=True, max_tokens_per_segment=40)
    graphs = Synthesizer(loaded)
    eager = Synthesizer(loaded, static_cache=False)
    tokens, latents = graphs.synthesize_segment_tokens(TEXT, voice, "en", settings)
    reference, reference_latents = eager.synthesize_segment_tokens(TEXT, voice, "en", settings)
    assert graphs._stepper is not None and graphs._stepper._graph is not None
    assert tokens == reference
    assert snr_db(latents.flatten().cpu().numpy(), reference_latents.flatten().cpu().numpy()) > 80
