"""The window on a remote engine: a real server on loopback, played into the PulseAudio null sink."""

from __future__ import annotations

import re
import socket
import time

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton, QToolButton

pytest.importorskip("uvicorn", reason="the server needs uvicorn and starlette")

from tests.gui.conftest import (  # noqa: E402
    AUDIO_TIMEOUT_MS,
    MODEL_TIMEOUT_MS,
    SignalLog,
    drop_files,
    loudest_window_rms,
)
from tests.pulse import Recorder, requires_pulse  # noqa: E402
from tests.server import running  # noqa: E402
from xtts_desktop import config  # noqa: E402
from xtts_desktop.engine.voices import Voice, VoiceLibrary, builtin_voices  # noqa: E402
from xtts_desktop.gui.worker import CLONE_NEEDS_LOCAL  # noqa: E402
from xtts_desktop.remote import RemoteEngine  # noqa: E402
from xtts_desktop.server.app import create_app  # noqa: E402

KEY = "window-key-5d1e"
RATE = 24000
# A long first sentence: its request is still running on the server when Stop is pressed
# (the player holds its first second of audio before playing, and the engine is quick).
TEXT = (
    "Good morning to you all, and welcome back to the reading room on this long and quiet "
    "winter morning by the sea. The weather is lovely today. "
    "We will read a little more. And then we stop."
)
LONG_TEXT = " ".join(f"Line {n} of a long text goes on." for n in range(40))


@pytest.fixture(scope="module")
def server_library(tmp_path_factory, builtin_voice) -> VoiceLibrary:
    library = VoiceLibrary(tmp_path_factory.mktemp("server-voices"))
    library.save(
        Voice(
            "Server Narrator",
            builtin_voice.gpt_cond_latent,
            builtin_voice.speaker_embedding,
            "saved",
        )
    )
    return library


@pytest.fixture(scope="module")
def server(synthesizer, server_library):
    with running(create_app(synthesizer, server_library, api_key=KEY)) as running_server:
        yield running_server


def use_server(url: str, key: str) -> None:
    """Saved preferences, as the Preferences dialog leaves them, before a window opens."""
    config.save_settings(config.Settings(engine="server", server_url=url, server_api_key=key))


def save_local_voice(builtin_voice, name: str) -> None:
    VoiceLibrary(config.voices_dir()).save(
        Voice(name, builtin_voice.gpt_cond_latent, builtin_voice.speaker_embedding, "saved")
    )


@pytest.fixture
def remote_window(make_window, qtbot, server, builtin_voice):
    save_local_voice(builtin_voice, "Only On This Computer")
    use_server(server.url, KEY)
    window = make_window(warm_up=False)
    qtbot.waitUntil(lambda: window.is_model_ready, timeout=MODEL_TIMEOUT_MS)
    return window


def _click(qtbot, window, name: str) -> None:
    button = window.findChild(QToolButton, name)
    assert button is not None and button.isEnabled(), name
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@requires_pulse
def test_play_streams_from_the_server_heard_with_latency_and_stop_frees_the_server(
    remote_window, qtbot, server, tiny_model, awake_sink
):
    window = remote_window
    state = window.findChild(QLabel, "modelStateLabel").text()
    assert state.startswith(f"Server: {server.url}") and tiny_model.precision in state
    picker = window.voice_picker
    assert picker.builtin_names == tuple(builtin_voices(tiny_model))
    assert picker.saved_names == ("Server Narrator",)  # the server's, not this computer's
    assert window.worker.loaded is None and window.worker.synthesizer is None
    assert picker.select_voice("Server Narrator")

    engine = RemoteEngine(server.url, api_key=KEY)
    jobs_before = engine.health()["jobs"]
    highlights: list[tuple[int, int]] = []
    window.text_view.highlightChanged.connect(lambda start, end: highlights.append((start, end)))
    window.text_view.setPlainText(TEXT)
    with Recorder() as recorder:
        _click(qtbot, window, "playButton")
        job = window.play_job
        qtbot.waitUntil(lambda: job.player is not None, timeout=AUDIO_TIMEOUT_MS)
        player = job.player
        qtbot.waitUntil(lambda: player.samples_played >= RATE // 2, timeout=AUDIO_TIMEOUT_MS)
        qtbot.waitUntil(lambda: bool(highlights))
        label = window.findChild(QLabel, "latencyLabel").text()
        # Play pressed -> first sample handed to the device, network and server included.
        match = re.search(r"First audio (\d+) ms \(\+ device \d+ ms\) · RTF \d+\.\d\d", label)
        assert match, label
        assert 0 < int(match.group(1)) < AUDIO_TIMEOUT_MS and "Server" in label
        assert not job.synthesis_done, "the text must still be playing when Stop is pressed"
        # Sentences are highlighted by the segment each request read: the first one first.
        spans = [(s.start, s.end) for s in job.segments]
        assert len(spans) == 4 and highlights[0] == spans[0]
        assert all(h in spans for h in highlights if h != (-1, -1))

        # A request is in flight (the first sentence's), so Stop has one to cancel.
        assert engine.health()["busy"] is True
        cancelled = SignalLog(window.worker.jobCancelled)
        mark = recorder.seconds_recorded()
        _click(qtbot, window, "stopButton")
        qtbot.waitUntil(lambda: cancelled.args() == [(job.job_id,)], timeout=AUDIO_TIMEOUT_MS)
        # The request's connection was closed: the server stops synthesizing within a token.
        qtbot.waitUntil(lambda: engine.health()["busy"] is False, timeout=5_000)
        qtbot.waitUntil(lambda: recorder.seconds_recorded() >= mark + 1.0, timeout=10_000)
    recording = recorder.samples()
    recorder.cleanup()
    health = engine.health()
    assert health["jobs"]["cancelled"] == jobs_before["cancelled"] + 1
    assert health["last_job"]["voice"] == "Server Narrator"
    heard = recording[: int(mark * RATE)]
    after_stop = recording[int((mark + 0.3) * RATE) :]
    assert loudest_window_rms(heard, RATE) > 3e-3  # the tiny model's hum; silence is zeros
    assert float(np.max(np.abs(after_stop))) < 5e-4
    assert window.play_state == "idle"


def test_export_renders_on_the_server_sentence_by_sentence(
    remote_window, qtbot, tmp_path, synthesizer, tiny_model, server_library
):
    """The exported file is, sample for sample, the server's audio of each sentence asked
    for on its own, with the engine's pause between: what the highlight relies on."""
    from xtts_desktop.engine.stream import GenerationSettings
    from xtts_desktop.engine.text import segment
    from xtts_desktop.engine.voices import resolve_voice

    window = remote_window
    window.worker.generation_overrides = {"greedy": True}
    assert window.voice_picker.select_voice("Server Narrator")
    text = "Hello there. Good morning to you."
    window.text_view.setPlainText(text)
    finished = SignalLog(window.worker.jobFinished)
    target = tmp_path / "remote.wav"
    job_id = window.export_to(target)
    qtbot.waitUntil(lambda: bool(finished.args()), timeout=AUDIO_TIMEOUT_MS)
    assert finished.args()[0][0] == job_id
    result = finished.args()[0][1]
    assert result.kind == "export" and result.stats.segments_done == result.stats.segments == 2
    exported, rate = sf.read(str(target), dtype="float32")
    assert rate == RATE and len(exported) == result.stats.audio_samples

    voice = resolve_voice(tiny_model, server_library, "Server Narrator")
    settings = GenerationSettings.from_model(tiny_model, greedy=True)
    pause = np.zeros(int(settings.sentence_pause_s * RATE), dtype=np.float32)
    parts = []
    for number, sentence in enumerate(segment(text, "en")):
        audio = [c.samples for c in synthesizer.stream(sentence.text, voice, "en", settings)]
        parts.append(np.concatenate(audio))
        if number == 0:
            parts.append(pause)
    expected = np.clip(np.concatenate(parts), -1, 1)
    assert len(exported) == len(expected)
    assert float(np.max(np.abs(exported - expected))) <= 4 / 32767
    qtbot.waitUntil(lambda: "Saved" in window.statusBar().currentMessage())


def test_server_refusals_are_one_sentence_in_the_window(
    make_window, qtbot, server, synthesizer, server_library
):
    # A wrong key: refused when the window connects.
    use_server(server.url, "not-the-key")
    window = make_window(warm_up=False)
    with qtbot.waitSignal(window.modelFailed, timeout=MODEL_TIMEOUT_MS) as failed:
        pass
    message = failed.args[0]
    assert "did not accept the API key" in message and "\n" not in message
    assert window.message_bar.text() == message
    assert window.message_bar.action_button.text() == "Preferences…"
    assert window.findChild(QLabel, "modelStateLabel").text() == "No server"
    assert not window.findChild(QToolButton, "playButton").isEnabled()

    # Nothing listening: connection refused.
    use_server(f"http://127.0.0.1:{_free_port()}", KEY)
    window = make_window(warm_up=False)
    with qtbot.waitSignal(window.modelFailed, timeout=MODEL_TIMEOUT_MS) as failed:
        pass
    assert failed.args[0].startswith("Cannot connect to the server at http://127.0.0.1:")
    assert window.message_bar.text() == failed.args[0]

    # A busy server (one job running, no queue): Play answers 503, said in one sentence.
    with running(create_app(synthesizer, server_library, api_key=KEY, queue_size=0)) as busy:
        use_server(busy.url, KEY)
        window = make_window(warm_up=False)
        qtbot.waitUntil(lambda: window.is_model_ready, timeout=MODEL_TIMEOUT_MS)
        held = RemoteEngine(busy.url, api_key=KEY).stream(LONG_TEXT, None, "en")
        try:
            next(held)  # the server is now busy with this request
            window.text_view.setPlainText(TEXT)
            failures = SignalLog(window.worker.jobFailed)
            _click(qtbot, window, "playButton")
            qtbot.waitUntil(lambda: bool(failures.args()), timeout=AUDIO_TIMEOUT_MS)
        finally:
            held.close()
        message = failures.args()[0][1]
        assert "is busy with other requests; try again in" in message and "\n" not in message
        qtbot.waitUntil(lambda: window.message_bar.text() == message)
        assert window.play_state == "idle" and window.play_job is None


def test_preferences_switch_to_the_server_and_back(
    ready_window, qtbot, server, builtin_voice, speech_sample, tiny_model
):
    window = ready_window
    save_local_voice(builtin_voice, "Only On This Computer")
    window._refresh_voices()
    assert window.voice_picker.saved_names == ("Only On This Computer",)
    dialog = window.open_preferences()
    assert dialog.isVisible() and dialog.local_radio.isChecked()
    assert not dialog.server_box.isEnabled()
    tested = SignalLog(dialog.connectionTested)
    test_button = dialog.findChild(QPushButton, "testConnectionButton")

    dialog.server_radio.setChecked(True)
    assert dialog.server_box.isEnabled() and not dialog.local_box.isEnabled()
    dialog.url_edit.setText(server.url)
    dialog.key_edit.setText("wrong")
    qtbot.mouseClick(test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(tested.args()) == 1, timeout=20_000)
    assert tested.args()[0][0] is False
    assert "did not accept the API key" in dialog.test_label.text()
    dialog.key_edit.setText(KEY)
    qtbot.mouseClick(test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(tested.args()) == 2, timeout=20_000)
    assert tested.args()[1][0] is True
    assert dialog.test_label.text().startswith(f"Connected to {server.url}: CPU")
    builtins = len(builtin_voices(tiny_model))
    assert f"{builtins} built-in and 1 saved voice;" in dialog.test_label.text()

    # A bad address: said inline, the dialog stays open, nothing is saved.
    dialog.url_edit.setText("ftp://nowhere")
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible()
    assert "is not a server address" in dialog.error_label.text()
    assert config.load_settings().settings.engine == "local"

    dialog.url_edit.setText(server.url)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()
    qtbot.waitUntil(
        lambda: window.model_info is not None and window.model_info.is_server,
        timeout=MODEL_TIMEOUT_MS,
    )
    saved = config.load_settings().settings
    assert (saved.engine, saved.server_url, saved.server_api_key) == ("server", server.url, KEY)
    assert window.findChild(QLabel, "modelStateLabel").text().startswith(f"Server: {server.url}")
    assert window.voice_picker.saved_names == ("Server Narrator",)
    assert not window.rename_voice_action.isEnabled()

    # Cloning needs the model here: a dropped sample is refused in one sentence.
    assert drop_files(window.text_view.viewport(), [speech_sample])
    assert window.message_bar.text() == CLONE_NEEDS_LOCAL and not window.clone_jobs

    # Back to this computer: the model loads again and the local voices return.
    dialog = window.open_preferences()
    assert dialog.server_radio.isChecked() and dialog.url_edit.text() == server.url
    dialog.local_radio.setChecked(True)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: window.model_info is not None and not window.model_info.is_server,
        timeout=MODEL_TIMEOUT_MS,
    )
    assert window.findChild(QLabel, "modelStateLabel").text().startswith("Ready: CPU")
    assert window.voice_picker.saved_names == ("Only On This Computer",)
    assert window.worker.remote is None and window.worker.loaded is not None
    assert config.load_settings().settings.engine == "local"


def test_the_connection_test_never_blocks_the_window(ready_window, qtbot):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections, never answers
        dialog = ready_window.open_preferences()
        dialog.probe_timeout_s = 1.0
        dialog.server_radio.setChecked(True)
        dialog.url_edit.setText(f"http://127.0.0.1:{silent.getsockname()[1]}")
        tested = SignalLog(dialog.connectionTested)
        began = time.perf_counter()
        qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
        returned = time.perf_counter() - began
        assert dialog.test_label.text().startswith("Connecting to")
        assert not dialog.test_button.isEnabled()
        qtbot.waitUntil(lambda: bool(tested.args()), timeout=20_000)
        answered = time.perf_counter() - began
    assert returned < 0.5 and answered > 0.9  # the click returned long before the answer
    assert tested.args()[0] == (False, dialog.test_label.text())
    assert "did not answer within 1 s" in dialog.test_label.text()
    assert dialog.test_button.isEnabled()
