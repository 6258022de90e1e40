"""Tests of the bundled sample models: splits, trained weights, weight validation, ONNX export.

Run with ``python -m pytest tests/test_sample_models.py``; ``-m "not slow"`` skips resnet18,
which trains (~3 minutes on 2 cores) into ``$OPTIM_HOME/weights`` on first use.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import sample_models
from sample_models import data
from sample_models import train as train_mod

# OPTIM_HOME before conftest's session fixture replaces it (modules are imported first)
_USER_OPTIM_HOME = os.environ.get("OPTIM_HOME")
SMALL = ["digits_cnn", "mobilenet_v3", "cancer_mlp", "digits_vit"]
# Minimum test accuracy each model must keep (the targets it was trained for).
MIN_ACCURACY = {
    "digits_cnn": 0.97,
    "resnet18": 0.95,
    "mobilenet_v3": 0.90,
    "cancer_mlp": 0.95,
    "digits_vit": 0.95,
}
INPUT_SHAPES = {
    "digits_cnn": (1, 8, 8),
    "resnet18": (3, 64, 64),
    "mobilenet_v3": (3, 64, 64),
    "cancer_mlp": (30,),
    "digits_vit": (1, 8, 8),
}


def test_samples_are_described() -> None:
    assert set(sample_models.SAMPLES) == set(MIN_ACCURACY)
    for spec in sample_models.SAMPLES.values():
        assert spec.description and "\n" not in spec.description
        assert spec.family in ("cnn", "resnet", "mobilenet", "mlp", "transformer")
        assert spec.dataset in data.DATASETS


@pytest.mark.parametrize("dataset", data.DATASETS)
def test_splits_disjoint_stratified_deterministic(dataset: str) -> None:
    idx = data.split_indices(dataset)
    n_test, n_calib = data.SPLIT_SIZES[dataset]
    assert (len(idx["test"]), len(idx["calib"])) == (n_test, n_calib)
    everything = np.concatenate(list(idx.values()))
    assert len(np.unique(everything)) == len(everything)  # disjoint
    _, y = data._raw(dataset)
    assert len(everything) == len(y)  # and covering
    again = data.split_indices(dataset)
    for name in idx:
        np.testing.assert_array_equal(idx[name], again[name])
    share = np.bincount(y) / len(y)
    for part in idx.values():  # stratified: class shares within 3 points of the whole
        np.testing.assert_allclose(np.bincount(y[part]) / len(part), share, atol=0.03)


@pytest.mark.parametrize("name", list(INPUT_SHAPES))
def test_split_arrays(name: str) -> None:
    splits = sample_models.load_splits(name)
    assert list(splits) == ["train", "calib", "test"]
    assert sample_models.load_splits(name) is splits  # cached
    for split in splits.values():
        assert split.x.dtype == np.float32 and split.y.dtype == np.int64
        assert split.x.shape[1:] == INPUT_SHAPES[name]
        assert not split.x.flags.writeable  # the cache cannot be modified in place
    if name != "cancer_mlp":
        x = splits["test"].x
        assert x.min() >= 0.0 and x.max() <= 1.0


def test_upsampled_digits_match_8x8() -> None:
    small = sample_models.load_splits("digits_cnn")["test"]
    big = sample_models.load_splits("resnet18")["test"]
    np.testing.assert_array_equal(small.y, big.y)
    np.testing.assert_array_equal(big.x, data.upsample(small.x))  # the same rows, upsampled
    np.testing.assert_array_equal(big.x[:, 0], big.x[:, 2])  # three copies of the gray image
    # at the center of each 8x8 block the upsampled image stays close to the original pixel
    np.testing.assert_allclose(big.x[:, :1, 4::8, 4::8], small.x, atol=0.25)


@pytest.mark.parametrize("name", SMALL)
def test_small_model_accuracy(name: str) -> None:
    model = sample_models.build(name)
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert sample_models.build(name) is not model  # a fresh copy on every call
    acc = train_mod.accuracy(model, sample_models.load_splits(name)["test"])
    assert acc >= MIN_ACCURACY[name], f"{name}: test accuracy {acc:.4f}"


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown sample model 'nope'"):
        sample_models.build("nope")
    with pytest.raises(ValueError, match="unknown sample model"):
        sample_models.load_splits("nope")
    with pytest.raises(SystemExit):
        train_mod.main(["nope"])


def _error(name: str) -> str:
    with pytest.raises(ValueError) as info:
        sample_models.build(name)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_corrupted_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "digits_cnn.safetensors"
    shutil.copy(sample_models.weights_path("digits_cnn"), path)
    monkeypatch.setattr(sample_models, "WEIGHTS_DIR", tmp_path)
    with open(path, "r+b") as f:  # keep the header length, break the JSON header
        f.seek(8)
        f.write(b"\x00garbage\x00")
    message = _error("digits_cnn")
    assert f"'{path}' is corrupted" in message
    assert "python -m sample_models.train digits_cnn" in message

    path.write_bytes(path.read_bytes()[:1000])  # truncated
    assert f"'{path}' is corrupted" in _error("digits_cnn")


def test_wrong_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the ViT's weights under the CNN's name: different tensor names
    shutil.copy(sample_models.weights_path("digits_vit"), tmp_path / "digits_cnn.safetensors")
    monkeypatch.setattr(sample_models, "WEIGHTS_DIR", tmp_path)
    assert "does not match model 'digits_cnn'" in _error("digits_cnn")

    # same names, one wrong shape
    model = sample_models.models.cancer_mlp()
    model[1] = torch.nn.Linear(30, 65)
    train_mod.save_weights(model, tmp_path / "cancer_mlp.safetensors", {})
    message = _error("cancer_mlp")
    assert (
        "tensor '1.weight' must be torch.float32 (64, 30), but is torch.float32 (65, 30)"
        in message
    )


def test_missing_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sample_models, "WEIGHTS_DIR", tmp_path)
    assert "does not exist" in _error("digits_vit")


def test_training_is_deterministic() -> None:
    threads = torch.get_num_threads()
    (a, acc_a), (b, acc_b) = (train_mod.train_model("cancer_mlp") for _ in range(2))
    assert acc_a == acc_b
    for key, tensor in a.state_dict().items():
        torch.testing.assert_close(tensor, b.state_dict()[key], rtol=0, atol=0)
    assert torch.get_num_threads() == threads  # global torch settings are restored


def _check_onnx(name: str, tmp_path: Path) -> None:
    """Export ``name`` with a dynamic batch, then compare ORT with torch at another batch size."""
    model = sample_models.build(name)
    x = sample_models.load_splits(name)["test"].x
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        model,
        (torch.tensor(x[:2]),),
        path,
        dynamo=True,
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (input_,) = session.get_inputs()
    for batch in (1, 7):
        (got,) = session.run(None, {input_.name: x[:batch]})
        with torch.no_grad():
            want = model(torch.tensor(x[:batch])).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", SMALL)
def test_onnx_export_matches_torch(name: str, tmp_path: Path) -> None:
    _check_onnx(name, tmp_path)


@pytest.mark.slow
def test_resnet18(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trains into the user's weights cache on first use (minutes); later sessions reuse it."""
    # conftest gives each session a fresh OPTIM_HOME; the weights cache outlives it on purpose
    if _USER_OPTIM_HOME is None:
        monkeypatch.delenv("OPTIM_HOME", raising=False)
    else:
        monkeypatch.setenv("OPTIM_HOME", _USER_OPTIM_HOME)
    model = sample_models.build("resnet18")
    assert sample_models.weights_path("resnet18").is_file()
    acc = train_mod.accuracy(model, sample_models.load_splits("resnet18")["test"])
    assert acc >= MIN_ACCURACY["resnet18"], f"resnet18: test accuracy {acc:.4f}"
    _check_onnx("resnet18", tmp_path)
