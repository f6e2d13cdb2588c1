"""`xtts-desktop say` and `voices` end to end, and every bad input: one line, exit 2, no file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.pulse import Recorder, active_span, align, below, private_sink, pulse_available
from xtts_desktop.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    *args: str, stdin: bytes | None = None, sink: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if sink:
        env["PULSE_SINK"] = sink
    return subprocess.run(
        [sys.executable, "-m", "xtts_desktop", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


def test_say_plays_and_writes_the_same_audio(tiny_model_dir, tmp_path):
    out = tmp_path / "hello.wav"
    if not pulse_available():
        pytest.skip("PulseAudio is not running: run the tests with `make test`")
    with private_sink("xtts_cli_test") as sink, Recorder(sink) as recorder:
        result = run_cli(
            "say", "Hello there.", "--model-dir", str(tiny_model_dir), "--device", "cpu",
            "--precision", "fp32", "--seed", "3", "--out", str(out), "--json",
            sink=sink,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    written, rate = soundfile.read(out, dtype="float32")
    info = soundfile.info(out)
    assert (rate, info.channels, info.subtype) == (24000, 1, "PCM_16")
    assert abs(len(written) / rate - report["audio_seconds"]) < 0.01
    for key in ("time_to_first_chunk_ms", "time_to_first_audio_ms", "synthesis_seconds", "rtf"):
        assert report[key] > 0, key
    assert report["time_to_first_audio_ms"] >= report["time_to_first_chunk_ms"]
    assert report["underruns"] >= 0 and report["device"].startswith("CPU")
    # What reached the speaker is what was written to the file.
    recording = recorder.samples()
    start, end = active_span(recording, 24000, threshold=0.005)
    assert end - start > 0.5 * len(written)
    if report["underruns"] == 0:
        # Below 9 kHz: the random-weight model's noise sits mostly where PulseAudio's
        # resampling cuts (tests/pulse.py, below()).
        alignment = align(below(written), below(recording))
        assert alignment.correlation > 0.9, (report, alignment)
    else:
        # A machine too loaded to keep up inserts silence between chunks: then at least all
        # of the audio must have reached the sink, gaps and all.
        assert end - start >= len(written) * 0.95


def test_say_no_play_reads_a_file_and_stdin(tiny_model_dir, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("First sentence. Second one here.\n", encoding="utf-8")
    out = tmp_path / "out.flac"
    result = run_cli(
        "say", "--file", str(text), "--model-dir", str(tiny_model_dir), "--device", "cpu",
        "--no-play", "--out", str(out), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["time_to_first_audio_ms"] is None
    assert report["segments"] == 2
    assert soundfile.info(out).format == "FLAC"
    piped = run_cli(
        "say", "--file", "-", "--model-dir", str(tiny_model_dir), "--device", "cpu", "--no-play",
        "--out", str(tmp_path / "piped.wav"),
        stdin=b"Piped text.",
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert (tmp_path / "piped.wav").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_greedy_output_is_reproducible(tiny_model_dir, tmp_path):
    paths = [tmp_path / "a.wav", tmp_path / "b.wav"]
    for path in paths:
        assert main(
            ["say", "Same words twice.", "--model-dir", str(tiny_model_dir), "--device", "cpu",
             "--greedy", "--no-play", "--out", str(path)]
        ) == 0  # fmt: skip
    first, second = (soundfile.read(path, dtype="float32")[0] for path in paths)
    assert np.array_equal(first, second)


@pytest.fixture
def broken_models(tiny_model_dir, tmp_path) -> dict[str, Path]:
    incomplete = tmp_path / "incomplete"
    shutil.copytree(tiny_model_dir, incomplete)
    (incomplete / "vocab.json").unlink()
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_model_dir, corrupt)
    data = (corrupt / "model.pth").read_bytes()
    (corrupt / "model.pth").write_bytes(data[: len(data) // 3])
    return {"missing": tmp_path / "no-model-here", "incomplete": incomplete, "corrupt": corrupt}


def bad_inputs(
    model: Path, tmp: Path, speech: Path, broken: dict[str, Path]
) -> dict[str, tuple[list[str], str]]:
    binary = tmp / "binary.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    not_audio = tmp / "notes.wav"
    not_audio.write_text("this is not audio")
    silent = tmp / "silent.wav"
    soundfile.write(silent, np.zeros(24000 * 4, dtype=np.float32), 24000)
    short = tmp / "short.wav"
    samples, rate = soundfile.read(speech, dtype="float32")
    soundfile.write(short, samples[:rate], rate)
    locked = tmp / "not-a-folder"
    locked.write_text("a file where a folder should be")
    m = ["--model-dir", str(model), "--device", "cpu", "--no-play"]
    return {
        "empty text": (["say", "   ", *m], "nothing to read"),
        "no text at all": (["say", *m], "nothing to read"),
        "missing file": (["say", "--file", str(tmp / "missing.txt"), *m], "does not exist"),
        "undecodable file": (["say", "--file", str(binary), *m], "not UTF-8"),
        "unknown voice": (["say", "Hi.", "--voice", "Nobody", *m], "Unknown voice"),
        "unknown language": (["say", "Hi.", "--language", "xx", *m], "Unknown language"),
        "sample not audio": (["say", "Hi.", "--voice-sample", str(not_audio), *m], "notes.wav"),
        "silent sample": (["say", "Hi.", "--voice-sample", str(silent), *m], "silent"),
        "short sample": (["say", "Hi.", "--voice-sample", str(short), *m], "speech"),
        "missing model": (
            ["say", "Hi.", "--model-dir", str(broken["missing"]), "--no-play"],
            "No XTTS v2 model",
        ),
        "incomplete model": (
            ["say", "Hi.", "--model-dir", str(broken["incomplete"]), "--no-play"],
            "vocab.json",
        ),
        "corrupt model": (
            ["say", "Hi.", "--model-dir", str(broken["corrupt"]), "--no-play"],
            "corrupt",
        ),
        "unwritable output": (
            ["say", "Hi.", *m, "--out", str(locked / "out.wav")],
            "does not exist",
        ),
        "output is a folder": (["say", "Hi.", *m, "--out", str(tmp)], "Cannot write"),
        "bad extension": (["say", "Hi.", *m, "--out", str(tmp / "out.xyz")], ".wav, .flac or .ogg"),
        "speed out of range": (["say", "Hi.", "--speed", "5", *m], "Speed"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty text", "no text at all", "missing file", "undecodable file", "unknown voice",
        "unknown language", "sample not audio", "silent sample", "short sample", "missing model",
        "incomplete model", "corrupt model", "unwritable output", "output is a folder",
        "bad extension", "speed out of range",
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_line(
    case, tiny_model_dir, tmp_path, speech_sample, broken_models, capsys
):
    args, expected = bad_inputs(tiny_model_dir, tmp_path, speech_sample, broken_models)[case]
    out = tmp_path / "result.wav"
    if "--out" not in args:
        args = [*args, "--out", str(out)]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2
    lines = [
        line
        for line in captured.err.splitlines()
        # Besides the error: at most the warnings and notes every run prints (CPU, test model).
        if line.strip() and not line.startswith(("warning:", "note:"))
    ]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in captured.err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".result")]


def test_a_real_process_prints_no_traceback(tmp_path):
    result = run_cli("say", "Hi.", "--model-dir", str(tmp_path / "none"), "--no-play")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: No XTTS v2 model found")
    assert "Traceback" not in result.stderr


def test_voices_add_list_rename_remove(tiny_model_dir, speech_sample, capsys):
    m = ["--model-dir", str(tiny_model_dir), "--device", "cpu"]
    assert main(["voices", "add", "Robot", str(speech_sample), *m]) == 0
    assert main(["voices", "--json", *m]) == 0
    listing = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert listing["saved"] == ["Robot"]
    assert len(listing["builtin"]) >= 3
    assert main(["voices", "rename", "Robot", "Android"]) == 0
    out = Path(os.environ["XTTS_DESKTOP_DATA_DIR"]) / "voices"
    assert [p.suffix for p in out.iterdir()] == [".safetensors"]
    assert (
        main(
            [
                "say",
                "Hi.",
                "--voice",
                "android",
                *m,
                "--no-play",
                "--out",
                str(out.parent / "a.wav"),
            ]
        )
        == 0
    )
    assert main(["voices", "remove", "Android"]) == 0
    assert main(["voices", "remove", "Android"]) == 2
    assert "no saved voice" in capsys.readouterr().err
