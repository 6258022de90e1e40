"""The shipped file: a standard .onnx with INT2/INT4/INT8 DequantizeLinear weights, fp16 + Cast,
or sparse initializers, that stock ONNX Runtime runs in a process that never imports optim."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optim import measure
from optim.artifact import Encoding, Graph, stored_of, to_onnx, write_artifact
from optim.build import build
from optim.rows import Stored, Width
from optim.sources import sample_source
from optim.techniques import Int8, Prune, Quantize
from optim.techniques.quantize import quantize_array


def _matmul_graph(w: np.ndarray) -> Graph:
    """y = x @ w, with w a (K, N) initializer: the smallest graph a weight can feed."""
    k, n = w.shape
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    return Graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), {})


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = measure.session(model.SerializeToString())
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("bits, elem", [(2, TensorProto.INT2), (3, TensorProto.INT4),
                                        (4, TensorProto.INT4), (8, TensorProto.INT8)])  # fmt: skip
def test_low_bit_weights_round_trip_through_onnx_runtime(bits, elem):
    # hand-computed: symmetric per column, qmax = 2**(bits-1) - 1, scale = max|w| / qmax
    w = np.array([[1.0, -0.5, 0.2, 0.0], [-1.0, 0.25, -0.2, 0.3], [0.5, 0.5, 0.1, -0.3]],
                 np.float32)  # (K=3, N=4)  # fmt: skip
    qmax = (1 << (bits - 1)) - 1
    scale = np.abs(w).max(axis=0) / qmax
    want = np.clip(np.rint(w / scale), -qmax, qmax) * scale
    enc = quantize_array(w, bits, axis=1, symmetric=True)
    model, stored = to_onnx(_matmul_graph(w).with_weights({"w": enc}))
    q = next(t for t in model.graph.initializer if t.name == "w.q")
    assert q.data_type == elem
    assert [n.op_type for n in model.graph.node] == ["DequantizeLinear", "MatMul"]
    np.testing.assert_allclose(_rows(model, 3), want, rtol=1e-6)  # MatMul may round (FMA)
    assert stored.widths[0] == Width(bits, onnx.TensorProto.DataType.Name(elem), 1.0)


def _rows(model: onnx.ModelProto, k: int) -> np.ndarray:
    """The weight as the graph computes it: the outputs for each row of the identity."""
    eye = np.eye(k, dtype=np.float32)
    return np.concatenate([_run(model, eye[i : i + 1]) for i in range(k)])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 10])
def test_int2_matmul_weights_onnx_runtime_would_miscompute_get_int4_storage(n):
    # ORT 1.32's default optimizations fuse INT2 DequantizeLinear -> MatMul and get it wrong
    # when N % 4 != 0 (rows of the fused kernel's packed weight are then misread):
    w = np.random.default_rng(n).standard_normal((16, n)).astype(np.float32)
    enc = quantize_array(w, 2, axis=1, symmetric=True)
    model, stored = to_onnx(_matmul_graph(w).with_weights({"w": enc}))
    q = next(t for t in model.graph.initializer if t.name == "w.q")
    assert q.data_type == TensorProto.INT4 and str(stored).startswith("2-bit in INT4")
    np.testing.assert_allclose(_rows(model, 16), enc.dequantize(), rtol=1e-6, atol=1e-6)


def test_asymmetric_codes_use_unsigned_storage_with_a_zero_point():
    w = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    enc = quantize_array(w, 4, axis=None, symmetric=False)  # [0, 3] over 15 steps, zp 0
    model, _ = to_onnx(_matmul_graph(w).with_weights({"w": enc}))
    types = {t.name: t.data_type for t in model.graph.initializer}
    assert types["w.q"] == TensorProto.UINT4 and types["w.zero_point"] == TensorProto.UINT4
    np.testing.assert_allclose(_rows(model, 2), w, atol=1e-6)


def test_pruned_weights_are_exact_zeros_in_the_codes():
    w = np.array([[1.0, -0.5], [-1.0, 0.25]], np.float32)
    mask = np.array([[True, False], [False, True]])
    enc = quantize_array(w, 4, axis=1, symmetric=True, mask=mask)
    model, stored = to_onnx(_matmul_graph(w).with_weights({"w": enc}))
    got = _rows(model, 2)
    assert got[0, 1] == 0 and got[1, 0] == 0
    assert stored.sparsity == pytest.approx(0.5)


def test_encoding_dequantize_applies_mask():
    enc = Encoding(np.array([[0, 3], [2, 1]], np.uint8), 2, np.float32(0.5), np.uint8(2),
                   mask=np.array([[True, False], [True, True]]))  # fmt: skip
    assert enc.dequantize().tolist() == [[-1.0, 0.0], [0.0, -0.5]]


def test_stored_names_every_width_by_share():
    stored = Stored((Width(3, "INT4", 0.97), Width(32, "fp32", 0.03)), 0.5, 100)
    assert str(stored) == "3-bit in INT4: 97 % of parameters, fp32: 3 %; 50 % zeros"
    assert Stored.from_json(json.loads(json.dumps(stored.to_json()))) == stored


# ------------------------------------------------------------------ on a real sample

PLANS = [(), (Quantize(2),), (Quantize(3),), (Quantize(4),), (Prune(0.6), Quantize(5, "tensor", symmetric=False)),
         (Prune(0.5),), (Prune(0.9),), (Quantize(16),), (Prune(0.5), Int8())]  # fmt: skip


def _alone(path, x) -> np.ndarray:
    """Outputs of ``path`` on ``x`` in a fresh Python that cannot import optim (``-I``, another
    working directory): stock ONNX Runtime and numpy only."""
    code = (
        "import sys, numpy as np, onnxruntime as ort\n"
        "assert 'optim' not in sys.modules\n"
        "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
        "x = np.load(sys.argv[2])\n"
        "np.save(sys.argv[3], np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i+64]})[0]"
        " for i in range(0, len(x), 64)]))\n"
        "try:\n    import optim\nexcept ImportError:\n    print('no optim')\n"
    )
    xin, yout = path.with_name("x.npy"), path.with_name("y.npy")
    np.save(xin, x)
    out = subprocess.run([sys.executable, "-I", "-c", code, str(path), str(xin), str(yout)],
                         capture_output=True, text=True, cwd="/", check=True)  # fmt: skip
    assert out.stdout.strip() == "no optim"
    return np.load(yout)


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: "+".join(c.label for c in p) or "fp32")
def test_shipped_file_runs_without_optim_and_reproduces_measured_outputs(plan, tmp_path):
    source = sample_source("digits_cnn")
    graph, _ = build(source, plan)
    written = write_artifact(graph, tmp_path)
    shipped = tmp_path / "model.onnx"
    assert written.size_bytes == shipped.stat().st_size
    onnx.checker.check_model(onnx.load(shipped))
    x = source.splits["test"].x
    measured = measure.predict(measure.session(shipped), x, batch=64)
    np.testing.assert_array_equal(_alone(shipped, x), measured)
    if written.download_bytes is not None:
        import zstandard

        packed = (tmp_path / "model.onnx.zst").read_bytes()
        assert len(packed) == written.download_bytes < written.size_bytes
        assert zstandard.ZstdDecompressor().decompress(packed) == shipped.read_bytes()


def test_a_rebuild_is_byte_identical(tmp_path):
    source = sample_source("digits_cnn")
    for plan in ((Prune(0.5), Quantize(4)), (Quantize(2),)):
        a, b = tmp_path / "a", tmp_path / "b"
        write_artifact(build(source, plan)[0], a)
        write_artifact(build(source, plan)[0], b)
        assert (a / "model.onnx").read_bytes() == (b / "model.onnx").read_bytes()


def test_low_bit_files_are_many_times_smaller_than_fp32(tmp_path):
    source = sample_source("digits_cnn")  # 58k parameters
    sizes = {}
    for bits in (32, 8, 4, 2):
        plan = () if bits == 32 else (Quantize(bits),)
        sizes[bits] = write_artifact(build(source, plan)[0], tmp_path / str(bits)).size_bytes
    assert sizes[32] / sizes[4] >= 6 and sizes[32] / sizes[2] >= 10, sizes
    assert sizes[32] > sizes[8] > sizes[4] > sizes[2]


def test_heavily_pruned_fp32_weights_ship_as_sparse_initializers(tmp_path):
    source = sample_source("digits_cnn")
    dense = write_artifact(build(source, ())[0], tmp_path / "dense")
    sparse = write_artifact(build(source, (Prune(0.9),))[0], tmp_path / "sparse")
    model = onnx.load(tmp_path / "sparse" / "model.onnx")
    assert len(model.graph.sparse_initializer) > 0
    assert sparse.size_bytes * 2.5 < dense.size_bytes
    assert sparse.stored.sparsity == pytest.approx(0.9, abs=0.01)
    assert stored_of(model).widths[0].container == "fp32"


def test_a_plan_that_touches_no_weight_does_not_pretend():
    w = np.ones((2, 2), np.float32)
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    graph = Graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), {})
    from optim.plan import Context, apply

    with pytest.raises(ValueError, match="no Conv/Gemm/MatMul weight"):
        apply(graph, (Quantize(4),), Context(sample_source("digits_cnn")))
