"""`xtts-desktop bench` runs on the tiny model and its JSON holds together (no timing is asserted)."""

from __future__ import annotations

import json
import math

from xtts_desktop.cli import main


def test_bench_json_is_consistent(capsys, tmp_path):
    plot = tmp_path / "bench.png"
    code = main(
        [
            "bench", "--random-weights", "tiny", "--device", "cpu", "--precision", "fp32",
            "--runs", "1", "--json", "--quiet", "--text", "Hello there, how are you doing today? Fine.",
            "--plot", str(plot),
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"stock", "ours", "ratios", "machine"}
    for variant in ("stock", "ours"):
        numbers = report[variant]
        for key in (
            "time_to_first_chunk_ms",
            "ms_per_token",
            "decoder_ms_per_chunk",
            "synthesis_seconds",
        ):
            assert numbers[key] > 0, (variant, key)
        assert numbers["audio_seconds"] > 0.5
        assert math.isclose(
            numbers["rtf"], numbers["synthesis_seconds"] / numbers["audio_seconds"], rel_tol=1e-9
        )
        assert numbers["time_to_first_chunk_ms"] / 1000 <= numbers["synthesis_seconds"]
        assert numbers["peak_rss_mb"] > 100
    for key, ratio in report["ratios"].items():
        assert math.isclose(ratio, report["ours"][key] / report["stock"][key], rel_tol=1e-9), key
    # Our stream is the full decode of its tokens; stock's crossfaded re-decodes are not.
    assert report["ours"]["snr_vs_full_decode_db"] > 60
    assert report["ours"]["snr_vs_full_decode_db"] > report["stock"]["snr_vs_full_decode_db"]
    assert report["sentences"] == 2
    assert "1.4" in report["token_cap"]
    assert report["machine"]["device"].startswith("CPU")
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"
