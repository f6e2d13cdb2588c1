"""`xtts-desktop bench`: stock coqui-tts streaming against this app's engine, same process, same model."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xtts_desktop.errors import UserError

DEFAULT_TEXT = (
    "The old lighthouse stood at the edge of the cliff, its lamp long dark. "
    "Every evening the keeper's daughter climbed the spiral stairs to watch the ships come home. "
    "Tonight, for the first time in years, a light answered her from the sea."
)
STOCK_CHUNK_TOKENS = 20


@dataclass
class RunRecord:
    """One run of one variant: timings and the audio-produced-over-time curve."""

    time_to_first_chunk_ms: float = 0.0
    synthesis_seconds: float = 0.0
    audio_seconds: float = 0.0
    tokens: int = 0
    gpt_seconds: float = 0.0
    decoder_seconds: float = 0.0
    decoder_calls: int = 0
    peak_rss_mb: float = 0.0
    peak_gpu_mb: float | None = None
    curve: list[tuple[float, float]] = field(default_factory=list)

    def summary(self) -> dict[str, float | None]:
        return {
            "time_to_first_chunk_ms": self.time_to_first_chunk_ms,
            "ms_per_token": self.gpt_seconds * 1000 / self.tokens if self.tokens else None,
            "decoder_ms_per_chunk": self.decoder_seconds * 1000 / self.decoder_calls
            if self.decoder_calls
            else None,
            "synthesis_seconds": self.synthesis_seconds,
            "audio_seconds": self.audio_seconds,
            "rtf": self.synthesis_seconds / self.audio_seconds if self.audio_seconds else None,
            "tokens": self.tokens,
            "peak_rss_mb": self.peak_rss_mb,
            "peak_gpu_mb": self.peak_gpu_mb,
        }


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def _peak_memory(record: RunRecord, device: str) -> Iterator[None]:
    """Samples RSS every 20 ms while the run lasts (the process-wide peak would mix variants)."""
    import torch

    done = threading.Event()
    peak = [_rss_mb()]

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        yield
    finally:
        done.set()
        sampler.join()
        record.peak_rss_mb = max(peak[0], _rss_mb())
        if device == "cuda":
            record.peak_gpu_mb = torch.cuda.max_memory_allocated() / 2**20


@contextmanager
def _timed_calls(
    module: Any, on_call: Callable[[float], None], sync: Callable[[], None]
) -> Iterator[None]:
    """Time every forward() of a module instance (measurement only; the module is unchanged)."""
    original = module.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        result = original(*args, **kwargs)
        sync()
        on_call(time.perf_counter() - began)
        return result

    module.forward = forward
    try:
        yield
    finally:
        del module.forward


class Bench:
    def __init__(self, loaded: Any, voice: Any, language: str, text: str, seed: int) -> None:
        from xtts_desktop.engine.stream import Synthesizer

        self.loaded = loaded
        self.voice = voice
        self.language = language
        self.text = text
        self.seed = seed
        self.synthesizer = Synthesizer(loaded)
        self.segments = self.synthesizer.segments(text, language)
        self.device = loaded.device.torch_device
        import torch

        from xtts_desktop.engine.model import inference_threads

        # Stock runs as peers run it, on torch's default threads; ours on the engine's policy.
        self.default_threads = os.cpu_count() or 1
        self.engine_threads = (
            inference_threads() if self.device == "cpu" else torch.get_num_threads()
        )

    def _sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def token_cap(self, segment_text: str) -> int | None:
        """Random weights rarely stop: cap each sentence at the length real speech would have."""
        from xtts_desktop.engine.stream import random_weights_token_cap

        if not self.loaded.is_random_weights:
            return None
        return random_weights_token_cap(len(self.synthesizer.encode(segment_text, self.language)))

    def run_stock(self) -> RunRecord:
        """coqui's inference_stream, chunk 20, sentence by sentence, fp32, as peers run it
        (with torch's default thread count)."""
        import torch

        torch.set_num_threads(self.default_threads)
        xtts = self.loaded.xtts
        cfg = xtts.config
        record = RunRecord()
        torch.manual_seed(self.seed)
        gpt = xtts.gpt
        original_cap = gpt.max_gen_mel_tokens

        def gpt_step(seconds: float) -> None:
            record.tokens += 1
            record.gpt_seconds += seconds

        def decode(seconds: float) -> None:
            record.decoder_calls += 1
            record.decoder_seconds += seconds

        started = time.perf_counter()
        audio = 0
        with (
            _peak_memory(record, self.device),
            _timed_calls(gpt.gpt_inference, gpt_step, self._sync),
            _timed_calls(xtts.hifigan_decoder, decode, self._sync),
        ):
            for segment in self.segments:
                cap = self.token_cap(segment.text)
                gpt.max_gen_mel_tokens = min(cap, original_cap) if cap is not None else original_cap
                try:
                    for wav in xtts.inference_stream(
                        segment.text,
                        self.language,
                        self.voice.gpt_cond_latent,
                        self.voice.speaker_embedding,
                        stream_chunk_size=STOCK_CHUNK_TOKENS,
                        temperature=cfg.temperature,
                        length_penalty=cfg.length_penalty,
                        repetition_penalty=cfg.repetition_penalty,
                        top_k=cfg.top_k,
                        top_p=cfg.top_p,
                    ):
                        now = time.perf_counter()
                        if not audio:
                            record.time_to_first_chunk_ms = (now - started) * 1000
                        audio += wav.shape[-1]
                        record.curve.append((now - started, audio / 24000))
                finally:
                    gpt.max_gen_mel_tokens = original_cap
        record.synthesis_seconds = time.perf_counter() - started
        record.audio_seconds = audio / 24000
        return record

    def run_ours(self, **overrides: Any) -> RunRecord:
        from xtts_desktop.engine.stream import GenerationSettings, StreamStats

        settings = GenerationSettings.from_model(
            self.loaded, seed=self.seed, sentence_pause_s=0.0, **overrides
        )
        record = RunRecord()
        stats = StreamStats()
        with _peak_memory(record, self.device):
            for chunk in self.synthesizer.stream_segments(
                self.segments, self.voice, self.language, settings, stats=stats
            ):
                record.curve.append(
                    (
                        chunk.produced_at - stats.started_at,
                        (chunk.stream_offset + len(chunk.samples)) / 24000,
                    )
                )
        record.time_to_first_chunk_ms = stats.time_to_first_chunk_ms or 0.0
        record.synthesis_seconds = stats.synthesis_seconds
        record.audio_seconds = stats.audio_seconds
        record.tokens = stats.tokens
        record.gpt_seconds = stats.gpt_seconds
        record.decoder_seconds = stats.decoder_seconds
        record.decoder_calls = stats.decoder_calls
        return record

    def snr_report(self) -> dict[str, float]:
        """On the same greedy tokens: our stream and stock's re-decode+crossfade vs one full decode."""
        import torch

        from xtts_desktop.engine.stream import GenerationSettings
        from xtts_desktop.engine.text import Segment

        settings = GenerationSettings.from_model(self.loaded, greedy=True, sentence_pause_s=0.0)
        segment = self.segments[0]
        _, latents = self.synthesizer.synthesize_segment_tokens(
            segment.text, self.voice, self.language, settings
        )
        full = self.synthesizer.decode_full(latents, self.voice)
        ours = np.concatenate(
            [
                c.samples
                for c in self.synthesizer.stream_segments(
                    [Segment(0, segment.text, 0, len(segment.text))],
                    self.voice,
                    self.language,
                    settings,
                )
            ]
        )
        xtts = self.loaded.xtts
        stock_parts, previous, overlap = [], None, None
        total = latents.shape[1]
        with torch.inference_mode():
            for end in list(range(STOCK_CHUNK_TOKENS, total, STOCK_CHUNK_TOKENS)) + [total]:
                wav = xtts.hifigan_decoder(
                    latents[:, :end].float().to(self.loaded.torch_device),
                    g=self.voice.speaker_embedding.to(self.loaded.torch_device),
                )
                part, previous, overlap = xtts.handle_chunks(
                    wav.squeeze(), previous, overlap, 1024, is_final=end == total
                )
                stock_parts.append(part.float().cpu().numpy())
        stock = np.concatenate(stock_parts)
        report = {
            "snr_vs_full_decode_db": snr_db(ours, full),
            "stock_snr_vs_full_decode_db": snr_db(stock, full),
            "snr_tokens": int(total),
        }
        if self.loaded.precision != "fp32":
            # The faster precision against fp32 on the same (fp32 greedy) tokens.
            import dataclasses

            from xtts_desktop.engine.stream import Synthesizer

            fp32 = Synthesizer(dataclasses.replace(self.loaded, precision="fp32"))
            tokens, reference = fp32.synthesize_segment_tokens(
                segment.text, self.voice, self.language, settings
            )
            fast = self.synthesizer.latents_for_tokens(
                segment.text, tokens, self.voice, self.language
            )
            report["precision_snr_latents_db"] = snr_db(
                fast.float().flatten().cpu().numpy(), reference.float().flatten().cpu().numpy()
            )
            report["precision_snr_audio_db"] = snr_db(
                fp32.decode_full(fast, self.voice), fp32.decode_full(reference, self.voice)
            )
        return report


def measure_player_overhead(bench: Bench, runs: int, device: str | None) -> dict[str, Any]:
    """The app's own overhead: an engine chunk made -> its first sample in the device callback.

    Each run streams the text's first sentence into the real player, as `say` does, and
    takes the time from the first chunk's production to the callback that first read it.
    """
    from xtts_desktop.audio.player import Player
    from xtts_desktop.engine.stream import GenerationSettings

    settings = GenerationSettings.from_model(
        bench.loaded, seed=bench.seed, max_tokens_per_segment=12
    )
    handoffs, underruns, latency = [], 0, 0.0
    # The hand-off itself: without the start-up buffer's deliberate hold (a policy, which
    # waits for audio on a slow machine), so what is left is the app's own overhead.
    with Player(device=device, start_buffer_seconds=0) as player:
        for _ in range(runs):
            produced = None
            for chunk in bench.synthesizer.stream_segments(
                bench.segments[:1], bench.voice, bench.language, settings
            ):
                if produced is None:
                    produced = chunk.produced_at
                player.write(chunk.samples)
                if not player.is_playing:
                    player.start()
            player.end_of_input()
            player.wait_finished(timeout=player.buffered_seconds + 10.0)
            if player.first_sample_time is not None and produced is not None:
                handoffs.append((player.first_sample_time - produced) * 1000)
            underruns += player.underruns
            latency = player.output_latency
    return {
        "handoff_ms_median": statistics.median(handoffs) if handoffs else None,
        "handoff_ms_max": max(handoffs) if handoffs else None,
        "runs": len(handoffs),
        "underruns": underruns,
        "device_output_latency_ms": latency * 1000,
    }


def snr_db(signal: np.ndarray, reference: np.ndarray) -> float:
    n = min(len(signal), len(reference))
    if n == 0:
        return float("nan")
    # A length difference counts as error: the missing part is all noise.
    error = np.sum((signal[:n].astype(np.float64) - reference[:n]) ** 2)
    error += np.sum(signal[n:].astype(np.float64) ** 2) + np.sum(
        reference[n:].astype(np.float64) ** 2
    )
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(error, 1e-30)))


def machine_info(loaded: Any) -> dict[str, Any]:
    import torch

    info = {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "device": loaded.device.name,
        "precision": loaded.precision,
        "python": platform.python_version(),
    }
    if loaded.device.torch_device == "cuda":
        info["cuda"] = torch.version.cuda
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _median(records: list[RunRecord]) -> dict[str, Any]:
    summaries = [r.summary() for r in records]
    result: dict[str, Any] = {}
    for key in summaries[0]:
        values = [s[key] for s in summaries if s[key] is not None]
        result[key] = statistics.median(values) if values else None
    result["runs"] = len(records)
    return result


def _ratio(ours: float | None, stock: float | None) -> float | None:
    return ours / stock if ours is not None and stock else None


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from xtts_desktop import config
    from xtts_desktop.engine.model import load_model
    from xtts_desktop.engine.random_model import cached_random_model
    from xtts_desktop.engine.voices import builtin_voices

    if args.runs < 1:
        raise UserError("--runs must be at least 1.")
    text = DEFAULT_TEXT
    if args.file:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"Cannot read {args.file} as UTF-8 text ({error}).") from None
    elif args.text:
        text = args.text
    model_dir = getattr(args, "model_dir", None)
    if args.random_weights:
        if model_dir:
            raise UserError("Use either --model-dir or --random-weights, not both.")
        model_dir = cached_random_model(config.cache_dir(), args.random_weights)
    loaded = load_model(
        model_dir,
        device=getattr(args, "device", "auto"),
        precision=getattr(args, "precision", "auto"),
    )
    voices = builtin_voices(loaded)
    if not voices:
        raise UserError("The model has no built-in speakers to benchmark with.")
    voice = next(iter(voices.values()))
    bench = Bench(loaded, voice, args.language, text, args.seed)
    progress = (
        (lambda message: print(message, file=sys.stderr, flush=True))
        if not args.quiet
        else (lambda _m: None)
    )

    progress(f"bench: {loaded.describe()}, {len(bench.segments)} sentences, warm-up...")
    with torch.inference_mode():
        bench.run_stock()
        bench.run_ours()
        stock_runs, our_runs = [], []
        for number in range(args.runs):
            # Interleaved, so drift in the machine's load hits both variants alike.
            stock_runs.append(bench.run_stock())
            our_runs.append(bench.run_ours())
            stock_run, our_run = stock_runs[-1], our_runs[-1]
            progress(
                f"bench: run {number + 1}/{args.runs}: first chunk stock "
                f"{stock_run.time_to_first_chunk_ms:.0f} ms, ours {our_run.time_to_first_chunk_ms:.0f} ms; "
                f"total stock {stock_run.synthesis_seconds:.1f} s, ours {our_run.synthesis_seconds:.1f} s"
            )
        snr = bench.snr_report()
    stock, ours = _median(stock_runs), _median(our_runs)
    player = (
        measure_player_overhead(bench, args.player_runs, args.output_device)
        if args.player_runs
        else None
    )
    ours["snr_vs_full_decode_db"] = snr["snr_vs_full_decode_db"]
    for key in ("precision_snr_latents_db", "precision_snr_audio_db"):
        if key in snr:
            ours[key] = snr[key]
    stock["snr_vs_full_decode_db"] = snr["stock_snr_vs_full_decode_db"]
    ratios = {
        key: _ratio(ours[key], stock[key])
        for key in (
            "time_to_first_chunk_ms",
            "synthesis_seconds",
            "ms_per_token",
            "decoder_ms_per_chunk",
            "rtf",
        )
    }
    caps = [bench.token_cap(s.text) for s in bench.segments]
    report = {
        "stock": stock,
        "ours": ours,
        "ratios": ratios,
        "machine": {
            **machine_info(loaded),
            "stock_threads": bench.default_threads,
            "engine_threads": bench.engine_threads,
        },
        "model": "random-weights-" + args.random_weights
        if args.random_weights
        else str(loaded.model_dir),
        "text_characters": len(text),
        "sentences": len(bench.segments),
        "token_cap": (
            f"each sentence capped at ceil(1.4 x its text tokens) GPT tokens (random weights): {caps}"
            if loaded.is_random_weights
            else "none (the model stops by itself)"
        ),
        "stock_variant": f"coqui Xtts.inference_stream, stream_chunk_size={STOCK_CHUNK_TOKENS}, sentence by sentence",
        "seed": args.seed,
        "snr_tokens": snr["snr_tokens"],
        "player": player,
        "curves": {
            "stock": stock_runs[len(stock_runs) // 2].curve,
            "ours": our_runs[len(our_runs) // 2].curve,
        },
    }
    if args.plot:
        plot(report, Path(args.plot))
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    """Audio produced against wall time, first chunks marked: stock and ours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=110)
    for name, colour in (("stock", "#c0504d"), ("ours", "#2f6fbf")):
        curve = report["curves"][name]
        if not curve:
            continue
        times = [0.0] + [t for t, _ in curve]
        audio = [0.0] + [a for _, a in curve]
        label = f"{name}: first chunk {report[name]['time_to_first_chunk_ms']:.0f} ms"
        axis.step(times, audio, where="post", color=colour, label=label)
        axis.plot([times[1]], [audio[1]], "o", color=colour)
    limit = max(max((t for t, _ in report["curves"][n]), default=0) for n in ("stock", "ours"))
    axis.plot([0, limit], [0, limit], ":", color="grey", label="real time")
    axis.set_xlabel("wall time since start (s)")
    axis.set_ylabel("audio produced (s)")
    axis.set_title(
        f"{report['machine']['device']}, {report['machine']['precision']}, {report['model']}"
    )
    axis.legend(loc="upper left")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def cmd_bench(args: argparse.Namespace) -> int:
    report = run_benchmark(args)
    if args.json:
        printable = dict(report)
        if not args.curves:
            printable.pop("curves")
        print(json.dumps(printable, sort_keys=True))
        return 0
    print(format_table(report))
    return 0


def format_table(report: dict[str, Any]) -> str:
    rows = [
        ("time to first chunk (ms)", "time_to_first_chunk_ms", "{:.0f}"),
        ("GPT ms per token", "ms_per_token", "{:.1f}"),
        ("decoder ms per chunk", "decoder_ms_per_chunk", "{:.1f}"),
        ("synthesis (s)", "synthesis_seconds", "{:.2f}"),
        ("audio (s)", "audio_seconds", "{:.2f}"),
        ("real-time factor", "rtf", "{:.3f}"),
        ("peak RSS (MB)", "peak_rss_mb", "{:.0f}"),
        ("peak GPU memory (MB)", "peak_gpu_mb", "{:.0f}"),
        ("SNR vs full decode (dB)", "snr_vs_full_decode_db", "{:.1f}"),
    ]

    def cell(value: Any, pattern: str) -> str:
        return pattern.format(value) if isinstance(value, (int, float)) else "-"

    lines = [f"{'':28} {'stock':>10} {'ours':>10} {'ours/stock':>11}"]
    for label, key, pattern in rows:
        ratio = report["ratios"].get(key)
        lines.append(
            f"{label:28} {cell(report['stock'].get(key), pattern):>10} {cell(report['ours'].get(key), pattern):>10} "
            f"{cell(ratio, '{:.2f}x'):>11}"
        )
    lines.append(
        f"machine: {report['machine']['processor']} · {report['machine']['device']} · {report['machine']['precision']}"
    )
    lines.append(f"token cap: {report['token_cap']}")
    if report.get("player"):
        p = report["player"]
        lines.append(
            f"player hand-off (chunk made -> first sample in the callback): median "
            f"{cell(p['handoff_ms_median'], '{:.1f}')} ms, max {cell(p['handoff_ms_max'], '{:.1f}')} ms "
            f"over {p['runs']} plays, "
            f"{p['underruns']} underruns; device output latency {p['device_output_latency_ms']:.0f} ms"
        )
    return "\n".join(lines)


def register(commands: Any, add_model_options: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = commands.add_parser(
        "bench", help="measure stock coqui-tts streaming against this app's engine"
    )
    add_model_options(parser)
    parser.add_argument(
        "--random-weights",
        choices=["tiny", "full"],
        help="benchmark a random-weight model of this size",
    )
    parser.add_argument(
        "--text", help="the text to synthesize (default: a three-sentence paragraph)"
    )
    parser.add_argument("--file", help="read the text from a UTF-8 file")
    parser.add_argument("--language", default="en")
    parser.add_argument(
        "--runs", type=int, default=3, help="measured runs after one warm-up (default: 3)"
    )
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--curves", action="store_true", help="include the audio-over-time curves in the JSON"
    )
    parser.add_argument("--plot", help="write a PNG plot of audio produced against wall time")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument(
        "--player-runs", type=int, default=0, help="also measure the player's hand-off over N plays"
    )
    parser.add_argument("--output-device", help="audio output for --player-runs")
    parser.set_defaults(handler=cmd_bench)
