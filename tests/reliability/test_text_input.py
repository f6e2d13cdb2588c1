"""Text with nothing to say, on the command line: one sentence and exit 2, not silence.

The segmentation itself (any Unicode, emoji, control characters, right-to-left and mixed
scripts, 1 MB without punctuation) is property-tested in tests/engine/test_text.py."""

from __future__ import annotations

import pytest

from xtts_desktop.cli import main

NOTHING = "There is nothing to read: the text has no letters or digits."


@pytest.mark.parametrize(
    "text",
    ["!!! ... ???", "🙂🙃🎉 👍🏽", "\u200b\u200e\u202e\x07\x1b", "— – • · ‥ … ※"],
    ids=["punctuation", "emoji", "invisible-and-control", "symbols"],
)
def test_nothing_speakable_is_one_line_and_exit_2(text, tiny_model_dir, tmp_path, capsys):
    source = tmp_path / "text.txt"
    source.write_text(text, encoding="utf-8")
    out = tmp_path / "out.wav"
    args = ["--model-dir", str(tiny_model_dir), "--device", "cpu", "--no-play", "--out", str(out)]
    for command in (["say", text, *args], ["say", "--file", str(source), *args]):
        assert main(command) == 2
        err = capsys.readouterr().err
        lines = [
            line for line in err.splitlines()
            if line.strip() and not line.startswith(("warning:", "note:"))
        ]  # fmt: skip
        assert lines == [f"error: {NOTHING}"], err
    assert not out.exists()
