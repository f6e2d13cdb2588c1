"""Finding, checking and loading an XTTS folder; the device policy without CUDA."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from xtts_desktop.engine.model import (
    REQUIRED_FILES,
    check_model_dir,
    choose_device,
    choose_precision,
    load_model,
    locate_model,
)
from xtts_desktop.errors import UserError


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    return target


def test_tiny_model_loads_through_coqui(tiny_model):
    from TTS.tts.models.xtts import Xtts

    assert isinstance(tiny_model.xtts, Xtts)
    assert tiny_model.is_random_weights
    assert tiny_model.device.torch_device == "cpu"
    assert tiny_model.precision == "fp32"


def test_location_order(monkeypatch, tmp_path):
    monkeypatch.setenv("XTTS_DESKTOP_MODEL_DIR", str(tmp_path / "env"))
    assert locate_model(tmp_path / "arg").path == tmp_path / "arg"
    assert locate_model(None).path == tmp_path / "env"
    monkeypatch.delenv("XTTS_DESKTOP_MODEL_DIR")
    from xtts_desktop import config

    record = config.config_dir() / "model.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"model_dir": str(tmp_path / "downloaded")}))
    assert locate_model(None).path == tmp_path / "downloaded"
    record.write_text("{ broken")
    monkeypatch.setenv("XTTS_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    location = locate_model(None)
    assert location.path.is_relative_to(tmp_path / "data")
    assert location.source == "the default location"


def test_missing_model_says_where_it_looked_and_how_to_get_one(tmp_path):
    with pytest.raises(UserError) as caught:
        load_model(tmp_path / "nowhere", device="cpu")
    message = str(caught.value)
    assert str(tmp_path / "nowhere") in message
    assert "xtts-desktop download" in message


@pytest.mark.parametrize("name", REQUIRED_FILES)
def test_each_missing_file_is_named(model_copy, name):
    (model_copy / name).unlink()
    with pytest.raises(UserError, match=name.replace(".", r"\.")):
        check_model_dir(model_copy)


@pytest.mark.parametrize("name", REQUIRED_FILES)
def test_each_empty_file_is_named(model_copy, name):
    (model_copy / name).write_bytes(b"")
    with pytest.raises(UserError, match=name.replace(".", r"\.")):
        check_model_dir(model_copy)


def test_truncated_model_pth(model_copy):
    path = model_copy / "model.pth"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="model.pth is corrupt or truncated"):
        load_model(model_copy, device="cpu")


def test_config_that_is_not_json(model_copy):
    (model_copy / "config.json").write_text("{ not json")
    with pytest.raises(UserError, match="config.json is not valid JSON"):
        load_model(model_copy, device="cpu")


def test_weights_that_do_not_match_the_config(model_copy):
    config = json.loads((model_copy / "config.json").read_text())
    config["model_args"]["gpt_layers"] = 3
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="does not match"):
        load_model(model_copy, device="cpu")


def test_vocab_larger_than_the_model(model_copy):
    vocab = json.loads((model_copy / "vocab.json").read_text())
    words = vocab["model"]["vocab"]
    for number in range(500):
        words[f"extra{number}"] = len(words)
    (model_copy / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(UserError, match="vocab.json"):
        load_model(model_copy, device="cpu")


def test_device_policy_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    auto = choose_device("auto")
    assert auto.torch_device == "cpu"
    assert auto.warning and "CPU" in auto.warning
    assert choose_device("cpu").warning is None
    with pytest.raises(UserError, match="CUDA"):
        choose_device("cuda")
    with pytest.raises(UserError, match="Unknown device"):
        choose_device("tpu")


def test_precision_policy():
    from xtts_desktop.engine.model import int8_weights_supported

    assert int8_weights_supported(), "torch 2.9's CPU int8 weight kernel should be there"
    assert choose_precision("auto", "cpu") == "int8"
    assert choose_precision("auto", "cuda") == "fp16"
    assert choose_precision("bf16", "cpu") == "bf16"
    with pytest.raises(UserError, match="fp16 needs a CUDA GPU"):
        choose_precision("fp16", "cpu")
