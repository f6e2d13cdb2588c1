"""The "Get XTTS v2" dialog on a fake Hub: agree, download, cancel and resume, a model folder."""

from __future__ import annotations

import filecmp
import shutil

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QFileDialog

from tests.hub_server import FakeHub, point_hugging_face_at
from xtts_desktop import download
from xtts_desktop.gui.download_dialog import PROGRESS_STEPS, DownloadDialog

TIMEOUT_MS = 60_000


@pytest.fixture
def hub(tiny_model_dir, tmp_path, monkeypatch):
    server = FakeHub(tiny_model_dir).start()
    point_hugging_face_at(server, monkeypatch, tmp_path / "hf-home")
    yield server
    server.stop()


@pytest.fixture
def make_dialog(qtbot):
    made = []

    def make(**kwargs) -> DownloadDialog:
        dialog = DownloadDialog(**kwargs)
        qtbot.addWidget(dialog)
        made.append(dialog)
        dialog.show()
        return dialog

    yield make
    for dialog in made:  # never leave a worker thread behind a closed dialog
        assert dialog.shutdown(timeout_s=30)


def test_agree_then_download_records_the_folder(hub, make_dialog, qtbot, tmp_path):
    target = tmp_path / "model"
    dialog = make_dialog(target_dir=target)
    assert not dialog.agree_box.isChecked()
    assert not dialog.download_button.isEnabled()
    assert download.LICENSE_URL in dialog.license_link.text()

    qtbot.mouseClick(dialog.agree_box, Qt.MouseButton.LeftButton)
    assert dialog.download_button.isEnabled()
    assert hub.seen() == []  # ticking the box fetches nothing

    with qtbot.waitSignal(dialog.modelReady, timeout=TIMEOUT_MS) as ready:
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    assert ready.args == [str(target)]
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=TIMEOUT_MS)

    assert download.has_agreed()
    assert download.read_model_record().model_dir == target
    assert filecmp.cmp(target / "model.pth", hub.model_dir / "model.pth", shallow=False)
    assert dialog.progress_bar.value() == PROGRESS_STEPS
    assert dialog.last_progress.done_bytes == dialog.last_progress.total_bytes
    assert dialog.result() == QDialog.DialogCode.Accepted


def test_cancel_keeps_the_partial_file_and_download_resumes(hub, make_dialog, qtbot, tmp_path):
    download.record_agreement()
    target = tmp_path / "model"
    hub.hold_after["model.pth"] = 3 * download.BLOCK_SIZE
    dialog = make_dialog(target_dir=target)
    assert dialog.agree_box.isChecked()  # agreed earlier: already ticked
    ready = []
    dialog.modelReady.connect(ready.append)

    qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(hub.holding.is_set, timeout=TIMEOUT_MS)
    # Everything the server sent before holding is written, so there is something to keep.
    work = target / ".download"
    qtbot.waitUntil(
        lambda: (
            sum(p.stat().st_size for p in work.glob("model.pth.*.incomplete"))
            == 3 * download.BLOCK_SIZE
        ),
        timeout=TIMEOUT_MS,
    )
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert "Cancelling" in dialog.status_label.text()
    assert not dialog.cancel_button.isEnabled()
    hub.release.set()  # the next block arrives, and the worker sees the cancel before writing it
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=TIMEOUT_MS)

    assert "cancelled" in dialog.status_label.text() and "resume" in dialog.status_label.text()
    assert ready == [] and dialog.isVisible()
    assert not (target / "model.pth").exists()
    partial = list((target / ".download").glob("model.pth.*.incomplete"))
    assert len(partial) == 1
    kept = partial[0].stat().st_size
    assert kept == 3 * download.BLOCK_SIZE
    assert dialog.download_button.isEnabled()
    assert dialog.download_button.text() == "Resume download"

    with qtbot.waitSignal(dialog.modelReady, timeout=TIMEOUT_MS):
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=TIMEOUT_MS)
    assert hub.seen("GET", "model.pth")[-1].headers["range"] == f"bytes={kept}-"
    assert filecmp.cmp(target / "model.pth", hub.model_dir / "model.pth", shallow=False)


def test_closing_while_downloading_cancels_then_closes(hub, make_dialog, qtbot, tmp_path):
    download.record_agreement()
    hub.hold_after["model.pth"] = download.BLOCK_SIZE
    dialog = make_dialog(target_dir=tmp_path / "model")
    qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(hub.holding.is_set, timeout=TIMEOUT_MS)

    dialog.reject()  # Escape or the window's close button
    assert dialog.isVisible() and dialog.is_busy()
    hub.release.set()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=TIMEOUT_MS)
    assert not dialog.is_busy()
    assert dialog.result() == QDialog.DialogCode.Rejected
    assert not download.model_record_path().exists()


def test_use_a_model_folder(hub, make_dialog, qtbot, monkeypatch, tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "vocab.json").write_text("{not json", encoding="utf-8")
    good = tmp_path / "good"
    shutil.copytree(tiny_model_dir, good)
    chosen = iter([str(broken), str(good)])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: next(chosen))
    dialog = make_dialog()

    with qtbot.waitSignal(dialog.failed, timeout=TIMEOUT_MS) as failure:
        qtbot.mouseClick(dialog.folder_button, Qt.MouseButton.LeftButton)
    assert "vocab.json" in failure.args[0]
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=TIMEOUT_MS)
    assert "vocab.json" in dialog.status_label.text()
    assert not download.model_record_path().exists()

    with qtbot.waitSignal(dialog.modelReady, timeout=TIMEOUT_MS) as ready:
        qtbot.mouseClick(dialog.folder_button, Qt.MouseButton.LeftButton)
    assert ready.args == [str(good)]
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=TIMEOUT_MS)
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert download.read_model_record().model_dir == good
    assert hub.seen() == []  # a folder on disk needs no network
