"""The `xtts-desktop` command: the window by default, and say, voices, download, bench, serve."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import logging.handlers
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xtts_desktop import config
from xtts_desktop.engine.model import DEVICES, PRECISIONS
from xtts_desktop.errors import Cancelled, UserError

logger = logging.getLogger("xtts_desktop")


# ----- logging ------------------------------------------------------------------------------


_installed_handlers: list[logging.Handler] = []


def setup_logging(verbose: bool = False) -> Path | None:
    """Everything to the log file; only our own warnings (or all, with -v) to stderr."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    root = logging.getLogger()
    # Idempotent: main() may run more than once in a process (tests, the window's restart).
    while _installed_handlers:
        handler = _installed_handlers.pop()
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    log_file = None
    try:
        directory = config.log_dir()
        directory.mkdir(parents=True, exist_ok=True)
        log_file = directory / "xtts-desktop.log"
        handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=2_000_000, backupCount=2, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        _installed_handlers.append(handler)
    except OSError:
        log_file = None
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    if not verbose:
        # Our own warnings, one line each; tracebacks go to the log file only.
        console.addFilter(
            lambda record: record.name.startswith("xtts_desktop") and not record.exc_info
        )
    root.addHandler(console)
    _installed_handlers.append(console)
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(TTS|torch|transformers)\b.*")
    logging.captureWarnings(True)
    return log_file


def eprint(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ----- shared helpers -----------------------------------------------------------------------


def read_text_argument(text: str | None, file: str | None) -> str:
    """TEXT, or --file PATH, or --file - (standard input), decoded as UTF-8."""
    if text is not None and file is not None:
        raise UserError("Give the text either as an argument or with --file, not both.")
    if file is None:
        if text is None:
            raise UserError(
                "There is nothing to read: give TEXT or --file PATH (or --file - for standard input)."
            )
        return text
    if file == "-":
        data = sys.stdin.buffer.read()
        label = "standard input"
    else:
        path = Path(file)
        if path.is_dir():
            raise UserError(f"{path} is a folder, not a text file.")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UserError(f"The file {path} does not exist.") from None
        except OSError as error:
            raise UserError(
                f"The file {path} cannot be read ({error.strerror or error})."
            ) from None
        label = str(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{label} is not UTF-8 text.") from None


AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


def check_output_path(out: str) -> Path:
    """Refuse an --out path before any synthesis: wrong extension, missing or unwritable folder."""
    path = Path(out).expanduser()
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise UserError(f"Cannot write {path.name}: use a .wav, .flac or .ogg file name.")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name to write the audio to.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"Cannot write {path}: the folder {parent} does not exist.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"Cannot write {path}: the folder {parent} is not writable.")
    return path


def load_engine(args: argparse.Namespace):
    """The model and its synthesizer, with the device warning shown to the user."""
    from xtts_desktop.engine.model import load_model
    from xtts_desktop.engine.stream import Synthesizer

    loaded = load_model(
        args.model_dir, device=args.device, precision=getattr(args, "precision", "auto")
    )
    if loaded.device.warning:
        eprint(f"warning: {loaded.device.warning}")
    if loaded.is_random_weights:
        eprint("note: this is a random-weight test model; it speaks noise.")
    return loaded, Synthesizer(loaded)


def read_samples(paths: list[str]):
    from xtts_desktop.audio.files import read_audio
    from xtts_desktop.engine.voices import SampleAudio

    samples = []
    for path in paths:
        # XTTS uses at most 30 s of each sample: read no more than that.
        audio, rate = read_audio(Path(path), max_seconds=30.0)
        samples.append(SampleAudio(audio, rate, label=f"The sample {Path(path).name}"))
    return samples


def voice_library():
    from xtts_desktop.engine.voices import VoiceLibrary

    return VoiceLibrary(config.voices_dir())


# ----- say ----------------------------------------------------------------------------------


class _Progress:
    """A line on stderr per segment for texts of several segments."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled and total > 2
        self.tty = sys.stderr.isatty()

    def update(self, done: int, audio_seconds: float) -> None:
        if not self.enabled:
            return
        message = (
            f"[{done}/{self.total}] {100 * done // self.total}% · {audio_seconds:.1f} s of audio"
        )
        if self.tty:
            print(
                "\r" + message, end="" if done < self.total else "\n", file=sys.stderr, flush=True
            )
        else:
            eprint(message)


def cmd_say(args: argparse.Namespace) -> int:
    from xtts_desktop.engine import text as text_module

    text = read_text_argument(args.text, args.file)
    if not text.strip():
        raise UserError("There is nothing to read: the text is empty.")
    language = text_module.normalize_language(args.language)
    out = check_output_path(args.out) if args.out else None
    if args.voice and args.voice_sample:
        raise UserError("Use either --voice or --voice-sample, not both.")
    if args.server:
        return _say_remote(args, text, language, out)
    text_module.check_language_support(language)
    samples = read_samples(args.voice_sample) if args.voice_sample else None
    from xtts_desktop.engine.stream import GenerationSettings, StreamStats
    from xtts_desktop.engine.voices import clone_voice, resolve_voice

    loaded, synthesizer = load_engine(args)
    segments = synthesizer.segments(text, language)
    if samples:
        voice = clone_voice(loaded, "sample", samples)
    else:
        voice = resolve_voice(loaded, voice_library(), args.voice)
    settings = GenerationSettings.from_model(
        loaded,
        speed=args.speed,
        seed=args.seed,
        greedy=args.greedy,
        max_tokens_per_segment=args.max_tokens,
    )
    cancel = threading.Event()
    stats = StreamStats(sample_rate=synthesizer.sample_rate)
    progress = _Progress(len(segments), enabled=True)

    audio = _local_audio(synthesizer, segments, voice, language, settings, cancel, stats, progress)
    report = _play_and_write(args, audio, stats, cancel, out)
    report.update(
        {"device": loaded.device.name, "precision": loaded.precision, "voice": voice.name}
    )
    return _report(args, report, language, out)


def _local_audio(
    synthesizer: Any,
    segments: list,
    voice: Any,
    language: str,
    settings: Any,
    cancel: threading.Event,
    stats: Any,
    progress: Any,
) -> Iterator[Any]:
    """The engine's chunks as bare samples. Closing this closes the engine's stream at once:
    a suspended one would keep the synthesizer's lock."""
    stream = synthesizer.stream_segments(segments, voice, language, settings, cancel, stats)
    with contextlib.closing(stream):
        for chunk in stream:
            yield chunk.samples
            if chunk.segment_end:
                progress.update(stats.segments_done + 1, stats.audio_seconds)


def _say_remote(args: argparse.Namespace, text: str, language: str, out: Path | None) -> int:
    """The same, synthesized by `xtts-desktop serve` (or a Truss) over HTTP."""
    from xtts_desktop.remote import RemoteEngine, RemoteStats

    if args.voice_sample:
        raise UserError(
            "--voice-sample needs the local engine; save the voice on the server instead."
        )
    engine = RemoteEngine(
        args.server, api_key=args.api_key or os.environ.get("XTTS_DESKTOP_API_KEY") or None
    )
    cancel = threading.Event()
    stats = RemoteStats()
    chunks = engine.stream(
        text,
        args.voice,
        language,
        speed=args.speed,
        cancel=cancel,
        stats=stats,
        seed=args.seed,
        greedy=args.greedy or None,
    )
    report = _play_and_write(args, chunks, stats, cancel, out)
    report.update({"device": f"server {args.server}", "precision": None, "voice": args.voice})
    return _report(args, report, language, out)


def _play_and_write(
    args: argparse.Namespace, chunks: Any, stats: Any, cancel: threading.Event, out: Path | None
) -> dict[str, Any]:
    """Plays (unless --no-play) and writes (with --out) float32 chunks as they come.

    `chunks` is closed on every way out (an error, Ctrl+C, a device failure): an engine stream
    left suspended would hold the synthesizer, and a server stream its connection."""
    with contextlib.closing(chunks):
        return _play_and_write_chunks(args, chunks, stats, cancel, out)


def _play_and_write_chunks(
    args: argparse.Namespace, chunks: Any, stats: Any, cancel: threading.Event, out: Path | None
) -> dict[str, Any]:
    player = None
    if not args.no_play:
        from xtts_desktop.audio.player import Player

        player = Player(device=args.output_device)
    writer = None
    if out is not None:
        from xtts_desktop.audio.files import AudioFileWriter

        writer = AudioFileWriter(out, sample_rate=24000)
    completed = False
    try:
        if player is not None:
            # Started before synthesis: the player measures how fast the chunks come from
            # here, and holds the device on silence until enough is queued to play through.
            player.start()
        for samples in chunks:
            if writer is not None:
                writer.write(samples)
            if player is not None and not player.write(samples, cancelled=cancel.is_set):
                raise UserError(player.error or "Playback stopped.")
        if player is not None:
            player.end_of_input()
            # Bounded by the audio still to play plus a generous margin; never hangs.
            player.wait_finished(timeout=player.buffered_seconds + 10.0)
            if player.error:
                raise UserError(player.error)
        if writer is not None:
            writer.close()
        completed = True
    except KeyboardInterrupt:
        cancel.set()
        raise
    finally:
        if writer is not None and not completed:
            writer.abort()
        if player is not None:
            player.close()
    report: dict[str, Any] = stats.as_dict()
    report.update({"time_to_first_audio_ms": None, "underruns": 0})
    if player is not None:
        first = player.first_sample_time
        report["time_to_first_audio_ms"] = (first - stats.started_at) * 1000 if first else None
        report["underruns"] = player.underruns
        report["output_latency_ms"] = player.output_latency * 1000
        report["handoff_latency_ms"] = player.handoff_latency_ms
    return report


def _report(
    args: argparse.Namespace, report: dict[str, Any], language: str, out: Path | None
) -> int:
    report.update({"language": language, "out": str(out) if out else None})
    if args.json:
        print(json.dumps(report, indent=None, sort_keys=True))
        return 0
    rtf = report.get("rtf")
    first = report.get("time_to_first_chunk_ms")
    eprint(
        f"{report['audio_seconds']:.1f} s of audio in {report['synthesis_seconds']:.1f} s"
        + (f" (RTF {rtf:.2f})" if rtf is not None else "")
        + (f"; first chunk after {first:.0f} ms" if first is not None else "")
        + (f"; saved {out}" if out else "")
    )
    return 0


# ----- voices -------------------------------------------------------------------------------


def cmd_voices(args: argparse.Namespace) -> int:
    from xtts_desktop.engine.voices import builtin_speaker_names

    library = voice_library()
    if args.voices_command in (None, "list"):
        from xtts_desktop.engine.model import locate_model

        location = locate_model(args.model_dir)
        builtins = builtin_speaker_names(location.path)
        if args.json:
            print(json.dumps({"builtin": builtins, "saved": library.names()}))
            return 0
        print("Built-in speakers:" if builtins else "Built-in speakers: (no model found)")
        for name in builtins:
            print(f"  {name}")
        saved = library.list()
        print(
            "Saved voices:"
            if saved
            else "Saved voices: none yet (add one with 'xtts-desktop voices add NAME SAMPLE')"
        )
        for info in saved:
            print(f"  {info.name}    {info.created}")
        return 0
    if args.voices_command == "add":
        from xtts_desktop.engine.voices import Voice, check_voice_name, clone_voice

        name = check_voice_name(args.name)
        if library.find(name) is not None:
            raise UserError(f"A voice named '{name}' already exists; choose another name.")
        samples = read_samples(args.samples)
        loaded, _ = load_engine(args)
        voice = clone_voice(loaded, name, samples)
        path = library.save(
            Voice(name, voice.gpt_cond_latent, voice.speaker_embedding, "saved", voice.metadata)
        )
        print(f"Saved the voice '{name}' ({path}).")
        return 0
    if args.voices_command == "remove":
        library.remove(args.name)
        print(f"Removed the voice '{args.name}'.")
        return 0
    if args.voices_command == "rename":
        library.rename(args.old, args.new)
        print(f"Renamed '{args.old}' to '{args.new}'.")
        return 0
    if args.voices_command == "export":
        library.export_file(args.name, Path(args.path))
        print(f"Exported '{args.name}' to {args.path}.")
        return 0
    if args.voices_command == "import":
        voice = library.import_file(Path(args.path), args.name)
        print(f"Imported the voice '{voice.name}'.")
        return 0
    raise UserError(f"Unknown voices command '{args.voices_command}'.")


# ----- the window ---------------------------------------------------------------------------


def cmd_gui(args: argparse.Namespace) -> int:
    try:
        from xtts_desktop.gui.app import main as gui_main
    except ImportError as error:
        raise UserError(f"The window cannot start ({error}).") from None
    return gui_main(model_dir=args.model_dir, device=args.device)


# ----- parser -------------------------------------------------------------------------------


def _add_model_options(parser: argparse.ArgumentParser, top_level: bool = False) -> None:
    # On subcommands the default is SUPPRESS, so `xtts-desktop --device cpu say ...` keeps cpu.
    def default(value: Any) -> Any:
        return value if top_level else argparse.SUPPRESS

    parser.add_argument(
        "--model-dir",
        default=default(None),
        help="folder holding XTTS v2 (config.json, model.pth, vocab.json, speakers_xtts.pth)",
    )
    parser.add_argument(
        "--device",
        default=default("auto"),
        choices=list(DEVICES),
        help="where XTTS runs (default: auto)",
    )
    parser.add_argument(
        "--precision",
        default=default("auto"),
        choices=list(PRECISIONS),
        help="GPT precision (default: auto)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xtts-desktop",
        description=(
            "Read text aloud with Coqui XTTS v2, streaming, on your own GPU. "
            "Without a command, opens the window."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log everything to stderr")
    _add_model_options(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    say = commands.add_parser("say", help="speak text (and/or write it to an audio file)")
    say.add_argument("text", nargs="?", help="the text to speak")
    say.add_argument("--file", help="read the text from a UTF-8 file ('-' for standard input)")
    say.add_argument("--voice", help="a built-in speaker or a saved voice")
    say.add_argument(
        "--voice-sample", nargs="+", metavar="PATH", help="clone the voice from these recordings"
    )
    say.add_argument("--language", default="en", help="language code (default: en)")
    say.add_argument(
        "--speed", type=float, default=1.0, help="speaking speed, 0.5 to 2 (default: 1)"
    )
    say.add_argument("--out", help="write the whole text to this file (.wav, .flac or .ogg)")
    say.add_argument("--no-play", action="store_true", help="do not play through the speakers")
    say.add_argument("--output-device", help="audio output device (index or name)")
    say.add_argument("--seed", type=int, help="make sampling reproducible")
    say.add_argument(
        "--greedy", action="store_true", help="no sampling: always the most likely token"
    )
    say.add_argument("--max-tokens", type=int, help=argparse.SUPPRESS)
    say.add_argument(
        "--json", action="store_true", help="print timings as one JSON object at the end"
    )
    say.add_argument(
        "--server", metavar="URL", help="synthesize on an xtts-desktop server instead of here"
    )
    say.add_argument("--api-key", help="the server's API key (or XTTS_DESKTOP_API_KEY)")
    _add_model_options(say)
    say.set_defaults(handler=cmd_say)

    voices = commands.add_parser(
        "voices", help="list, add, remove, rename, export or import voices"
    )
    _add_model_options(voices)
    voices.add_argument("--json", action="store_true", help="list as JSON")
    voice_commands = voices.add_subparsers(dest="voices_command", metavar="ACTION")
    voice_commands.add_parser("list", help="built-in speakers and saved voices")
    add = voice_commands.add_parser("add", help="clone a voice from recordings and save it")
    add.add_argument("name")
    add.add_argument("samples", nargs="+", metavar="SAMPLE")
    _add_model_options(add)
    remove = voice_commands.add_parser("remove", help="delete a saved voice")
    remove.add_argument("name")
    rename = voice_commands.add_parser("rename", help="rename a saved voice")
    rename.add_argument("old")
    rename.add_argument("new")
    export = voice_commands.add_parser("export", help="write a saved voice to a .safetensors file")
    export.add_argument("name")
    export.add_argument("path")
    import_ = voice_commands.add_parser("import", help="add a voice from a .safetensors file")
    import_.add_argument("path")
    import_.add_argument("--name", help="save it under this name")
    voices.set_defaults(handler=cmd_voices)

    for register in _EXTRA_COMMANDS:
        register(commands, _add_model_options)
    parser.set_defaults(handler=cmd_gui)
    return parser


# Later commands (download, bench, serve) register themselves here from their own modules.
_EXTRA_COMMANDS: list = []


def _register_optional_commands() -> None:
    import importlib

    _EXTRA_COMMANDS.clear()
    for module_name in (
        "xtts_desktop.download_cli",
        "xtts_desktop.bench",
        "xtts_desktop.server.cli",
    ):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                continue
            raise
        _EXTRA_COMMANDS.append(module.register)


def main(argv: list[str] | None = None) -> int:
    _register_optional_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    log_file = setup_logging(args.verbose)
    # Subcommand options fall back to the global ones.
    try:
        return int(args.handler(args) or 0)
    except UserError as error:
        eprint(f"error: {error.message}")
        return error.exit_code
    except (KeyboardInterrupt, Cancelled):
        eprint("stopped.")
        return 130
    except BrokenPipeError:
        return 1
    except Exception:
        logger.exception("unexpected error")
        where = f" (details in {log_file})" if log_file else ""
        eprint(f"error: something went wrong inside XTTS Desktop{where}.")
        return 1


if __name__ == "__main__":
    sys.exit(main())
