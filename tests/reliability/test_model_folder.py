"""A model folder with each file damaged in turn, or planted with a pickle that would run
code: one sentence naming the file, nothing executed, and a good folder still loads.

Missing and empty files: tests/engine/test_model.py; byte-level damage found by the CRC
check and sizes that changed since the download: tests/test_download.py."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from xtts_desktop.cli import main
from xtts_desktop.engine.model import REQUIRED_FILES, load_model
from xtts_desktop.errors import UserError


class CodePayload:
    """Unpickling this runs code: it writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _torch_payload(marker: Path, key: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        torch.save({key: CodePayload(marker)}, path)

    return write


def _raw_pickle_payload(marker: Path) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(pickle.dumps(CodePayload(marker)))

    return write


def _speakers_of_width(width: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        torch.save(
            {"Nobody": {"gpt_cond_latent": torch.zeros(1, 32, width),
                        "speaker_embedding": torch.zeros(1, 512, 1)}},
            path,
        )  # fmt: skip

    return write


def damages(marker: Path) -> dict[str, tuple[str, Callable[[Path], None], str]]:
    """case -> (file, how to damage it, what the message says besides the file name)."""
    return {
        "config binary": ("config.json", lambda p: p.write_bytes(bytes(range(256)) * 8), "JSON"),
        "config a list": ("config.json", lambda p: p.write_text("[1, 2]"), "not an XTTS"),
        "config of another model": (
            "config.json", lambda p: p.write_text(json.dumps({"model": "vits"})), "not an XTTS"
        ),
        "vocab binary": ("vocab.json", lambda p: p.write_bytes(bytes(range(256)) * 8), "vocab"),
        "vocab not a tokenizer": (
            "vocab.json",
            lambda p: p.write_text(json.dumps({"model": {"vocab": {"a": "b"}}})),
            "not a tokenizer vocabulary",
        ),
        "model random bytes": ("model.pth", lambda p: p.write_bytes(b"\x93" * 4096), "corrupt"),
        "model raw pickle": ("model.pth", _raw_pickle_payload(marker), "corrupt"),
        "model code payload": ("model.pth", _torch_payload(marker, "model"), "could run code"),
        "model a list": ("model.pth", lambda p: torch.save([1, 2], p), "cannot be loaded"),
        "model without weights": ("model.pth", lambda p: torch.save({"x": 1}, p), "cannot be loaded"),
        "speakers truncated": (
            "speakers_xtts.pth", lambda p: p.write_bytes(p.read_bytes()[:200]), "corrupt"
        ),
        "speakers raw pickle": ("speakers_xtts.pth", _raw_pickle_payload(marker), "corrupt"),
        "speakers code payload": (
            "speakers_xtts.pth", _torch_payload(marker, "Evil"), "could run code"
        ),
        "speakers a list": (
            "speakers_xtts.pth", lambda p: torch.save([1, 2], p), "not hold a table of speakers"
        ),
        "speakers of another width": (
            "speakers_xtts.pth", _speakers_of_width(7), "that this model cannot use"
        ),
    }  # fmt: skip


def folder_with(tiny_model_dir: Path, target: Path, name: str, damage) -> Path:
    """The tiny model's files as links, but for one real file, damaged."""
    target.mkdir()
    for entry in tiny_model_dir.iterdir():
        if entry.name != name:
            (target / entry.name).symlink_to(entry)
    (target / name).write_bytes((tiny_model_dir / name).read_bytes())
    damage(target / name)
    return target


def test_each_file_damaged_in_turn_is_named_and_nothing_runs(tiny_model_dir, tmp_path):
    marker = tmp_path / "pwned"
    cases = damages(marker)
    assert {file for file, _, _ in cases.values()} == set(REQUIRED_FILES)
    for number, (case, (name, damage, says)) in enumerate(cases.items()):
        folder = folder_with(tiny_model_dir, tmp_path / f"model-{number}", name, damage)
        with pytest.raises(UserError) as caught:
            load_model(folder, device="cpu", precision="fp32")
        message = str(caught.value)
        assert name in message and says in message, f"{case}: {message}"
        assert message.endswith(".") and "\n" not in message, f"{case}: {message}"
        assert not marker.exists(), f"{case}: the payload ran"
    # Nothing is left half-loaded: a good folder loads and speaks.
    good = load_model(tiny_model_dir, device="cpu", precision="fp32")
    assert good.xtts.speaker_manager.speakers


def test_the_command_line_names_a_planted_speakers_file_and_runs_nothing(
    tiny_model_dir, tmp_path, capsys
):
    marker = tmp_path / "pwned"
    folder = folder_with(
        tiny_model_dir, tmp_path / "model", "speakers_xtts.pth", _torch_payload(marker, "Evil")
    )
    args = ["--model-dir", str(folder), "--device", "cpu"]
    assert main(["say", "Hi.", *args, "--no-play", "--out", str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err
    assert f"error: {folder / 'speakers_xtts.pth'} holds Python objects besides tensors" in err
    assert "Traceback" not in err
    # Listing voices reads the speaker names with weights_only too.
    assert main(["voices", "--json", *args]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["builtin"] == []
    assert not marker.exists()
    assert not (tmp_path / "x.wav").exists()
