"""RemoteEngine against a real server on loopback: voices, streaming, errors, cancellation."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("uvicorn", reason="the server needs uvicorn and starlette")
requests = pytest.importorskip("requests", reason="the queue test holds a job with requests")

from tests.server import running, wait_for  # noqa: E402
from xtts_desktop.engine.stream import GenerationSettings  # noqa: E402
from xtts_desktop.engine.voices import Voice, VoiceLibrary, resolve_voice  # noqa: E402
from xtts_desktop.errors import Cancelled, UserError  # noqa: E402
from xtts_desktop.remote import RemoteEngine, RemoteStats  # noqa: E402
from xtts_desktop.server import PcmDecoder, float_to_s16le, s16le_to_float  # noqa: E402
from xtts_desktop.server.app import create_app  # noqa: E402

KEY = "remote-key-19c2"
LONG_TEXT = " ".join(f"Line {n} of a long text goes on." for n in range(60))


@pytest.fixture(scope="module")
def library(tmp_path_factory, builtin_voice) -> VoiceLibrary:
    library = VoiceLibrary(tmp_path_factory.mktemp("remote-voices"))
    library.save(
        Voice(
            "Saved Narrator",
            builtin_voice.gpt_cond_latent,
            builtin_voice.speaker_embedding,
            "saved",
        )
    )
    return library


@pytest.fixture(scope="module")
def server(synthesizer, library):
    with running(create_app(synthesizer, library, api_key=KEY, queue_size=1)) as running_server:
        yield running_server


def test_voices_and_health(server, tiny_model):
    from xtts_desktop.engine.voices import builtin_voices

    engine = RemoteEngine(server.url, api_key=KEY)
    assert engine.voices() == list(builtin_voices(tiny_model)) + ["Saved Narrator"]
    state = engine.health()
    assert state["sample_rate"] == 24000 and state["busy"] is False


def test_stream_yields_the_engines_audio_as_float_chunks(server, synthesizer, tiny_model, library):
    engine = RemoteEngine(server.url + "/predict", api_key=KEY)  # a Truss-style URL works too
    text = "Good morning. The remote engine speaks."
    stats = RemoteStats()
    chunks = list(engine.stream(text, "Saved Narrator", "en", stats=stats, greedy=True))
    assert len(chunks) > 1
    assert all(chunk.dtype == np.float32 and chunk.ndim == 1 for chunk in chunks)
    received = np.concatenate(chunks)

    voice = resolve_voice(tiny_model, library, "Saved Narrator")
    settings = GenerationSettings.from_model(tiny_model, greedy=True)
    expected = np.concatenate([c.samples for c in synthesizer.stream(text, voice, "en", settings)])
    assert len(received) == len(expected)
    assert np.max(np.abs(received - np.clip(expected, -1, 1))) <= 0.51 / 32767 + 1e-7

    assert stats.audio_samples == len(received)
    assert stats.bytes_received == 2 * len(received)
    assert 0 < stats.time_to_first_chunk_ms < stats.synthesis_seconds * 1000
    assert stats.audio_seconds == pytest.approx(len(received) / 24000)


def test_refusals_are_user_errors(server):
    with pytest.raises(UserError, match="did not accept the API key"):
        list(RemoteEngine(server.url, api_key="wrong").stream("Hi.", None, "en"))
    with pytest.raises(UserError, match="needs an API key"):
        RemoteEngine(server.url).voices()
    with pytest.raises(UserError, match="Unknown language 'xx'"):
        list(RemoteEngine(server.url, api_key=KEY).stream("Hi.", None, "xx"))
    with pytest.raises(UserError, match="Speed 3 is out of range"):
        list(RemoteEngine(server.url, api_key=KEY).stream("Hi.", None, "en", speed=3))


def test_unreachable_servers_are_user_errors():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on that port any more.
    with pytest.raises(UserError, match="Cannot connect to the server at http://127.0.0.1"):
        RemoteEngine(f"http://127.0.0.1:{port}").voices()
    with pytest.raises(UserError, match="Cannot connect"):
        next(RemoteEngine(f"127.0.0.1:{port}").stream("Hi.", None, "en"))
    for bad in ("", "ftp://host/", "http://", "http://host:notaport"):
        with pytest.raises(UserError, match="not a server address"):
            RemoteEngine(bad)


def test_silent_server_times_out_with_a_sentence():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections, never answers
        engine = RemoteEngine(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        with pytest.raises(UserError, match="did not answer within 0.5 s"):
            engine.health()


def test_cancel_while_queued_and_while_streaming(server):
    engine = RemoteEngine(server.url, api_key=KEY)
    headers = {"Authorization": f"Api-Key {KEY}"}
    before = engine.health()["jobs"]
    running_job = requests.post(
        f"{server.url}/predict", headers=headers, json={"text": LONG_TEXT}, stream=True, timeout=60
    )
    assert running_job.status_code == 200
    try:
        # A second request waits in the queue (size 1); the server sends nothing meanwhile.
        cancel = threading.Event()
        outcome: dict = {}

        def queued() -> None:
            try:
                outcome["chunks"] = list(
                    engine.stream("Waiting my turn.", None, "en", cancel=cancel)
                )
            except BaseException as error:  # noqa: BLE001 - the test inspects it
                outcome["error"] = error

        waiter = threading.Thread(target=queued, daemon=True)
        waiter.start()
        wait_for(lambda: engine.health()["queue_length"] == 1, 20, "the request to queue")

        # A third is refused: one running, one waiting.
        with pytest.raises(UserError, match="busy with other requests; try again in \\d+ s"):
            next(engine.stream("No room.", None, "en"))

        cancelled_at = time.monotonic()
        cancel.set()
        waiter.join(timeout=10)
        assert not waiter.is_alive()
        assert isinstance(outcome.get("error"), Cancelled)
        assert time.monotonic() - cancelled_at < 5
        # The server saw the closed connection and took the request out of its queue.
        wait_for(lambda: engine.health()["queue_length"] == 0, 10, "the queue to empty")
    finally:
        running_job.close()
    wait_for(lambda: not engine.health()["busy"], 30, "the first job to end")

    # Cancelling a stream that is playing: Cancelled at once, and the server stops too.
    cancel = threading.Event()
    stream = engine.stream(LONG_TEXT, None, "en", cancel=cancel)
    assert len(next(stream)) > 0
    cancel.set()
    with pytest.raises(Cancelled):
        for _ in stream:
            pass
    state = wait_for(
        lambda: (s := engine.health()) and not s["busy"] and s, 30, "the server to stop the job"
    )
    assert state["last_job"]["state"] == "cancelled"
    assert state["last_job"]["segments_done"] < state["last_job"]["segments"]
    assert state["jobs"]["cancelled"] == before["cancelled"] + 3
    assert state["jobs"]["rejected"] == before["rejected"] + 1


@settings(max_examples=60, deadline=None)
@given(
    samples=st.lists(st.integers(-32767, 32767), max_size=200),
    cuts=st.lists(st.integers(0, 400), max_size=12),
)
def test_decoder_joins_samples_split_across_reads(samples, cuts):
    data = float_to_s16le(np.array(samples, dtype=np.float32) / 32767)
    pieces, start = [], 0
    for cut in sorted(min(cut, len(data)) for cut in cuts):
        pieces.append(data[start:cut])
        start = cut
    pieces.append(data[start:])
    decoder = PcmDecoder()
    decoded = [decoder.feed(piece) for piece in pieces]
    joined = np.concatenate(decoded) if decoded else np.zeros(0, np.float32)
    assert not decoder.has_partial_sample
    np.testing.assert_array_equal(joined, s16le_to_float(data))
    np.testing.assert_array_equal(np.rint(joined * 32767).astype(int), samples)


def test_say_on_a_server_writes_the_same_audio(server, synthesizer, builtin_voice, tmp_path, capsys):
    """`xtts-desktop say --server URL` streams from the server into the same output path."""
    import json

    import soundfile

    from xtts_desktop.cli import main

    out = tmp_path / "remote.wav"
    code = main(
        ["say", "Hello from afar.", "--server", server.url, "--api-key", KEY, "--greedy",
         "--no-play", "--out", str(out), "--json"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    written, rate = soundfile.read(out, dtype="float32")
    settings = GenerationSettings.from_model(synthesizer.loaded, greedy=True)
    local = np.concatenate(
        [c.samples for c in synthesizer.stream("Hello from afar.", builtin_voice, "en", settings)]
    )
    assert rate == 24000 and len(written) == len(local)
    assert np.max(np.abs(written - local)) < 2 / 32768 + 1e-6
    assert report["time_to_first_chunk_ms"] > 0 and report["device"].startswith("server")
    assert main(["say", "Hi.", "--server", server.url, "--api-key", "wrong", "--no-play"]) == 2
    assert "key" in capsys.readouterr().err.lower()
