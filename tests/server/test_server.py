"""The HTTP server for real: uvicorn on loopback, the tiny model, the reference client's calls."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("uvicorn", reason="the server needs uvicorn and starlette")
requests = pytest.importorskip("requests", reason="the reference client uses requests")

from tests.server import running, wait_for  # noqa: E402
from xtts_desktop.engine.stream import GenerationSettings  # noqa: E402
from xtts_desktop.engine.voices import VoiceLibrary, resolve_voice  # noqa: E402
from xtts_desktop.server import SAMPLE_RATE, s16le_to_float  # noqa: E402
from xtts_desktop.server.app import MAX_BODY_BYTES, create_app  # noqa: E402

# Many sentences: synthesis takes far longer than any test waits, so it is always cancelled.
LONG_TEXT = " ".join(f"Sentence number {n} is read aloud here." for n in range(60))
SHORT_TEXT = "Hello there. How are you?"
KEY = "test-key-7f3a"


def health(server, key: str | None = KEY) -> dict:
    headers = {"Authorization": f"Api-Key {key}"} if key else {}
    response = requests.get(f"{server.url}/health", headers=headers, timeout=10)
    assert response.status_code == 200
    return response.json()


def auth(key: str = KEY) -> dict:
    return {"Authorization": f"Api-Key {key}"}


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> VoiceLibrary:
    return VoiceLibrary(tmp_path_factory.mktemp("server-voices"))


@pytest.fixture(scope="module")
def server(synthesizer, library):
    """A server with a key and the default queue, shared by the tests that need nothing else."""
    with running(create_app(synthesizer, library, api_key=KEY, queue_size=4)) as running_server:
        yield running_server


def engine_audio(synthesizer, tiny_model, library, text: str) -> np.ndarray:
    """The same text straight from the engine, greedy, as the server would make it."""
    voice = resolve_voice(tiny_model, library, None)
    settings = GenerationSettings.from_model(tiny_model, greedy=True)
    chunks = synthesizer.stream(text, voice, "en", settings)
    return np.concatenate([chunk.samples for chunk in chunks])


def test_first_audio_arrives_while_the_job_is_still_running(server):
    before = health(server)["jobs"]["cancelled"]
    # Long enough that the job cannot be over by the first chunk, even if the random-weight
    # model samples its stop token early in every sentence.
    text = " ".join(f"Line {n} of a much longer text goes on." for n in range(400))
    response = requests.post(
        f"{server.url}/predict", headers=auth(), json={"text": text}, stream=True, timeout=60
    )
    try:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["X-Sample-Rate"] == str(SAMPLE_RATE)
        first = next(response.iter_content(chunk_size=None))
        assert len(first) > 0
        # Audio is here, and the server is still at work on the same job: it streams.
        state = health(server)
        job = state["current_job"]
        assert state["busy"] is True, (state.get("last_job"), state.get("jobs"))
        assert job is not None and str(job["id"]) == response.headers["X-Job-Id"]
        assert job["segments"] == 400
        assert job["segments_done"] < job["segments"]
    finally:
        response.close()
    wait_for(lambda: not health(server)["busy"], 30, "the cancelled job to end")
    assert health(server)["jobs"]["cancelled"] == before + 1


def test_reference_client_gets_the_engines_audio(server, synthesizer, tiny_model, library):
    """The tutorial's exact calls: requests.post(stream=True) and iter_content, piped to FFmpeg."""
    url = f"{server.url}/predict"
    key = KEY
    response = requests.post(
        url,
        headers={"Authorization": f"Api-Key {key}"},
        json={"text": SHORT_TEXT, "language": "en", "chunk_size": 20, "greedy": True},
        stream=True,
    )
    assert response.status_code == 200
    pieces = [chunk for chunk in response.iter_content(chunk_size=4096)]
    body = b"".join(pieces)
    assert len(pieces) > 1
    assert len(body) % 2 == 0

    expected = np.clip(engine_audio(synthesizer, tiny_model, library, SHORT_TEXT), -1, 1)
    received = s16le_to_float(body)
    assert len(received) == len(expected)
    # Every sample, in order, within half a 16-bit step (plus float rounding).
    assert np.max(np.abs(received - expected)) <= 0.51 / 32767 + 1e-7
    assert np.sqrt(np.mean(received**2)) > 1e-3

    # The tutorial pipes the same bytes to ffplay -f s16le -ar 24000 -ac 1 -; FFmpeg reads
    # them with exactly those options (ffmpeg instead of ffplay: there is no screen here).
    if shutil.which("ffmpeg"):
        decoded = subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "s16le", "-ar", "24000", "-ac", "1", "-i", "-",
             "-f", "s16le", "-"],
            input=body, capture_output=True, check=True, timeout=60,
        ).stdout  # fmt: skip
        assert decoded == body


def test_chunk_size_makes_the_chunks(server):
    """chunk_size is the engine's chunk in GPT tokens: larger chunks, fewer of them."""

    def chunk_count(chunk_size: int) -> int:
        response = requests.post(
            f"{server.url}/predict",
            headers=auth(),
            json={"text": "Counting the chunks now.", "chunk_size": chunk_size, "greedy": True},
            stream=True,
            timeout=60,
        )
        assert response.status_code == 200
        with response:
            # Each engine chunk is sent as one HTTP chunk: count raw chunked-encoding pieces.
            return sum(1 for piece in response.raw.read_chunked() if piece)

    assert chunk_count(5) > chunk_count(40)


def test_api_key_is_required(server):
    url = f"{server.url}/predict"
    body = {"text": "Hello."}
    missing = requests.post(url, json=body, timeout=10)
    assert missing.status_code == 401
    assert "Api-Key" in missing.json()["error"]
    assert missing.headers["WWW-Authenticate"].startswith("Api-Key")
    wrong = requests.post(url, json=body, headers=auth("not-the-key"), timeout=10)
    assert wrong.status_code == 401
    assert "wrong" in wrong.json()["error"]
    bearer = requests.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert bearer.status_code == 401
    assert requests.get(f"{server.url}/voices", timeout=10).status_code == 401

    voices = requests.get(f"{server.url}/voices", headers=auth(), timeout=10)
    assert voices.status_code == 200
    assert voices.json()["builtin"] and voices.json()["saved"] == []

    # /health answers everyone (load balancers), but only the key holder sees the details.
    open_health = health(server, key=None)
    assert open_health["auth_required"] is True and "busy" in open_health
    assert "model_dir" not in open_health and "last_job" not in open_health
    assert Path(health(server)["model_dir"]).is_dir()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "no body"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"language": "en"}), '"text"'),
        (json.dumps({"text": "   "}), "empty"),
        (json.dumps({"text": "?!"}), "no letters"),
        (json.dumps({"text": 42}), "string"),
        (json.dumps({"text": "Hi.", "language": "klingon"}), "Unknown language"),
        (json.dumps({"text": "Hi.", "voice": "Nobody Here"}), "Unknown voice"),
        (json.dumps({"text": "Hi.", "speed": 5}), "Speed 5"),
        (json.dumps({"text": "Hi.", "speed": "fast"}), '"speed"'),
        (json.dumps({"text": "Hi.", "chunk_size": "abc"}), '"chunk_size"'),
        (json.dumps({"text": "Hi.", "chunk_size": 1000}), '"chunk_size"'),
        (json.dumps({"text": "Hi.", "greedy": "yes"}), '"greedy"'),
        (json.dumps({"text": "Hi.", "speaker_wav": "abc"}), "Unknown field"),
    ],
)
def test_bad_requests_get_400_with_a_sentence(server, body, expected):
    before = health(server)["jobs"]
    response = requests.post(
        f"{server.url}/predict",
        data=body,
        headers={**auth(), "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400
    message = response.json()["error"]
    assert expected in message
    assert message.endswith(".") and "\n" not in message and "Traceback" not in message
    # Refused before anything was queued.
    assert health(server)["jobs"] == before


def test_oversized_body_and_unknown_routes(server):
    big = requests.post(
        f"{server.url}/predict",
        data=b"x" * (MAX_BODY_BYTES + 1),
        headers=auth(),
        timeout=30,
    )
    assert big.status_code == 413
    assert "larger than" in big.json()["error"]
    missing = requests.get(f"{server.url}/speak", headers=auth(), timeout=10)
    assert missing.status_code == 404 and "/predict" in missing.json()["error"]
    wrong_method = requests.get(f"{server.url}/predict", headers=auth(), timeout=10)
    assert wrong_method.status_code == 405 and "POST /predict" in wrong_method.json()["error"]


def test_a_disconnect_cancels_the_synthesis(server):
    before = health(server)["jobs"]
    response = requests.post(
        f"{server.url}/predict", headers=auth(), json={"text": LONG_TEXT}, stream=True, timeout=60
    )
    assert response.status_code == 200
    next(response.iter_content(chunk_size=None))
    closed_at = time.monotonic()
    response.close()

    def cancelled() -> dict | None:
        state = health(server)
        done = not state["busy"] and state["jobs"]["cancelled"] == before["cancelled"] + 1
        return state if done else None

    state = wait_for(cancelled, 30, "the server to cancel the job")
    elapsed = time.monotonic() - closed_at
    job = state["last_job"]
    assert job["state"] == "cancelled"
    # Stopped near where the client left (the first chunk), not at the end of 60 sentences.
    assert job["segments_done"] <= 2 < job["segments"]
    assert elapsed < 15
    assert state["jobs"]["completed"] == before["completed"]
    # The engine is free again: a new request runs to the end.
    follow_up = requests.post(
        f"{server.url}/predict", headers=auth(), json={"text": "Again."}, timeout=60
    )
    assert follow_up.status_code == 200 and len(follow_up.content) > 0


def test_queue_waits_then_refuses_with_retry_after(synthesizer, library):
    app = create_app(synthesizer, library, queue_size=1)
    with running(app) as server:
        url = f"{server.url}/predict"
        first = requests.post(url, json={"text": LONG_TEXT}, stream=True, timeout=60)
        assert first.status_code == 200
        wait_for(lambda: health(server, None)["busy"], 10, "the first job to run")

        second: dict = {}

        def second_request() -> None:
            response = requests.post(url, json={"text": "Second in line."}, timeout=120)
            second["status"] = response.status_code
            second["body"] = response.content

        waiter = threading.Thread(target=second_request, daemon=True)
        waiter.start()
        wait_for(lambda: health(server, None)["queue_length"] == 1, 20, "the second to queue")

        third = requests.post(url, json={"text": "Third."}, timeout=30)
        assert third.status_code == 503
        assert int(third.headers["Retry-After"]) >= 1
        assert "busy" in third.json()["error"]

        first.close()  # the running job is cancelled; the waiting one starts
        waiter.join(timeout=120)
        assert not waiter.is_alive()
        assert second["status"] == 200
        assert len(second["body"]) > 0 and len(second["body"]) % 2 == 0
        jobs = health(server, None)["jobs"]
        assert jobs == {"completed": 1, "cancelled": 1, "failed": 0, "rejected": 1}


# ----- the command line -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "xtts_desktop", "serve", *arguments]


def test_serve_refuses_a_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            _serve_command("--port", str(port)), capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 2
    assert f"Port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_command_serves_and_stops_on_ctrl_c(tiny_model_dir):
    port = _free_port()
    process = subprocess.Popen(
        _serve_command(
            "--model-dir", str(tiny_model_dir), "--device", "cpu",
            "--host", "0.0.0.0", "--port", str(port), "--queue", "2",
        ),
        stderr=subprocess.PIPE, text=True,
        env={name: value for name, value in os.environ.items() if name != "XTTS_DESKTOP_API_KEY"},
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    try:

        def answering() -> dict | None:
            if process.poll() is not None:
                raise AssertionError(f"serve exited early: {''.join(lines)}")
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
            except (requests.ConnectionError, requests.Timeout):
                return None

        state = wait_for(answering, 120, "the server to answer", poll=0.2)
        assert state["queue_size"] == 2 and state["random_weights"] is True
        response = requests.post(f"http://127.0.0.1:{port}/predict", json={"text": "Hi."})
        assert response.status_code == 200 and len(response.content) % 2 == 0
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    reader.join(timeout=10)
    output = "".join(lines)
    assert code == 0, output
    warnings = [line for line in output.splitlines() if "without an API key" in line]
    assert len(warnings) == 1 and "0.0.0.0" in warnings[0]
    assert "Traceback" not in output
    assert output.splitlines()[-1] == "Server stopped."
