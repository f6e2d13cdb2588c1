"""Getting XTTS v2 from a fake Hub on loopback: consent, progress, resume, faults; folder checks."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.hub_server import FakeHub, point_hugging_face_at
from xtts_desktop import download
from xtts_desktop.errors import Cancelled, UserError


@pytest.fixture
def hub(tiny_model_dir, tmp_path, monkeypatch):
    """A fake Hub serving the tiny model, with the Hugging Face settings pointed at it."""
    server = FakeHub(tiny_model_dir).start()
    point_hugging_face_at(server, monkeypatch, tmp_path / "hf-home")
    yield server
    server.stop()


@pytest.fixture
def agreed(hub):
    download.record_agreement()
    return hub


def resolve_and_blob_requests(server: FakeHub, method: str | None = None):
    """The requests for model files (huggingface_hub also asks the Hub for other things)."""
    return [r for r in server.seen(method) if "/resolve/" in r.path or r.path.startswith("/blobs/")]


# ----- consent -------------------------------------------------------------------------------


def test_no_agreement_means_no_request_at_all(hub, tmp_path):
    with pytest.raises(UserError) as caught:
        download.download_model(tmp_path / "model")
    message = str(caught.value)
    assert download.LICENSE_URL in message and "non-commercial" in message
    assert hub.seen() == []
    assert not (tmp_path / "model").exists()
    assert os.environ.get(download.COQUI_TOS_SWITCH) is None


def test_agreement_is_recorded_and_sets_coquis_switch(monkeypatch):
    monkeypatch.setenv(download.COQUI_TOS_SWITCH, "")
    monkeypatch.delenv(download.COQUI_TOS_SWITCH)
    assert download.read_agreement() is None
    download.record_agreement()
    raw = json.loads(download.license_path().read_text())
    assert raw["license"] == "CPML" and raw["version"] == download.LICENSE_VERSION
    assert raw["agreed_at"]
    assert download.has_agreed()
    assert os.environ[download.COQUI_TOS_SWITCH] == "1"


# ----- downloads -----------------------------------------------------------------------------


def test_full_download_into_the_hugging_face_cache_loads_and_is_shared(agreed, tmp_path):
    from huggingface_hub import try_to_load_from_cache

    from xtts_desktop.engine.model import load_model

    seen = []
    result = download.download_model(progress=seen.append)

    cache = tmp_path / "hf-home" / "hub"
    assert result.model_dir == cache / "models--tts-hub--XTTS-v2" / "snapshots" / agreed.commit
    assert result.commit == agreed.commit
    for name in download.MODEL_FILES:
        assert (result.model_dir / name).is_symlink()
        assert filecmp.cmp(result.model_dir / name, agreed.model_dir / name, shallow=False)
        # huggingface_hub's own cache lookup finds the same file: other tools share it.
        assert try_to_load_from_cache(download.REPO_ID, name, cache_dir=cache) == str(
            result.model_dir / name
        )
    assert not list(cache.rglob("*.incomplete"))

    total = sum((agreed.model_dir / name).stat().st_size for name in download.MODEL_FILES)
    assert seen[-1].done_bytes == seen[-1].total_bytes == total
    assert [p.done_bytes for p in seen] == sorted(p.done_bytes for p in seen)
    assert any(p.speed > 0 for p in seen)
    assert "of" in download.format_progress(seen[-1])

    record = json.loads(download.model_record_path().read_text())
    assert record["model_dir"] == str(result.model_dir)
    assert record["commit"] == agreed.commit
    assert os.environ[download.COQUI_TOS_SWITCH] == "1"

    loaded = load_model(result.model_dir, device="cpu", precision="fp32")
    assert loaded.model_dir == result.model_dir

    # A second run asks for sizes and checksums only, and fetches nothing.
    gets_before = len(resolve_and_blob_requests(agreed, "GET"))
    again = download.download_model()
    assert again.downloaded_bytes == 0
    assert set(again.reused_files) == set(download.MODEL_FILES)
    assert len(resolve_and_blob_requests(agreed, "GET")) == gets_before


def test_a_cut_connection_is_resumed_with_a_range_request(agreed, tmp_path):
    size = (agreed.model_dir / "model.pth").stat().st_size
    agreed.drop_after["model.pth"] = size // 3

    result = download.download_model(tmp_path / "model")

    gets = resolve_and_blob_requests(agreed, "GET")
    model_gets = [r for r in gets if r.filename == "model.pth"]
    assert len(model_gets) == 2
    assert "range" not in model_gets[0].headers
    assert model_gets[1].headers["range"].startswith("bytes=")
    resumed_at = int(model_gets[1].headers["range"][len("bytes=") : -1])
    assert 0 < resumed_at <= size // 3
    assert agreed.body_bytes["model.pth"] < 2 * size
    assert filecmp.cmp(
        result.model_dir / "model.pth", agreed.model_dir / "model.pth", shallow=False
    )
    assert not (tmp_path / "model" / ".download").exists()


def test_cancel_keeps_the_partial_file_and_the_next_run_resumes_it(agreed, tmp_path):
    target = tmp_path / "model"
    cancel = threading.Event()

    def stop_after_the_first_block(progress):
        if progress.filename == "model.pth" and progress.file_done > 0:
            cancel.set()

    with pytest.raises(Cancelled) as caught:
        download.download_model(target, progress=stop_after_the_first_block, cancel=cancel)
    assert "cancelled" in str(caught.value) and "resume" in str(caught.value)
    assert not (target / "model.pth").exists()
    partial = list((target / ".download").glob("model.pth.*.incomplete"))
    assert len(partial) == 1
    kept = partial[0].stat().st_size
    assert 0 < kept < (agreed.model_dir / "model.pth").stat().st_size
    assert not download.model_record_path().exists()

    result = download.download_model(target)
    last_get = [r for r in resolve_and_blob_requests(agreed, "GET") if r.filename == "model.pth"][
        -1
    ]
    assert last_get.headers["range"] == f"bytes={kept}-"
    assert filecmp.cmp(
        result.model_dir / "model.pth", agreed.model_dir / "model.pth", shallow=False
    )
    assert download.read_model_record().model_dir == target


def test_a_corrupt_file_is_detected_and_removed(agreed, tmp_path):
    agreed.corrupt.add("model.pth")
    target = tmp_path / "model"
    with pytest.raises(UserError, match=r"model\.pth is corrupt \(checksum mismatch\)"):
        download.download_model(target)
    assert not (target / "model.pth").exists()
    assert not list(target.rglob("*.incomplete"))
    assert not download.model_record_path().exists()


def test_offline_mode_makes_no_request(agreed, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="offline mode"):
        download.download_model(tmp_path / "model")
    assert resolve_and_blob_requests(agreed) == []


def test_an_unreachable_hub_says_so(agreed, tmp_path):
    agreed.stop()
    with pytest.raises(UserError, match="Cannot connect to http://127.0.0.1"):
        download.download_model(tmp_path / "model")


def test_a_refused_download_mentions_the_token_and_a_token_is_sent_only_to_the_hub(
    agreed, monkeypatch, tmp_path
):
    agreed.required_token = "hf_test_token"
    with pytest.raises(UserError, match=r"refused access .*HF_TOKEN"):
        download.download_model(tmp_path / "model")

    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    download.download_model(tmp_path / "model")
    hub_requests = [r for r in resolve_and_blob_requests(agreed) if r.server == "hub"]
    cdn_requests = [r for r in resolve_and_blob_requests(agreed) if r.server == "cdn"]
    assert hub_requests[-1].headers.get("authorization") == "Bearer hf_test_token"
    assert cdn_requests and all("authorization" not in r.headers for r in cdn_requests)


def test_an_unknown_revision_is_not_found(agreed, tmp_path):
    with pytest.raises(UserError, match="no revision 'v9'"):
        download.download_model(tmp_path / "model", revision="v9")


def test_not_enough_disk_space_stops_before_any_file_is_fetched(agreed, monkeypatch, tmp_path):
    asked = []

    def tiny_disk(path: Path) -> int:
        asked.append(path)
        return 50_000_000

    monkeypatch.setattr(download, "free_disk_bytes", tiny_disk)
    with pytest.raises(UserError, match="Not enough disk space"):
        download.download_model(tmp_path / "model")
    assert asked == [tmp_path / "model"]
    assert resolve_and_blob_requests(agreed, "GET") == []


# ----- the command line ----------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xtts_desktop", "download", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


def test_cli_downloads_with_agree_license(hub, tmp_path):
    target = tmp_path / "model"
    done = run_cli("--agree-license", "--dir", str(target))
    assert done.returncode == 0, done.stderr
    assert f"XTTS v2 is ready in {target}" in done.stdout
    assert "non-commercial" in done.stderr and download.LICENSE_URL in done.stderr
    for name in download.MODEL_FILES:
        assert filecmp.cmp(target / name, hub.model_dir / name, shallow=False)
    assert download.read_model_record().model_dir == target
    assert download.has_agreed()


def test_cli_without_agreement_and_without_a_terminal_exits_2_without_a_request(hub, tmp_path):
    done = run_cli("--dir", str(tmp_path / "model"))
    assert done.returncode == 2
    assert "--agree-license" in done.stderr
    assert "Traceback" not in done.stderr
    assert hub.seen() == []
    assert not download.has_agreed()


def wait_until(condition, timeout_s: float = 60.0) -> None:
    """Poll a condition (another process's file) until it holds, or fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        threading.Event().wait(0.02)


def test_cli_ctrl_c_stops_cleanly_and_keeps_the_partial_file(agreed, tmp_path):
    target = tmp_path / "model"
    agreed.hold_after["model.pth"] = 2 * download.BLOCK_SIZE
    process = subprocess.Popen(
        [sys.executable, "-m", "xtts_desktop", "download", "--dir", str(target)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        # Ctrl+C as at a terminal, even when the suite runs in the background (where SIGINT
        # is inherited as ignored and Python would never see it).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert agreed.holding.wait(60)
        work = target / ".download"
        wait_until(
            lambda: (
                sum(p.stat().st_size for p in work.glob("model.pth.*.incomplete"))
                == 2 * download.BLOCK_SIZE
            )
        )
        process.send_signal(signal.SIGINT)
        agreed.release.set()
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "cancelled" in err and "resumes" in err and "Traceback" not in err
    assert not (target / "model.pth").exists()
    partial = list((target / ".download").glob("model.pth.*.incomplete"))
    assert [p.stat().st_size for p in partial] == [2 * download.BLOCK_SIZE]
    assert not download.model_record_path().exists()


def test_cli_use_folder_checks_and_records_without_copying(tiny_model_dir, tmp_path):
    done = run_cli("--use-folder", str(tiny_model_dir))
    assert done.returncode == 0, done.stderr
    assert download.read_model_record().model_dir == tiny_model_dir.absolute()
    broken = tmp_path / "broken"
    broken.mkdir()
    done = run_cli("--use-folder", str(broken))
    assert done.returncode == 2
    assert "config.json" in done.stderr and "Traceback" not in done.stderr


# ----- checking a model folder ---------------------------------------------------------------


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, target)
    return target


def _remove_vocab(folder: Path) -> None:
    (folder / "vocab.json").unlink()


def _grow_config_after_download(folder: Path) -> None:
    sizes = {name: (folder / name).stat().st_size for name in download.MODEL_FILES}
    download.record_model_dir(
        folder, "download", {"files": {n: {"size": s} for n, s in sizes.items()}}
    )
    with open(folder / "config.json", "a") as handle:
        handle.write("\n")


def _truncate_model(folder: Path) -> None:
    path = folder / "model.pth"
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def _flip_a_byte_inside_model(folder: Path) -> None:
    path = folder / "model.pth"
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))


def _break_vocab_json(folder: Path) -> None:
    (folder / "vocab.json").write_text('{"model": {"vocab": {"a": 0,', encoding="utf-8")


def _mismatch_vocab(folder: Path) -> None:
    raw = json.loads((folder / "config.json").read_text())
    raw["model_args"]["gpt_number_text_tokens"] += 7
    (folder / "config.json").write_text(json.dumps(raw), encoding="utf-8")


@pytest.mark.parametrize(
    ("damage", "named", "says"),
    [
        (_remove_vocab, "vocab.json", "missing"),
        (_grow_config_after_download, "config.json", "bytes but the downloaded file was"),
        (_truncate_model, "model.pth", "truncated"),
        (_flip_a_byte_inside_model, "model.pth", "corrupt"),
        (_break_vocab_json, "vocab.json", "not a tokenizer vocabulary"),
        (_mismatch_vocab, "vocab.json", "come from different models"),
    ],
    ids=["missing", "wrong-size", "truncated", "corrupt", "unparsable-vocab", "mismatched-vocab"],
)
def test_each_broken_folder_gets_one_message_naming_the_file(model_copy, damage, named, says):
    damage(model_copy)
    before = (
        download.model_record_path().read_text() if download.model_record_path().exists() else None
    )
    with pytest.raises(UserError) as caught:
        download.use_model_folder(model_copy)
    message = str(caught.value)
    assert named in message and says in message
    assert "\n" not in message
    after = (
        download.model_record_path().read_text() if download.model_record_path().exists() else None
    )
    assert after == before  # a broken folder is never recorded


def test_a_good_folder_is_recorded_where_it_is(model_copy):
    folder = download.use_model_folder(model_copy)
    assert folder == model_copy
    record = download.read_model_record()
    assert record.model_dir == model_copy and record.source == "folder"
    assert sorted(p.name for p in model_copy.iterdir()) == sorted(
        [*download.MODEL_FILES, "RANDOM_WEIGHTS"]
    )
