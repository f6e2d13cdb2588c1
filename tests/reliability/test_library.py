"""The settings file and the voice library against damage and planted files: corrupt
settings are moved aside, bad voice files are skipped with a warning and refused with a
sentence, pickles are never opened, and a voice travels as one safetensors file."""

from __future__ import annotations

import json
import logging
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from xtts_desktop import config
from xtts_desktop.cli import main
from xtts_desktop.engine.voices import (
    VOICE_FORMAT,
    Voice,
    VoiceLibrary,
    read_voice_file,
)
from xtts_desktop.errors import UserError

WIDTH = 64


class CodePayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


# ----- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"{ not json", bytes(range(256)) * 4, b"[1, 2, 3]", b"", b'"just a string"'],
    ids=["broken-json", "binary", "a-list", "empty", "a-string"],
)
def test_a_corrupt_settings_file_is_moved_aside_and_defaults_used(content):
    path = config.settings_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    loaded = config.load_settings()
    assert loaded.settings == config.Settings()
    assert loaded.problem is not None and loaded.problem.endswith("defaults are used.")
    [aside] = path.parent.glob("settings.json.corrupt-*")
    assert str(aside) in loaded.problem
    assert aside.read_bytes() == content  # nothing of the user's is lost
    config.save_settings(loaded.settings.replace(voice="Ana"))
    assert config.load_settings() == config.LoadedSettings(config.Settings(voice="Ana"))


def test_wrong_values_fall_back_one_by_one():
    path = config.settings_path()
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps({"voice": 12, "speed": 99, "language": "de", "extra": [1], "unknown": 1})
    )
    loaded = config.load_settings()
    assert loaded.problem is None
    assert loaded.settings == config.Settings(language="de", speed=2.0)


def test_a_full_disk_keeps_the_old_settings_whole(small_disk, monkeypatch):
    disk = small_disk("16k", name="config")
    monkeypatch.setenv("XTTS_DESKTOP_CONFIG_DIR", str(disk))
    config.save_settings(config.Settings(voice="Kept"))
    before = config.settings_path().read_bytes()
    with pytest.raises(OSError):
        (disk / "filler").write_bytes(b"x" * 64 * 1024)  # fills the disk
    with pytest.raises(OSError):  # the window shows it (gui.main_window.save_settings)
        config.save_settings(config.Settings(voice="New", extra={"big": "y" * 20000}))
    assert config.settings_path().read_bytes() == before
    assert sorted(p.name for p in disk.iterdir()) == ["filler", "settings.json"]


# ----- voice files ---------------------------------------------------------------------------


def voice_tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "gpt_cond_latent": torch.randn(1, 32, WIDTH, generator=generator),
        "speaker_embedding": torch.randn(1, 512, 1, generator=generator),
    }


def metadata(name: str) -> dict[str, str]:
    return {"format": VOICE_FORMAT, "name": name, "created": "2025-01-01T00:00:00"}


def bad_voice_files(folder: Path, marker: Path) -> dict[str, tuple[Path, str]]:
    """file name -> (path, what the refusal says)."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[Path, str]] = {}

    def safetensors(name: str, tensors: dict, meta: dict | None, says: str) -> None:
        save_file(tensors, folder / name, metadata=meta)
        files[name] = (folder / name, says)

    good = voice_tensors()
    safetensors("extra.safetensors", {**good, "more": torch.zeros(3)}, metadata("Extra"),
                "unexpected tensors")  # fmt: skip
    safetensors("foreign.safetensors", good, None, "not an XTTS Desktop voice file")
    safetensors("nameless.safetensors", good, metadata("\x07\x08"), "usable name")
    safetensors("shape.safetensors",
                {**good, "speaker_embedding": torch.zeros(1, 256, 1)}, metadata("Shape"),
                "wrong shape")  # fmt: skip
    safetensors("long.safetensors",
                {**good, "gpt_cond_latent": torch.zeros(1, 5000, 4)}, metadata("Long"),
                "wrong shape")  # fmt: skip
    safetensors("integers.safetensors",
                {**good, "gpt_cond_latent": torch.zeros(1, 32, WIDTH, dtype=torch.int32)},
                metadata("Ints"), "wrong type")  # fmt: skip
    nan = good["gpt_cond_latent"].clone()
    nan[0, 3, 5] = float("nan")
    safetensors("nan.safetensors", {**good, "gpt_cond_latent": nan}, metadata("NaN"), "NaN")
    whole = folder / "whole.safetensors"
    save_file(good, whole, metadata=metadata("Whole"))
    (folder / "truncated.safetensors").write_bytes(whole.read_bytes()[:300])
    files["truncated.safetensors"] = (folder / "truncated.safetensors", "not a valid voice file")
    whole.unlink()
    (folder / "noise.safetensors").write_bytes(np.random.default_rng(2).bytes(4000))
    files["noise.safetensors"] = (folder / "noise.safetensors", "not a valid voice file")
    # A header that claims 90 MB: refused before anything is allocated for it.
    (folder / "header.safetensors").write_bytes(struct.pack("<Q", 90 * 2**20) + b"{" + b" " * 64)
    files["header.safetensors"] = (folder / "header.safetensors", "not a valid voice file")
    with open(folder / "huge.safetensors", "wb") as handle:
        handle.truncate(40 * 2**20)  # sparse: no disk used
    files["huge.safetensors"] = (folder / "huge.safetensors", "too large")
    # Pickles: one in the clear, one wearing the safetensors extension.
    torch.save({"x": CodePayload(marker)}, folder / "disguised.safetensors")
    files["disguised.safetensors"] = (folder / "disguised.safetensors", "not a valid voice file")
    for name in ("evil.pth", "evil.pkl", "evil.pt", "evil.bin", "evil.npy"):
        (folder / name).write_bytes(pickle.dumps(CodePayload(marker)))
        files[name] = (folder / name, "never opened")
    return files


def test_the_library_lists_good_voices_and_warns_once_about_each_bad_file(tmp_path, caplog):
    folder = tmp_path / "voices"
    marker = tmp_path / "pwned"
    bad = bad_voice_files(folder, marker)
    library = VoiceLibrary(folder)
    library.save(Voice("Good", *voice_tensors().values(), "saved"))
    with caplog.at_level(logging.WARNING, logger="xtts_desktop.engine.voices"):
        # Listing reads headers only: values (NaN) are checked when a voice is loaded.
        assert library.names() == ["Good", "NaN"]
        assert library.names() == ["Good", "NaN"]
    warned = [record.getMessage() for record in caplog.records]
    for name in bad:
        mentions = sum(f"{folder / name}:" in message for message in warned)
        assert mentions == (name != "nan.safetensors"), name
    for name, (path, says) in bad.items():
        with pytest.raises(UserError) as caught:
            read_voice_file(path)
        assert says in str(caught.value), f"{name}: {caught.value}"
        with pytest.raises(UserError):
            library.import_file(path, name="Imported")
    with pytest.raises(UserError, match="NaN"):
        library.load("NaN")
    assert library.names() == ["Good", "NaN"]
    assert not marker.exists()
    voice = library.load("good")
    assert voice.gpt_cond_latent.shape == (1, 32, WIDTH)


def test_voices_travel_as_one_safetensors_file(tiny_model_dir, tmp_path, capsys, small_disk):
    """export, import elsewhere, and refusals on the command line (exit 2, one line)."""
    library = VoiceLibrary(config.voices_dir())
    from xtts_desktop.engine.model import load_model

    width = load_model(tiny_model_dir, device="cpu", precision="fp32").width
    latent = torch.randn(1, 32, width)
    library.save(Voice("Travels", latent, torch.randn(1, 512, 1), "saved"))
    shared = tmp_path / "travels.safetensors"
    assert main(["voices", "export", "Travels", str(shared)]) == 0
    assert main(["voices", "remove", "Travels"]) == 0
    assert main(["voices", "import", str(shared), "--name", "Back"]) == 0
    assert torch.equal(library.load("Back").gpt_cond_latent, latent)
    capsys.readouterr()
    marker = tmp_path / "pwned"
    bad = bad_voice_files(tmp_path / "incoming", marker)
    read_only = small_disk("1m", name="ro", read_only=True)
    refusals = [
        ["voices", "export", "Back", str(tmp_path / "back.pth")],
        ["voices", "export", "Back", str(read_only / "back.safetensors")],
        ["voices", "export", "Back", str(tmp_path)],
        *(["voices", "import", str(path)] for path, _ in bad.values()),
    ]
    for args in refusals:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
    assert library.names() == ["Back"]
    assert not marker.exists()
    assert not (tmp_path / "back.pth").exists()
    assert os.listdir(read_only) == []
