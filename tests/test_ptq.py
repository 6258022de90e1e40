"""PTQ algorithms that recover accuracy without training: bias correction, cross-layer
equalization, GPTQ and SmoothQuant, each against a case computed by hand on tiny arrays, then
built end to end into the standard file that ships, on a sample and on a corpus model."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization.neural_compressor.weight_only import gptq as ort_gptq

from optim import applicable, measure
from optim import plan as plans
from optim.artifact import Graph
from optim.build import Settings, evaluate
from optim.sources import ModelSource, Split, get_source, sample_source
from optim.techniques import GPTQ, BiasCorrect, Equalize, Quantize, SmoothQuant
from optim.techniques.gptq import gptq_codes, gptq_round
from optim.techniques.smoothquant import smoothing_scales
from tests.corpus import CORPUS


def _model(nodes, inits, shape_in, shape_out) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape_in)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape_out)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _ctx(model: onnx.ModelProto, calib: np.ndarray, tmp_path) -> plans.Context:
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)
    x = np.asarray(calib, np.float32)
    splits = {"calib": Split(x), "test": Split(x)}
    return plans.Context(ModelSource("tiny", "", splits, onnx_path=path, metric="agreement"))


def _run(model: onnx.ModelProto, x) -> np.ndarray:
    return measure.predict(measure.session(model.SerializeToString()), np.asarray(x, np.float32))


def _init(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def test_bias_correction_hand_computed(tmp_path):
    # y = x @ W, W = (0.9, 0.5): int2 (qmax 1, scale 0.9) rounds both to 0.9. On the calib
    # rows (1, 1) and (1, 3) (mean (1, 2)) the fp32 mean is 0.9 + 1.0 = 1.9, the rounded one
    # 0.9 + 1.8 = 2.7: a new bias of -0.8 after the MatMul puts the mean back.
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], {"w": [[0.9], [0.5]]},
                   [None, 2], [None, 1])  # fmt: skip
    ctx = _ctx(model, [[1, 1], [1, 3]], tmp_path)
    out = plans.apply(Graph(model, {}), (BiasCorrect(2),), ctx)
    assert [n.op_type for n in out.model.graph.node] == ["MatMul", "Add"]
    np.testing.assert_allclose(_init(out.model, "y.bias"), [-0.8], atol=1e-6)
    np.testing.assert_allclose(_run(out.model, [[1, 1]]), [[1.0]], atol=1e-6)
    assert out.encodings["w"].dequantize().ravel().tolist() == pytest.approx([0.9, 0.9])
    # Gemm with beta 2 and a bias: the correction of its bias is halved
    gemm = helper.make_node("Gemm", ["x", "w", "c"], ["y"], beta=2.0)
    model = _model([gemm], {"w": [[0.9], [0.5]], "c": [1.0]}, [None, 2], [None, 1])
    out = plans.apply(Graph(model, {}), (BiasCorrect(2),), _ctx(model, [[1, 1], [1, 3]], tmp_path))
    np.testing.assert_allclose(_init(out.model, "c"), [1.0 - 0.4], atol=1e-6)


def test_equalization_hand_computed(tmp_path):
    # 1x1 convs: W1 rows have ranges (4, 1), W2's input channels (1, 4): s = sqrt(r1 / r2) =
    # (2, 0.5); W1 / s = (2, 2), b1 / s = (1, 4), W2 * s = (2, 2); the function is unchanged.
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"])]  # fmt: skip
    inits = {"w1": np.array([4.0, 1.0]).reshape(2, 1, 1, 1), "b1": [2.0, 2.0],
             "w2": np.array([1.0, 4.0]).reshape(1, 2, 1, 1)}  # fmt: skip
    model = _model(nodes, inits, [None, 1, 1, 1], [None, 1, 1, 1])
    x = np.array([-2.0, -0.5, 0.3, 1.0]).reshape(4, 1, 1, 1)
    out = plans.apply(Graph(model, {}), (Equalize(),), _ctx(model, x, tmp_path))
    np.testing.assert_allclose(_init(out.model, "w1").ravel(), [2.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(_init(out.model, "b1"), [1.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(_init(out.model, "w2").ravel(), [2.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(_run(out.model, x), _run(model, x), rtol=1e-5)
    with pytest.raises(ValueError, match="must come before the steps that round or prune"):
        plans.apply(Graph(model, {}), (Quantize(4), Equalize()), _ctx(model, x, tmp_path))


def test_gptq_hand_computed():
    # Three inputs, one output, int3 (qmax 3, scale 0.9 / 3 = 0.3); inputs 0 and 1 correlate
    # (H01 = 0.9). Row 0: 0.4 rounds to 0.3, error 0.1; GPTQ moves it onto row 1 as
    # w1 + H01 / H11 * 0.1 = 0.42 + 0.09 = 0.51, which rounds to 0.6 (plain rounding: 0.3).
    # Row 2 (uncorrelated, the max) is unchanged. Hessian-weighted error: plain d = (.1, .12,
    # 0) gives d'Hd = 0.046, GPTQ's d = (.1, -.18, 0) gives 0.010.
    w = np.array([[0.4], [0.42], [0.9]])[None]
    h = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])[None]
    codes, scale = gptq_round(w, h, bits=3, percdamp=0.0, actorder=False)
    assert codes.ravel().tolist() == [1, 2, 3] and scale.ravel() == pytest.approx([0.3])
    codes, _ = gptq_codes(w, h, GPTQ(3, percdamp=0.0, actorder=False))
    assert codes.ravel().tolist() == [1, 2, 3]  # kept: lower error than plain rounding (1, 1, 3)


def test_onnxruntime_gptq_is_plain_rounding():
    """Why GPTQ is written here: ONNX Runtime 1.32's GPTQ gives the same weights whatever the
    Hessian, i.e. round-to-nearest (it compensates through a zero triangle of U)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 16))
    x[:, 1:] += 0.8 * x[:, :1]  # correlated inputs: GPTQ must differ from rounding here
    w = rng.standard_normal((16, 4))
    args = dict(num_bits=3, group_size=-1, scheme="sym", percdamp=0.01, perchannel=True)
    with_h = ort_gptq(w.copy(), 2 * x.T @ x / len(x), **args)
    identity = ort_gptq(w.copy(), np.eye(16), **args)
    np.testing.assert_allclose(with_h, identity)
    ours, _ = gptq_round(w[None], (2 * x.T @ x / len(x))[None], 3)
    assert not np.array_equal(ours[0], np.clip(np.rint(w / (np.abs(w).max(0) / 3)), -3, 3))


def test_smoothquant_hand_computed(tmp_path):
    # LayerNorm over 2 channels outputs (+-1, -+1) times its scale (4, 1): max|x| = (4, 1);
    # W rows have max (1, 4); alpha 0.5: s = (sqrt(4 / 1), sqrt(1 / 4)) = (2, 0.5); the
    # LayerNorm scale becomes (2, 2), W's rows (2, 2), the function is unchanged.
    assert smoothing_scales(np.array([4.0, 1.0]), np.array([1.0, 4.0]), 0.5).tolist() == [2, 0.5]
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["n"], epsilon=1e-12),
             helper.make_node("MatMul", ["n", "w"], ["y"])]  # fmt: skip
    model = _model(nodes, {"g": [4.0, 1.0], "b": [0.0, 0.0], "w": [[1.0], [4.0]]},
                   [None, 2], [None, 1])  # fmt: skip
    x = np.array([[0.0, 1.0], [3.0, 1.0]])
    out = plans.apply(Graph(model, {}), (SmoothQuant(0.5),), _ctx(model, x, tmp_path))
    np.testing.assert_allclose(_init(out.model, "g"), [2.0, 2.0], rtol=1e-4)
    np.testing.assert_allclose(_init(out.model, "w").ravel(), [2.0, 2.0], rtol=1e-4)
    np.testing.assert_allclose(_run(out.model, x), _run(model, x), rtol=1e-5)


@pytest.mark.parametrize(
    "cfg, message",
    [
        (lambda: BiasCorrect(bits=1), r"`2 <= bits <= 8` must hold, but got bits=1"),
        (lambda: GPTQ(bits=9), r"`2 <= bits <= 8` must hold, but got bits=9"),
        (lambda: GPTQ(percdamp=-0.1), r"`0 <= percdamp <= 1` must hold, but got percdamp=-0.1"),
        (lambda: Equalize(iterations=0), r"`1 <= iterations <= 100` must hold"),
        (lambda: SmoothQuant(alpha=1.5), r"`0 <= alpha <= 1` must hold, but got alpha=1.5"),
    ],
)
def test_bad_ptq_configs_name_the_rule_and_value(cfg, message):
    with pytest.raises(ValueError, match=message):
        cfg()


def test_ptq_ships_standard_files_that_beat_rounding_on_a_sample(tmp_path):
    """Built into the file that ships and measured from it: at int2 on digits_cnn, GPTQ and
    bias correction store the same bytes as plain rounding, and GPTQ is far more accurate."""
    settings = Settings(min_seconds=0.05, rounds=2)
    cnn = sample_source("digits_cnn")
    _, base_out = evaluate(cnn, (), tmp_path / "base", settings, None)
    rows = {}
    for i, plan in enumerate([(Quantize(2),), (GPTQ(2),), (BiasCorrect(2),)]):
        rows[plans.label(plan)], _ = evaluate(cnn, plan, tmp_path / str(i), settings, base_out)
    plain = rows["int2 w/channel"]
    assert rows["int2 w/channel GPTQ"].size_bytes == plain.size_bytes
    assert rows["int2 w/channel + bias corr"].size_bytes == plain.size_bytes
    assert rows["int2 w/channel GPTQ"].accuracy > plain.accuracy + 0.3  # 0.98 vs 0.35
    for row in rows.values():
        onnx.checker.check_model(onnx.load(f"{row.artifact}/model.onnx"))
        assert row.size_bytes == os.path.getsize(f"{row.artifact}/model.onnx")


def test_ptq_on_a_corpus_model(tmp_path):
    """A third-party-style CNN (external weights): GPTQ and bias correction build standard
    files; SmoothQuant is refused up front (no LayerNorm), with its reason."""
    builder, _ = CORPUS["CNN with external data"]
    np.savez(tmp_path / "data.npz", **builder(tmp_path))
    source = get_source(f"{tmp_path}/model.onnx:{tmp_path}/data.npz")
    why = applicable.reason((SmoothQuant(),), source)
    assert why and "LayerNormalization" in why
    settings = Settings(min_seconds=0.05, rounds=2)
    _, base_out = evaluate(source, (), tmp_path / "base", settings, None)
    for i, plan in enumerate([(GPTQ(3),), (BiasCorrect(3),)]):
        assert applicable.reason(plan, source) is None
        row, _ = evaluate(source, plan, tmp_path / str(i), settings, base_out)
        assert row.error is None and row.accuracy is not None
        onnx.checker.check_model(onnx.load(f"{row.artifact}/model.onnx"))
