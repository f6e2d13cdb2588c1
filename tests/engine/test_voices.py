"""Cloning, the safetensors voice library, and never unpickling what a user hands us."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import soundfile
import torch

from xtts_desktop.engine.voices import (
    SampleAudio,
    Voice,
    VoiceLibrary,
    builtin_speaker_names,
    builtin_voices,
    clone_voice,
    read_voice_file,
    resolve_voice,
)
from xtts_desktop.errors import UserError


@pytest.fixture(scope="module")
def speech(speech_sample) -> SampleAudio:
    samples, rate = soundfile.read(speech_sample, dtype="float32")
    return SampleAudio(samples, rate, "speaker.wav")


@pytest.fixture(scope="module")
def cloned(tiny_model, speech) -> Voice:
    return clone_voice(tiny_model, "Fox", [speech])


def test_builtin_speakers_are_listed(tiny_model, tiny_model_dir):
    names = list(builtin_voices(tiny_model))
    assert names == builtin_speaker_names(tiny_model_dir)
    assert len(names) >= 3


def test_clone_has_xtts_shapes(cloned, tiny_model):
    assert cloned.gpt_cond_latent.shape == (1, 32, tiny_model.width)
    assert cloned.speaker_embedding.shape == (1, 512, 1)
    assert len(cloned.metadata["sample_sha256"]) == 64


def test_clone_matches_coqui_get_conditioning_latents(tiny_model, speech_sample, speech):
    """Same latents as coqui's own cloning from the file (which resamples with its own loader)."""
    ours = clone_voice(tiny_model, "x", [speech])
    cfg = tiny_model.xtts.config
    latent, embedding = tiny_model.xtts.get_conditioning_latents(
        str(speech_sample), gpt_cond_len=cfg.gpt_cond_len, gpt_cond_chunk_len=cfg.gpt_cond_chunk_len
    )
    assert torch.allclose(ours.gpt_cond_latent, latent, atol=1e-3)
    assert torch.allclose(ours.speaker_embedding, embedding, atol=1e-3)


def test_any_rate_and_several_samples(tiny_model, speech):
    import torchaudio

    at_48k = torchaudio.functional.resample(
        torch.from_numpy(speech.samples), speech.sample_rate, 48000
    ).numpy()
    voice = clone_voice(tiny_model, "two", [speech, SampleAudio(at_48k, 48000, "b")])
    assert voice.gpt_cond_latent.shape[-1] == tiny_model.width


def test_save_reload_identical(cloned, tmp_path):
    library = VoiceLibrary(tmp_path / "voices")
    path = library.save(cloned)
    assert path.suffix == ".safetensors"
    again = library.load("fox")
    assert torch.equal(again.gpt_cond_latent, cloned.gpt_cond_latent)
    assert torch.equal(again.speaker_embedding, cloned.speaker_embedding)
    assert again.metadata["sample_sha256"] == cloned.metadata["sample_sha256"]
    assert again.metadata["created"]
    with pytest.raises(UserError, match="already exists"):
        library.save(cloned)


def test_rename_remove_export_import(cloned, tmp_path):
    library = VoiceLibrary(tmp_path / "voices")
    library.save(cloned)
    library.rename("Fox", "Red Fox")
    assert library.names() == ["Red Fox"]
    library.export_file("Red Fox", tmp_path / "shared.safetensors")
    library.remove("Red Fox")
    assert library.names() == []
    imported = library.import_file(tmp_path / "shared.safetensors", name="Imported")
    assert library.names() == ["Imported"]
    assert torch.equal(imported.gpt_cond_latent, cloned.gpt_cond_latent)
    with pytest.raises(UserError, match="no saved voice"):
        library.remove("Fox")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_the_library_never_unpickles(cloned, tmp_path, caplog):
    folder = tmp_path / "voices"
    folder.mkdir()
    marker = tmp_path / "pwned"
    for name in ("evil.pth", "evil.pkl"):
        (folder / name).write_bytes(pickle.dumps(_Payload(marker)))
    # A pickle wearing the right extension is refused as not a voice file.
    (folder / "disguised.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    library = VoiceLibrary(folder)
    library.save(cloned)
    assert library.names() == ["Fox"]
    assert not marker.exists()
    assert "evil.pth" in caplog.text and "disguised.safetensors" in caplog.text
    with pytest.raises(UserError):
        read_voice_file(folder / "disguised.safetensors")
    with pytest.raises(UserError, match="never opened"):
        read_voice_file(folder / "evil.pth")
    assert not marker.exists()


def test_refused_samples(tiny_model, speech):
    rate = 22050
    silent = SampleAudio(np.zeros(rate * 5, dtype=np.float32), rate, "silence.wav")
    with pytest.raises(UserError, match="silent"):
        clone_voice(tiny_model, "s", [silent])
    short = SampleAudio(
        speech.samples[: int(speech.sample_rate * 1.0)], speech.sample_rate, "short.wav"
    )
    with pytest.raises(UserError, match="speech"):
        clone_voice(tiny_model, "s", [short])
    clipped = SampleAudio(np.clip(speech.samples * 50, -1, 1), speech.sample_rate, "loud.wav")
    with pytest.raises(UserError, match="clipped"):
        clone_voice(tiny_model, "s", [clipped])
    broken = SampleAudio(np.full(rate * 5, np.nan, dtype=np.float32), rate, "nan.wav")
    with pytest.raises(UserError, match="invalid"):
        clone_voice(tiny_model, "s", [broken])


def test_resolve_voice(tiny_model, cloned, tmp_path):
    library = VoiceLibrary(tmp_path / "voices")
    library.save(cloned)
    first = next(iter(builtin_voices(tiny_model)))
    assert resolve_voice(tiny_model, library, None).name == first
    assert resolve_voice(tiny_model, library, first.upper()).name == first
    assert resolve_voice(tiny_model, library, "fox").kind == "saved"
    with pytest.raises(UserError, match="Unknown voice 'Nobody'"):
        resolve_voice(tiny_model, library, "Nobody")
