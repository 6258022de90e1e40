"""Bring-your-own models (ONNX + .npz) and profiles."""

from __future__ import annotations

import numpy as np
import pytest

from optim.artifact import export_onnx
from optim.profile import profile
from optim.sources import get_source, onnx_source, sample_source
from optim.sweep import Settings, grid, sweep
from optim.techniques import Distill, Quantize, StructuredPrune


@pytest.fixture(scope="module")
def byo(tmp_path_factory):
    d = tmp_path_factory.mktemp("byo")
    src = sample_source("digits_cnn")
    (d / "m.onnx").write_bytes(export_onnx(src.build(), src.example).SerializeToString())
    s = src.splits
    np.savez(d / "labels.npz", x_test=s["test"].x, y_test=s["test"].y, x_calib=s["calib"].x)
    np.savez(d / "nolabels.npz", x_test=s["test"].x, x_calib=s["calib"].x)
    return d


def test_onnx_source_with_labels_sweeps_like_a_sample(byo, fresh_store):
    src = get_source(f"{byo}/m.onnx:{byo}/labels.npz")
    assert src.metric == "top1" and src.input_shape == (1, 8, 8)
    run_id = sweep(f"{byo}/m.onnx:{byo}/labels.npz", grid(bits=(4, 32), sparsity=(0.0,)),
                   Settings(min_seconds=0.02, jobs=1), fresh_store)  # fmt: skip
    df = fresh_store.results(run_id)
    base = sample_source("digits_cnn")
    assert len(df) == 2 and df["accuracy"].notna().all()
    assert df[df["is_baseline"]]["accuracy"].iloc[0] > 0.95 and base.metric == "top1"


def test_without_labels_the_metric_is_agreement_with_baseline(byo, fresh_store):
    spec = f"{byo}/m.onnx:{byo}/nolabels.npz"
    assert get_source(spec).metric == "agreement"
    run_id = sweep(spec, grid(bits=(2, 32), sparsity=(0.0,)), Settings(min_seconds=0.02, jobs=1),
                   fresh_store)  # fmt: skip
    df = fresh_store.results(run_id).set_index("label")
    assert df.loc["fp32 baseline", "accuracy"] == 1.0
    assert df.loc["int2 w/channel", "accuracy"] == df.loc["int2 w/channel", "agreement"] < 1.0


def test_onnx_sources_refuse_torch_steps_before_anything_is_written(byo, fresh_store):
    spec = f"{byo}/m.onnx:{byo}/labels.npz"
    for plan in [(StructuredPrune(0.5),), (Distill(0.5), Quantize(4))]:
        with pytest.raises(ValueError, match=r"needs a torch model, but 'm' is an ONNX file"):
            sweep(spec, [plan], Settings(min_seconds=0.02, jobs=1), fresh_store)
    assert len(fresh_store.runs()) == 0


def test_npz_is_never_unpickled(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "d.npz", x_test=np.array([{"a": 1}], dtype=object), x_calib=np.zeros(2))
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match="is not a readable .npy .object arrays"):
        onnx_source(tmp_path / "m.onnx", tmp_path / "d.npz")


def test_missing_arrays_are_named(tmp_path):
    np.savez(tmp_path / "d.npz", x_test=np.zeros((2, 3), np.float32))
    from onnx import TensorProto, helper, save

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 3]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", io[:1], io[1:])
    save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    with pytest.raises(ValueError, match="must hold `x_calib`"):
        onnx_source(tmp_path / "m.onnx", tmp_path / "d.npz")


def test_profile_has_params_flops_and_latency_shares():
    prof = profile("digits_cnn")
    layers = prof.layers
    assert prof.summary["params"] == layers["params"].sum()
    assert prof.summary["flops"] > 0 and layers["flops"].sum() == pytest.approx(
        prof.summary["flops"]
    )
    shares = layers["latency_share"].fillna(0)
    assert 0.5 < shares.sum() <= 1.0 + 1e-9  # most measured time maps to named layers
    assert prof.summary["accuracy"] > 0.95 and prof.summary["size_bytes"] > 0
