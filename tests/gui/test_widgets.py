"""Parts of the window on their own: latency text, buffer plot, emoji-safe highlight, voices."""

from __future__ import annotations

from PySide6.QtCore import Qt

from xtts_desktop.gui.jobs import ChunkSpan, PlayJob, PlayRequest, SegmentSpan
from xtts_desktop.gui.widgets.latency_panel import BufferPlot, LatencyReading, format_reading
from xtts_desktop.gui.widgets.text_view import PositionMap, TextView, classify_files
from xtts_desktop.gui.widgets.voice_picker import VoicePicker
from xtts_desktop.gui.worker import unique_voice_name


def test_latency_text_reads_like_the_issue_says():
    reading = LatencyReading(412.4, 35.2, 0.4213, 1.84, 0, "CPU fp32")
    assert format_reading(reading) == (
        "First audio 412 ms (+ device 35 ms) · RTF 0.42 · 1.8 s ahead · 0 underruns · CPU fp32"
    )
    waiting = format_reading(LatencyReading(underruns=1, engine="NVIDIA H100 fp16"))
    assert waiting == "First audio … · RTF – · 0.0 s ahead · 1 underrun · NVIDIA H100 fp16"


def test_buffer_plot_keeps_a_window_of_time_and_marks_dry_spells(qtbot):
    plot = BufferPlot(window_s=10.0)
    qtbot.addWidget(plot)
    for step in range(300):  # 30 s at 10 Hz
        plot.add(buffered_seconds=step % 20 / 10, underruns=step // 100, now=step / 10)
    times = [t for t, _ in plot.points]
    assert times[0] >= 29.9 - 10.0 and times[-1] == 29.9
    assert len(plot._underrun_spans) == 1  # the one at 20 s; the one at 10 s aged out
    plot.resize(300, 70)
    assert not plot.grab().isNull()  # paints without error
    plot.clear()
    assert plot.points == []


def test_positions_map_python_indices_to_qt_with_emoji(qtbot):
    text = "Hi 👋 there. Next 🎉🎉 one."
    mapping = PositionMap(text)
    for index in range(len(text) + 1):
        assert mapping.from_qt(mapping.to_qt(index)) == index
    view = TextView()
    qtbot.addWidget(view)
    view.setPlainText(text)
    start = text.index("Next")
    view.set_highlight(start, len(text))
    selection = view.extraSelections()[0]
    assert selection.cursor.selectedText() == "Next 🎉🎉 one."
    view.move_cursor_to(text.index("one"))
    assert view.cursor_index() == text.index("one")


def test_files_are_told_apart_by_their_extension(tmp_path):
    audio, documents, other = classify_files(
        [tmp_path / "me.WAV", tmp_path / "book.epub", tmp_path / "notes.md", tmp_path / "x.pdf"]
    )
    assert [p.name for p in audio] == ["me.WAV"]
    assert [p.name for p in documents] == ["book.epub", "notes.md"]
    assert [p.name for p in other] == ["x.pdf"]


def test_voice_picker_groups_cannot_be_chosen(qtbot):
    picker = VoicePicker()
    qtbot.addWidget(picker)
    picker.set_voices(["Ana", "Bob"], ["Mine"], select="mine")
    assert picker.current_voice() == "Mine" and picker.current_kind() == "saved"
    headers = [row for row in range(picker.count()) if picker.itemData(row) is None]
    assert headers == [0, 3]
    for row in headers:
        assert not picker.model().item(row).flags() & Qt.ItemFlag.ItemIsSelectable
    picker.set_voices(["Ana", "Bob"], [], select="gone")
    assert picker.current_voice() == "Ana"  # first real voice, never a header


def test_new_voice_names_are_unique():
    assert unique_voice_name("my_voice", []) == "my voice"
    assert unique_voice_name("speaker", ["Speaker", "speaker 2"]) == "speaker 3"


def test_chunk_lookup_follows_stream_offsets():
    job = PlayJob(PlayRequest(1, "A. B.", "en", "", 1.0, ""))
    job.segments = (SegmentSpan(0, 0, 2), SegmentSpan(1, 3, 5))
    job.add_chunk(ChunkSpan(1, 0, 100, 0, 0, 2))
    job.add_chunk(ChunkSpan(1, 100, 50, 1, 3, 5))
    assert job.chunk_at(0).segment_index == 0
    assert job.chunk_at(99).segment_index == 0
    assert job.chunk_at(100).segment_index == 1
    assert job.chunk_at(10_000).segment_index == 1  # the end holds the last sentence
    assert job.segment_at_char(2).index == 1  # between sentences: the next one
    assert job.segment_at_char(3).index == 1
    assert job.segment_at_char(9) is None
