"""The streaming synthesizer: text tokens -> GPT latents (our own token loop) -> windowed HiFiGAN -> chunks."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from xtts_desktop.errors import Cancelled, UserError

if TYPE_CHECKING:
    import torch

    from xtts_desktop.engine.model import LoadedModel
    from xtts_desktop.engine.text import Segment
    from xtts_desktop.engine.voices import Voice

logger = logging.getLogger(__name__)

# One HiFiGAN frame is this many output samples (XTTS's output_hop_length; checked at start-up).
SAMPLES_PER_FRAME = 256

CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class GenerationSettings:
    """How the GPT samples and how the stream is cut; defaults from the model's config.json."""

    temperature: float = 0.75
    top_k: int = 50
    top_p: float = 0.85
    repetition_penalty: float = 5.0
    # Only beam search uses it; kept so config.json's value travels with the others.
    length_penalty: float = 1.0
    speed: float = 1.0
    seed: int | None = None
    greedy: bool = False
    # A small first chunk so the first audio comes soon; each later chunk doubles, up to
    # chunk_tokens, so the audio ahead grows faster than the wait for the next chunk.
    first_chunk_tokens: int = 6
    chunk_tokens: int = 24
    # Caps the GPT tokens of one segment (benchmarks, random weights that never stop).
    max_tokens_per_segment: int | None = None
    sentence_pause_s: float = 0.2
    # HiFiGAN frames decoded on each side of a window: 8 reproduces the full decode at >100 dB.
    decoder_context_frames: int = 8

    @classmethod
    def from_model(cls, loaded: LoadedModel, **overrides: Any) -> GenerationSettings:
        """The config.json values (coqui's inference_stream ignores them; we do not)."""
        cfg = loaded.xtts.config
        values = {
            name: getattr(cfg, name)
            for name in ("temperature", "top_k", "top_p", "repetition_penalty", "length_penalty")
            if getattr(cfg, name, None) is not None
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values).validated()

    def validated(self) -> GenerationSettings:
        if not 0.5 <= self.speed <= 2.0:
            raise UserError(f"Speed {self.speed:g} is out of range; choose between 0.5 and 2.")
        if self.temperature <= 0 and not self.greedy:
            raise UserError("Temperature must be above 0 (or use greedy decoding).")
        if self.first_chunk_tokens < 1 or self.chunk_tokens < 1:
            raise UserError("Chunk sizes must be at least one token.")
        return self

    def replace(self, **changes: Any) -> GenerationSettings:
        return dataclasses.replace(self, **changes).validated()


@dataclass(frozen=True)
class Chunk:
    """Float32 mono 24 kHz audio, the segment it belongs to and when it was made."""

    samples: np.ndarray
    segment_index: int
    # The segment's character span in the original text.
    start: int
    end: int
    segment_end: bool
    produced_at: float  # time.perf_counter()
    # Offset of this chunk's first sample in the whole stream.
    stream_offset: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / 24000


@dataclass
class StreamStats:
    """Timings of one stream; read while it runs or after."""

    started_at: float = field(default_factory=time.perf_counter)
    first_chunk_at: float | None = None
    finished_at: float | None = None
    tokens: int = 0
    gpt_seconds: float = 0.0
    decoder_seconds: float = 0.0
    decoder_calls: int = 0
    audio_samples: int = 0
    segments: int = 0
    segments_done: int = 0
    sample_rate: int = 24000

    @property
    def time_to_first_chunk_ms(self) -> float | None:
        if self.first_chunk_at is None:
            return None
        return (self.first_chunk_at - self.started_at) * 1000

    @property
    def ms_per_token(self) -> float | None:
        return self.gpt_seconds * 1000 / self.tokens if self.tokens else None

    @property
    def decoder_ms_per_chunk(self) -> float | None:
        return self.decoder_seconds * 1000 / self.decoder_calls if self.decoder_calls else None

    @property
    def synthesis_seconds(self) -> float:
        end = self.finished_at if self.finished_at is not None else time.perf_counter()
        return end - self.started_at

    @property
    def audio_seconds(self) -> float:
        return self.audio_samples / self.sample_rate

    @property
    def rtf(self) -> float | None:
        return self.synthesis_seconds / self.audio_seconds if self.audio_samples else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "time_to_first_chunk_ms": self.time_to_first_chunk_ms,
            "ms_per_token": self.ms_per_token,
            "decoder_ms_per_chunk": self.decoder_ms_per_chunk,
            "synthesis_seconds": self.synthesis_seconds,
            "audio_seconds": self.audio_seconds,
            "rtf": self.rtf,
            "tokens": self.tokens,
            "segments": self.segments,
        }


# Speech runs near 15 characters a second and a GPT token is 46.4 ms: about 1.4 tokens a character.
TOKENS_PER_CHARACTER = 1.4


def random_weights_token_cap(characters: int) -> int:
    """How many GPT tokens real speech of that many characters takes (random weights never stop)."""
    return max(4, math.ceil(TOKENS_PER_CHARACTER * characters))


def as_cancel_check(cancel: CancelCheck | threading.Event | None) -> CancelCheck:
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    return cancel


def stable_prefix(stable_in: int, length_in: int, scale: float) -> tuple[int, int]:
    """Frames of a linear interpolation (align_corners=False) that no later input can change.

    PyTorch maps output i to source (i + 0.5) / scale - 0.5; it is final once both neighbours
    lie among the first ``stable_in`` inputs. Returns (stable outputs, output length); one frame
    of margin covers rounding in PyTorch's own arithmetic.
    """
    length_out = math.floor(length_in * scale)
    stable = math.ceil((stable_in - 0.5) * scale - 0.5) - 1
    return max(0, min(length_out, stable)), length_out


class _SegmentDecoder:
    """Turns the growing latent sequence of one segment into audio, window by window.

    The whole latent sequence is re-interpolated at each call (cheap), but HiFiGAN only runs on
    the frames not yet emitted plus a few frames of context on each side, and the last frames
    are held back until later tokens fix them: the joined output equals one full decode.
    """

    def __init__(self, synthesizer: Synthesizer, voice: Voice, speed: float, context: int) -> None:
        self.synthesizer = synthesizer
        self.speaker_embedding = voice.speaker_embedding
        self.length_scale = 1.0 / max(speed, 0.05)
        self.context = context
        self.emitted_frames = 0

    def frames(self, latents: torch.Tensor) -> torch.Tensor:
        return self.synthesizer.latents_to_frames(latents, self.length_scale)

    def stable_frames(self, n_latents: int) -> int:
        stable, length = n_latents, n_latents
        for scale in self.synthesizer.frame_scales(self.length_scale):
            stable, length = stable_prefix(stable, length, scale)
        return stable

    def decode(self, latents: torch.Tensor, final: bool) -> np.ndarray | None:
        frames = self.frames(latents)
        total = frames.shape[-1]
        end = total if final else self.stable_frames(latents.shape[1]) - self.context
        if end <= self.emitted_frames:
            return None
        start = self.emitted_frames
        window_start = max(0, start - self.context)
        window_end = total if final else min(total, end + self.context)
        audio = self.synthesizer.decode_frames(
            frames[:, :, window_start:window_end], self.speaker_embedding
        )
        offset = (start - window_start) * SAMPLES_PER_FRAME
        self.emitted_frames = end
        return audio[offset : offset + (end - start) * SAMPLES_PER_FRAME]


class Synthesizer:
    """The one engine behind the window, the command line, export and the server."""

    def __init__(self, loaded: LoadedModel, static_cache: bool = True) -> None:
        """static_cache: run GPT steps on a preallocated KV cache (the default; False runs
        Hugging Face's forward with its growing cache). On CUDA the step is replayed as a CUDA
        graph unless XTTS_DESKTOP_CUDA_GRAPHS=0; elsewhere it runs eagerly."""
        import os

        self.loaded = loaded
        on_cuda = loaded.device.torch_device == "cuda"
        self._static_cache = static_cache
        self._cuda_graphs = on_cuda and os.environ.get("XTTS_DESKTOP_CUDA_GRAPHS", "1") != "0"
        self._stepper: Any = None
        self.xtts = loaded.xtts
        self.gpt = loaded.xtts.gpt
        decoder = loaded.xtts.hifigan_decoder
        self._input_rate = decoder.input_sample_rate
        self._output_rate = decoder.output_sample_rate
        self._frames_per_latent = decoder.ar_mel_length_compression / decoder.output_hop_length
        if decoder.output_hop_length != SAMPLES_PER_FRAME:
            raise UserError("This XTTS model's decoder hop length is not 256; it is not XTTS v2.")
        self.sample_rate = int(self._output_rate)
        # One job at a time: the KV cache and the GPU are not shared between streams.
        self._lock = threading.Lock()

    # ----- text ---------------------------------------------------------------------------

    def encode(self, text: str, language: str) -> list[int]:
        """XTTS's own tokenizer on the text as XTTS's inference() prepares it."""
        # Whitespace collapsed: segments are exact slices and may hold line breaks, which
        # coqui's Japanese path would keep.
        return self.xtts.tokenizer.encode(" ".join(text.split()).lower(), lang=language)

    def token_count(self, language: str) -> Callable[[str], int]:
        return lambda text: len(self.encode(text, language))

    def segments(self, text: str, language: str) -> list[Segment]:
        from xtts_desktop.engine import text as text_module

        language = text_module.normalize_language(language)
        text_module.check_language_support(language)
        return text_module.require_segments(
            text,
            language,
            token_counter=self.token_count(language),
            max_tokens=int(self.xtts.args.gpt_max_text_tokens) - 2,
        )

    # ----- the GPT token loop -------------------------------------------------------------

    def max_tokens(self, settings: GenerationSettings, text_tokens: int | None = None) -> int:
        """XTTS's own cap, the settings' cap, and for random weights (which rarely sample the
        stop token) the length real speech of the text would have."""
        cap = int(self.gpt.max_gen_mel_tokens)
        if settings.max_tokens_per_segment:
            cap = min(cap, settings.max_tokens_per_segment)
        elif self.loaded.is_random_weights and text_tokens is not None:
            cap = min(cap, random_weights_token_cap(text_tokens))
        return cap

    def generate(
        self,
        text_tokens: list[int],
        voice: Voice,
        settings: GenerationSettings,
        cancel: CancelCheck | threading.Event | None = None,
        stats: StreamStats | None = None,
        generator: torch.Generator | None = None,
        forced_tokens: list[int] | None = None,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (token, latent) per GPT step, the latent being the one XTTS's decoder reads.

        A KV-cached loop over coqui's GPT2 that feeds the same embeddings as coqui's
        GPT2InferenceModel and processes logits as Hugging Face's generate() does, so greedy
        decoding reproduces ``Xtts.inference(do_sample=False)`` token for token. With
        ``forced_tokens`` it follows those tokens instead (to compare precisions on the same
        tokens).
        """
        import torch

        check = as_cancel_check(cancel)
        gpt = self.gpt
        step_transformer = self.loaded.gpt_transformer
        prefix_transformer = self._prefix_transformer()
        dtype = self.loaded.gpt_dtype
        device = self.loaded.torch_device
        cond = voice.gpt_cond_latent.to(device)
        tokens = torch.tensor([text_tokens], dtype=torch.long, device=device)
        tokens = torch.nn.functional.pad(tokens, (0, 1), value=gpt.stop_text_token)
        tokens = torch.nn.functional.pad(tokens, (1, 0), value=gpt.start_text_token)
        max_new = self.max_tokens(settings, len(text_tokens))
        if forced_tokens is not None:
            max_new = len(forced_tokens)
        vocab = gpt.mel_head.out_features
        # HF's repetition penalty also sees the placeholder id 1 and the start-audio id that
        # coqui puts in input_ids; keep a mask of every id seen so far.
        seen = torch.zeros(vocab, dtype=torch.bool, device=device)
        seen[1] = True
        seen[gpt.start_audio_token] = True
        stop = gpt.stop_audio_token
        cache = None
        stepper = None
        with torch.inference_mode():
            text_emb = gpt.text_embedding(tokens) + gpt.text_pos_embedding(tokens)
            start = torch.full((1, 1), gpt.start_audio_token, dtype=torch.long, device=device)
            start_emb = gpt.mel_embedding(start) + gpt.mel_pos_embedding(start)
            step_input = torch.cat([cond.to(text_emb.dtype), text_emb, start_emb], dim=1)
            if self._static_cache:
                stepper = self._static_stepper(step_input.shape[1] + max_new + 1)
            for position in range(1, max_new + 1):
                if check():
                    raise Cancelled()
                began = time.perf_counter()
                if stepper is not None:
                    hidden = (
                        stepper.prefill(step_input) if position == 1 else stepper.step(step_input)
                    )
                else:
                    transformer = prefix_transformer if cache is None else step_transformer
                    out = transformer(
                        inputs_embeds=step_input.to(dtype),
                        past_key_values=cache,
                        use_cache=True,
                        return_dict=True,
                    )
                    cache = out.past_key_values
                    hidden = out.last_hidden_state[:, -1]
                latent = gpt.final_norm(hidden.float())
                if forced_tokens is not None:
                    token = forced_tokens[position - 1]
                else:
                    token = self._pick(gpt.mel_head(latent), seen, settings, generator)
                if stats is not None:
                    stats.tokens += 1
                    stats.gpt_seconds += time.perf_counter() - began
                yield token, latent
                if token == stop:
                    return
                seen[token] = True
                ids = torch.tensor([[token]], dtype=torch.long, device=device)
                step_input = gpt.mel_embedding(ids) + gpt.mel_pos_embedding.get_fixed_embedding(
                    position, device
                )

    def _prefix_transformer(self) -> Any:
        """The GPT-2 the prompt prefix runs through: int8 weights pay off one token at a time,
        the long prefix runs faster on the fp32 weights (both fill the same fp32 KV cache)."""
        if self.loaded.precision == "int8":
            return self.gpt.gpt
        return self.loaded.gpt_transformer

    def _static_stepper(self, positions: int) -> Any:
        """One static KV cache (and CUDA graph) per synthesizer, grown only when a longer
        sequence needs it; sized for XTTS's longest sequence at first use."""
        from xtts_desktop.engine.static_gpt import StaticStepper

        gpt = self.gpt
        longest = 64 + int(gpt.max_text_tokens) + int(gpt.max_gen_mel_tokens) + 4
        if self._stepper is None or self._stepper.max_positions < positions:
            self._stepper = StaticStepper(
                self.loaded.gpt_transformer,
                max(positions, longest),
                use_cuda_graph=self._cuda_graphs,
                prefix_transformer=self._prefix_transformer(),
            )
        return self._stepper

    @staticmethod
    def _pick(
        logits: torch.Tensor,
        seen: torch.Tensor,
        settings: GenerationSettings,
        generator: torch.Generator | None,
    ) -> int:
        """Hugging Face's order: repetition penalty, then temperature, top-k, top-p, sample."""
        import torch

        scores = logits[0]
        penalty = settings.repetition_penalty
        if penalty != 1.0:
            penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
            scores = torch.where(seen, penalised, scores)
        if settings.greedy:
            return int(torch.argmax(scores))
        scores = scores / settings.temperature
        if 0 < settings.top_k < scores.shape[-1]:
            kth = torch.topk(scores, settings.top_k).values[-1]
            scores = scores.masked_fill(scores < kth, -math.inf)
        if settings.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, descending=False)
            cumulative = sorted_scores.softmax(-1).cumsum(-1)
            remove = cumulative <= (1 - settings.top_p)
            remove[-1] = False
            scores = scores.masked_fill(remove.scatter(0, order, remove), -math.inf)
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, 1, generator=generator))

    # ----- the decoder --------------------------------------------------------------------

    def frame_scales(self, length_scale: float) -> list[float]:
        """The linear interpolations XTTS applies before HiFiGAN, in order."""
        scales = [length_scale] if length_scale != 1.0 else []
        scales.append(self._frames_per_latent)
        if self._output_rate != self._input_rate:
            scales.append(self._output_rate / self._input_rate)
        return scales

    def latents_to_frames(self, latents: torch.Tensor, length_scale: float = 1.0) -> torch.Tensor:
        """[1, T, D] latents -> [1, D, frames], exactly as Xtts.inference and HifiDecoder do it."""
        import torch.nn.functional as F

        x = latents.float().transpose(1, 2)  # half-precision GPTs give half latents
        for scale in self.frame_scales(length_scale):
            x = F.interpolate(x, scale_factor=[scale], mode="linear")
        return x

    def decode_frames(self, frames: torch.Tensor, speaker_embedding: torch.Tensor) -> np.ndarray:
        import torch

        device = self.loaded.torch_device
        with torch.inference_mode():
            audio = self.xtts.hifigan_decoder.waveform_decoder(
                frames.to(device), g=speaker_embedding.to(device)
            )
        return audio.reshape(-1).float().cpu().numpy()

    def decode_full(self, latents: torch.Tensor, voice: Voice, speed: float = 1.0) -> np.ndarray:
        """The non-streaming decode of a whole segment's latents (what Xtts.inference does)."""
        frames = self.latents_to_frames(latents, 1.0 / max(speed, 0.05))
        return self.decode_frames(frames, voice.speaker_embedding)

    # ----- streams ------------------------------------------------------------------------

    def stream(
        self,
        text: str,
        voice: Voice,
        language: str,
        settings: GenerationSettings,
        cancel: CancelCheck | threading.Event | None = None,
        stats: StreamStats | None = None,
        start_segment: int = 0,
    ) -> Iterator[Chunk]:
        """Chunks of the whole text, segment by segment, from ``start_segment`` on."""
        segments = self.segments(text, language)
        yield from self.stream_segments(
            segments[start_segment:], voice, language, settings, cancel, stats
        )

    def stream_segments(
        self,
        segments: Iterable[Segment],
        voice: Voice,
        language: str,
        settings: GenerationSettings,
        cancel: CancelCheck | threading.Event | None = None,
        stats: StreamStats | None = None,
    ) -> Iterator[Chunk]:

        from xtts_desktop.engine.text import normalize_language

        language = normalize_language(language)
        stats = stats if stats is not None else StreamStats(sample_rate=self.sample_rate)
        segments = list(segments)
        stats.segments = len(segments)
        voice.check_compatible(self.loaded.width)
        generator = self._generator(settings)
        pause = np.zeros(int(settings.sentence_pause_s * self.sample_rate), dtype=np.float32)
        offset = 0
        with self._lock:
            for number, segment in enumerate(segments):
                is_last_segment = number == len(segments) - 1
                for audio, end_of_segment in self._segment_audio_or_fall_back(
                    segment, voice, language, settings, cancel, stats, generator
                ):
                    if end_of_segment and not is_last_segment and len(pause):
                        audio = np.concatenate([audio, pause])
                    chunk = Chunk(
                        samples=audio,
                        segment_index=segment.index,
                        start=segment.start,
                        end=segment.end,
                        segment_end=end_of_segment,
                        produced_at=time.perf_counter(),
                        stream_offset=offset,
                    )
                    offset += len(audio)
                    stats.audio_samples += len(audio)
                    if stats.first_chunk_at is None:
                        stats.first_chunk_at = chunk.produced_at
                    yield chunk
                stats.segments_done += 1
        stats.finished_at = time.perf_counter()

    def _generator(self, settings: GenerationSettings) -> torch.Generator | None:
        import torch

        if settings.greedy:
            return None
        generator = torch.Generator(device=self.loaded.torch_device)
        if settings.seed is not None:
            generator.manual_seed(settings.seed)
        else:
            generator.seed()
        return generator

    def _segment_audio_or_fall_back(
        self,
        segment: Segment,
        voice: Voice,
        language: str,
        settings: GenerationSettings,
        cancel: CancelCheck | threading.Event | None,
        stats: StreamStats,
        generator: torch.Generator | None,
    ) -> Iterator[tuple[np.ndarray, bool]]:
        """A segment's audio; if the GPU runs out of memory, the model moves to the CPU and the
        segment starts again there (its start is heard twice rather than never)."""
        import torch

        try:
            yield from self._segment_audio(
                segment, voice, language, settings, cancel, stats, generator
            )
        except torch.OutOfMemoryError:
            if self.loaded.device.torch_device == "cpu":
                raise
            self.loaded.fall_back_to_cpu(
                "The GPU ran out of memory during synthesis: XTTS now runs on the CPU."
            )
            self._stepper = None
            self._cuda_graphs = False
            generator = self._generator(settings)
            yield from self._segment_audio(
                segment, voice, language, settings, cancel, stats, generator
            )

    def _segment_audio(
        self,
        segment: Segment,
        voice: Voice,
        language: str,
        settings: GenerationSettings,
        cancel: CancelCheck | threading.Event | None,
        stats: StreamStats,
        generator: torch.Generator | None,
    ) -> Iterator[tuple[np.ndarray, bool]]:

        text_tokens = self.encode(segment.text, language)
        decoder = _SegmentDecoder(self, voice, settings.speed, settings.decoder_context_frames)
        latents: list[torch.Tensor] = []
        next_cut = settings.first_chunk_tokens
        for _token, latent in self.generate(text_tokens, voice, settings, cancel, stats, generator):
            latents.append(latent)
            if len(latents) >= next_cut:
                audio = self._timed_decode(decoder, latents, final=False, stats=stats)
                if audio is not None and len(audio):
                    step = min(
                        settings.chunk_tokens, max(settings.first_chunk_tokens, len(latents))
                    )
                    next_cut = len(latents) + step
                    yield audio, False
        audio = self._timed_decode(decoder, latents, final=True, stats=stats)
        yield (audio if audio is not None else np.zeros(0, dtype=np.float32)), True

    def _timed_decode(
        self, decoder: _SegmentDecoder, latents: list[torch.Tensor], final: bool, stats: StreamStats
    ) -> np.ndarray | None:
        import torch

        if not latents:
            return None
        began = time.perf_counter()
        audio = decoder.decode(torch.stack(latents, dim=1), final=final)
        if audio is not None:
            stats.decoder_seconds += time.perf_counter() - began
            stats.decoder_calls += 1
        return audio

    def synthesize_segment_tokens(
        self,
        segment_text: str,
        voice: Voice,
        language: str,
        settings: GenerationSettings,
        cancel: CancelCheck | threading.Event | None = None,
    ) -> tuple[list[int], torch.Tensor]:
        """All tokens and latents of one segment at once (tests, benchmarks, SNR checks)."""
        import torch

        # Reproducible by default: seed 0 when none is given.
        generator = self._generator(
            settings if settings.seed is not None else settings.replace(seed=0)
        )
        pairs = list(
            self.generate(
                self.encode(segment_text, language), voice, settings, cancel, None, generator
            )
        )
        tokens = [token for token, _ in pairs]
        latents = (
            torch.stack([latent for _, latent in pairs], dim=1)
            if pairs
            else torch.zeros(1, 0, self.loaded.width)
        )
        return tokens, latents

    def latents_for_tokens(
        self, segment_text: str, tokens: list[int], voice: Voice, language: str
    ) -> torch.Tensor:
        """The latents this engine's precision gives for given tokens (teacher-forced)."""
        import torch

        settings = GenerationSettings(greedy=True)
        pairs = list(
            self.generate(
                self.encode(segment_text, language), voice, settings, forced_tokens=tokens
            )
        )
        return torch.stack([latent for _, latent in pairs], dim=1)

    def warm_up(self, voice: Voice, language: str = "en") -> None:
        """A few tokens and one decode, so the first Play is as fast as the second."""
        settings = GenerationSettings(greedy=True, max_tokens_per_segment=8, first_chunk_tokens=4)
        from xtts_desktop.engine.text import Segment

        segment = Segment(index=0, text="Hello.", start=0, end=6)
        for _ in self.stream_segments([segment], voice, language, settings):
            pass
