"""The ONNX intake on models exported the way other frameworks export them (built here, no
downloads): opset 11, weights in Constant nodes, unfolded BatchNorm, dynamic height and width,
HardSigmoid/SE blocks; every graph-stage technique then yields an honest row. And hostile files:
refused in one line before anything is parsed or written."""

from __future__ import annotations

import io
import os
import warnings
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optim import measure
from optim.build import Settings
from optim.intake import intake, safety_check
from optim.profile import onnx_layers
from optim.sources import get_source, onnx_source
from optim.sweep import sweep
from optim.techniques import DynamicInt8, Int4MatMul, Int8, MixedQuantize, Prune, Quantize
from tests.corpus import _constants


@pytest.fixture(scope="module")
def third_party(tmp_path_factory):
    """torchvision MobileNetV3-Small exported by the TorchScript exporter at opset 11 without
    constant folding (BatchNorm left unfused), weights moved into Constant nodes, dynamic H/W."""
    import torch
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    for m in net.modules():  # non-trivial BatchNorm statistics, so folding them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 3, 48, 48),), f, dynamo=False, opset_version=11,
                          do_constant_folding=False, input_names=["image"],
                          output_names=["scores"],
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}})  # fmt: skip
    model = _constants(onnx.load_from_string(f.getvalue()))
    d = tmp_path_factory.mktemp("third-party")
    onnx.save(model, d / "mnv3.onnx")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 3, 48, 48)).astype(np.float32)
    np.savez(d / "data.npz", x_test=x[:32], x_calib=x[32:])
    return d


def test_the_intake_normalizes_a_third_party_export(third_party):
    original = onnx.load(third_party / "mnv3.onnx")
    ops = Counter(n.op_type for n in original.graph.node)
    assert (
        ops["BatchNormalization"] == 34
        and ops["Constant"] > 100
        and not original.graph.initializer
    )
    x = np.load(third_party / "data.npz")["x_test"]
    path, report = intake(third_party / "mnv3.onnx", x)
    model = onnx.load(path)
    after = Counter(n.op_type for n in model.graph.node)
    assert report.opset_before == 11 and report.opset_after >= 13
    assert after["BatchNormalization"] == 0 and report.batchnorms_folded == 34
    assert after["Constant"] == 0 and report.constants_to_initializers >= 100
    assert report.max_rel_diff <= 1e-4 and report.params > 1_000_000
    assert report.flops == onnx_layers(model)["flops"].sum() > 1e6
    assert path == intake(third_party / "mnv3.onnx", x)[0]  # cached by hash
    assert any("34 BatchNormalization folded" in line for line in report.lines())


@pytest.mark.slow
def test_every_graph_technique_yields_honest_rows_on_it(third_party, fresh_store):
    spec = f"{third_party}/mnv3.onnx:{third_party}/data.npz"
    src = get_source(spec)
    assert src.metric == "agreement" and src.meta["intake"]["batchnorms_folded"] == 34
    plans = [(Quantize(4),), (Quantize(2),), (Quantize(16),), (Prune(0.5),), (Int8(),),
             (DynamicInt8(),), (Int4MatMul(),), (Prune(0.5), Quantize(4)),
             (MixedQuantize(default_bits=3),)]  # fmt: skip
    run_id = sweep(spec, plans, Settings(min_seconds=0.02, jobs=1, rounds=3), fresh_store)
    df = fresh_store.results(run_id).set_index("label")
    assert df["error"].isna().all(), df["error"].dropna().to_dict()
    base = df.loc["fp32 baseline"]
    assert base["flops"] > 1e6 and base["params"] > 1_000_000
    for label, row in df.iterrows():  # nothing pretends: rounded rows really shrank
        if "int4 w" in label or "int2" in label or "mixed" in label:
            assert row["size_bytes"] * 4 < base["size_bytes"], label
        assert row["stored"] and row["speed_verdict"], label
    assert df.loc["int8 static/channel", "precision"].startswith("int8 QDQ")
    assert "INT8" in df.loc["int8 static/channel", "stored"]


# ------------------------------------------------------------------ hostile files


def _tiny(path, initializer: TensorProto, extra_nodes=()) -> None:
    g = helper.make_graph(
        [*extra_nodes, helper.make_node("Add", ["x", initializer.name], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [initializer],
    )  # fmt: skip
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def _external(name: str, location: str, length: int = 16) -> TensorProto:
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[1, 4])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(length))):
        t.external_data.add(key=k, value=v)
    return t


def test_external_data_outside_the_folder_is_refused(tmp_path):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    (tmp_path / "m").mkdir()
    _tiny(tmp_path / "m" / "a.onnx", _external("w", "../secret.bin"))
    with pytest.raises(ValueError, match="inside the model's own folder"):
        safety_check(tmp_path / "m" / "a.onnx")
    _tiny(tmp_path / "m" / "b.onnx", _external("w", str(tmp_path / "secret.bin")))
    with pytest.raises(ValueError, match="inside the model's own folder"):
        safety_check(tmp_path / "m" / "b.onnx")


def test_external_data_through_links_or_past_the_end_is_refused(tmp_path):
    (tmp_path / "real.bin").write_bytes(b"\0" * 16)
    os.link(tmp_path / "real.bin", tmp_path / "hard.bin")
    (tmp_path / "soft.bin").symlink_to(tmp_path / "real.bin")
    (tmp_path / "own.bin").write_bytes(b"\0" * 8)
    for loc, rule in (("hard.bin", "no hard link"), ("soft.bin", "no symlink"),
                      ("own.bin", "reads bytes 0..16")):  # fmt: skip
        _tiny(tmp_path / "m.onnx", _external("w", loc))
        with pytest.raises(ValueError, match=rule):
            safety_check(tmp_path / "m.onnx")


def test_absurd_allocations_and_lying_sizes_are_refused(tmp_path):
    shape = numpy_helper.from_array(np.array([1 << 20, 1 << 20, 1 << 2], np.int64), "shape")
    g = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["big"], name="bomb")], "g", [],
        [helper.make_tensor_value_info("big", TensorProto.FLOAT, None)], [shape],
    )  # fmt: skip
    onnx.save(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "a.onnx"
    )
    with pytest.raises(ValueError, match="'bomb' \\(ConstantOfShape\\) would allocate"):
        safety_check(tmp_path / "a.onnx")
    liar = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 4], raw_data=b"\0" * 8)
    _tiny(tmp_path / "b.onnx", liar)
    with pytest.raises(ValueError, match="declares 4 elements but holds 8 bytes"):
        safety_check(tmp_path / "b.onnx")
    (tmp_path / "c.onnx").write_bytes(b"\x08\x07garbage that is not protobuf \xff\xff")
    with pytest.raises(ValueError, match="is not an ONNX model"):
        onnx_source(tmp_path / "c.onnx", _npz(tmp_path))


def _npz(tmp_path):
    np.savez(
        tmp_path / "d.npz",
        x_test=np.zeros((2, 4), np.float32),
        x_calib=np.zeros((2, 4), np.float32),
    )
    return tmp_path / "d.npz"


def test_a_normalization_that_changes_outputs_is_refused(tmp_path, monkeypatch):
    w = numpy_helper.from_array(np.ones((1, 4), np.float32), "w")
    _tiny(tmp_path / "m.onnx", w)
    import optim.intake as intake_mod

    real = intake_mod._run
    monkeypatch.setattr(
        intake_mod,
        "_run",
        lambda m, x: [o + 1 for o in real(m, x)] if isinstance(m, bytes) else real(m, x),
    )
    with pytest.raises(ValueError, match="differs from the original by 1 .* tolerance is 0.0001"):
        intake_mod.normalize(
            tmp_path / "m.onnx", np.zeros((1, 4), np.float32), tmp_path / "o.onnx"
        )
    assert not (tmp_path / "o.onnx").exists()  # nothing half-written
    # and the honest path reproduces the outputs exactly
    monkeypatch.setattr(intake_mod, "_run", real)
    report = intake_mod.normalize(
        tmp_path / "m.onnx", np.zeros((1, 4), np.float32), tmp_path / "o.onnx"
    )
    assert report.max_abs_diff == 0.0
    sess = measure.session(tmp_path / "o.onnx")
    assert sess.run(None, {"x": np.zeros((1, 4), np.float32)})[0].tolist() == [[1.0] * 4]


def test_an_onnx_source_profiles_params_and_flops_like_torch(tmp_path):
    # the digits CNN exported to ONNX and brought back as a file: the intake's per-node count
    # matches torch.utils.flop_counter on the torch model exactly, and the parameters too
    from optim.artifact import export_onnx
    from optim.build import _flops
    from optim.profile import profile
    from optim.sources import sample_source

    src = sample_source("digits_cnn")
    onnx.save(export_onnx(src.build(), src.example), tmp_path / "m.onnx")
    s = src.splits
    np.savez(tmp_path / "d.npz", x_test=s["test"].x, y_test=s["test"].y, x_calib=s["calib"].x)
    prof = profile(onnx_source(tmp_path / "m.onnx", tmp_path / "d.npz"))
    assert prof.summary["flops"] == pytest.approx(_flops(src.build(), src.example), rel=0.01)
    assert prof.summary["params"] == prof.layers["params"].sum() == 58_314
    assert prof.layers["latency_share"].fillna(0).sum() > 0.5
    assert "outputs reproduced to max |diff|" in prof.summary["intake"]  # the user reads it


def test_inapplicable_techniques_are_refused_before_a_run(tmp_path, fresh_store):
    # a conv-only graph: no MatMul/Gemm for the linear-layer techniques; an Add-only graph: no
    # weight at all for the rounding ones. Both refused in one line, and no run is left behind.
    from optim.applicable import reason

    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, 3, 3])], [w],
    )  # fmt: skip
    onnx.save(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "c.onnx"
    )
    np.savez(tmp_path / "d.npz", x_test=np.ones((4, 1, 5, 5), np.float32),
             x_calib=np.ones((4, 1, 5, 5), np.float32))  # fmt: skip
    _tiny(tmp_path / "a.onnx", numpy_helper.from_array(np.ones((1, 4), np.float32), "b"))
    np.savez(tmp_path / "e.npz", x_test=np.ones((1, 4), np.float32),
             x_calib=np.ones((1, 4), np.float32))  # fmt: skip
    conv = onnx_source(tmp_path / "c.onnx", tmp_path / "d.npz")
    assert reason((Quantize(4),), conv) is None and reason((Int8(),), conv) is None
    assert "needs MatMul/Gemm layers" in reason((Int4MatMul(),), conv)
    assert "needs MatMul/Gemm layers" in reason((DynamicInt8(),), conv)
    add = onnx_source(tmp_path / "a.onnx", tmp_path / "e.npz")
    assert "needs Conv/Gemm/MatMul weight initializers" in reason((Prune(0.5), Quantize(4)), add)
    with pytest.raises(ValueError, match=r"'int4 MatMulNBits.*' does not apply to 'c'"):
        sweep(f"{tmp_path}/c.onnx:{tmp_path}/d.npz", [(Quantize(4),), (Int4MatMul(),)],
              Settings(min_seconds=0.02, jobs=1), fresh_store)  # fmt: skip
    assert len(fresh_store.runs()) == 0


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    from optim.artifact import export_onnx
    from optim.sources import sample_source

    src = sample_source("digits_cnn")
    d = tmp_path_factory.mktemp("digits-file")
    onnx.save(export_onnx(src.build(), src.example), d / "m.onnx")
    return d / "m.onnx", src.splits


BAD_DATA = {  # what the .npz holds instead of good data -> the rule the one line names
    "scalar x_test": (dict(x_test=np.float32(1)), "`x_test` in 'd.npz' must be a non-empty batch"),
    "empty x_test": (dict(x_test=np.zeros((0, 1, 8, 8), np.float32)), "must be a non-empty batch"),
    "NaN input": (dict(x_test="nan"), "`x_test` in 'd.npz' must be finite, but 1 values are NaN/inf"),
    "complex input": (dict(x_test="complex"), "must hold real numbers, but got dtype complex64"),
    "2-D y_test": (dict(y_test="2d"), "`y_test` in 'd.npz' must be integer class labels (N,)"),
    "float labels": (dict(y_test="float"), "must be integer class labels (N,), but got dtype float"),
    "labels outside": (dict(y_test="big"), "`y_test` in d.npz must be < 10 (the model's output classes), but got max label 10"),
    "negative label": (dict(y_test="neg"), "`y_test >= 0` must hold"),
    "mis-shaped x_calib": (dict(x_calib=np.zeros((4, 1, 4, 4), np.float32)), "`x_calib.shape[1:]` must equal x_test's"),
    "all-NaN x_calib": (dict(x_calib="nan-all"), "`x_calib` in 'd.npz' must be finite"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_one_line_and_leaves_no_run(case, digits_file, tmp_path, capsys, fresh_store):
    from optim.cli import main

    model, splits = digits_file
    x, y, xc = splits["test"].x.copy(), splits["test"].y.copy(), splits["calib"].x.copy()
    arrays = dict(x_test=x, y_test=y, x_calib=xc)
    change, rule = BAD_DATA[case]
    for key, value in change.items():
        if isinstance(value, str):
            value = {"nan": np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x),
                     "complex": x.astype(np.complex64), "2d": y[:, None], "float": y + 0.5,
                     "big": np.where(np.arange(len(y)) == 3, 10, y), "neg": y - 1,
                     "nan-all": np.full_like(xc, np.nan)}[value]  # fmt: skip
        arrays[key] = value
    np.savez(tmp_path / "d.npz", **arrays)
    assert (
        main(["sweep", "--model", f"{model}:{tmp_path}/d.npz", "--bits", "4", "--sparsity", "0"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and rule in err, err
    assert len(fresh_store.runs()) == 0
