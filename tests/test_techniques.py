"""Techniques: hand-computed quantization, exact sparsity, structured pruning, and one contract
test that runs every registered technique through the same checks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from optim import measure
from optim import plan as plans
from optim.artifact import weight_initializers
from optim.build import Settings, build, evaluate
from optim.sources import sample_source
from optim.techniques import (
    GPTQ,
    QAT,
    BiasCorrect,
    Distill,
    DynamicInt8,
    Equalize,
    FineTune,
    GradualPrune,
    Int4MatMul,
    Int8,
    Int8Auto,
    Int8Fallback,
    LowRank,
    MixedQuantize,
    Prune,
    Quantize,
    SmoothQuant,
    StructuredPrune,
)
from optim.techniques.quantize import quantize_array


def test_symmetric_per_channel_quantization_hand_computed():
    w = np.array([[0.9, -0.3, 0.1], [2.0, 1.0, -0.5]], np.float32)
    enc = quantize_array(w, bits=3, axis=0, symmetric=True)
    # qmax = 3: scales 0.9/3 = 0.3 and 2/3; codes round(w/scale) in [-3, 3] (1.5 rounds
    # to even: 2), stored +4
    np.testing.assert_allclose(enc.scale.ravel(), [0.3, 2 / 3], rtol=1e-6)
    assert enc.codes.tolist() == [[7, 3, 4], [7, 6, 3]]
    np.testing.assert_allclose(
        enc.dequantize(), [[0.9, -0.3, 0.0], [2.0, 4 / 3, -2 / 3]], rtol=1e-6
    )


def test_asymmetric_per_tensor_quantization_hand_computed():
    w = np.array([0.0, 1.0, 3.0, 1.4], np.float32)
    enc = quantize_array(w, bits=2, axis=None, symmetric=False)
    # range [0, 3] over 3 steps: scale 1, zero point 0; 1.4 rounds to 1
    assert float(enc.scale) == 1.0 and int(enc.zero_point) == 0
    assert enc.codes.tolist() == [0, 1, 3, 1]
    w = np.array([-1.0, 0.0, 2.0], np.float32)
    enc = quantize_array(w, bits=2, axis=None, symmetric=False)
    assert float(enc.scale) == 1.0 and int(enc.zero_point) == 1  # zero stays exact
    assert enc.dequantize().tolist() == [-1.0, 0.0, 2.0]


def _weights(graph) -> dict[str, np.ndarray]:
    inits = {t.name: t for t in graph.model.graph.initializer}
    return {n: numpy_helper.to_array(inits[n]) for n in weight_initializers(graph.model)}


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.9])
def test_global_pruning_sparsity_is_exact(amount):
    graph, _ = build(sample_source("digits_cnn"), (Prune(amount),))
    ws = _weights(graph)
    total = sum(w.size for w in ws.values())
    zeros = sum(int((w == 0).sum()) for w in ws.values())
    assert zeros == round(amount * total)


def test_per_layer_pruning_and_threshold():
    graph, _ = build(sample_source("digits_cnn"), (Prune(0.5, scope="layer"),))
    for name, w in _weights(graph).items():
        assert int((w == 0).sum()) == round(0.5 * w.size), name
    base = _weights(build(sample_source("digits_cnn"), ())[0])
    graph, _ = build(sample_source("digits_cnn"), (Prune(threshold=0.05),))
    for name, w in _weights(graph).items():
        assert np.array_equal(w == 0, np.abs(base[name]) < 0.05), name


def test_pruning_survives_quantization():
    graph, _ = build(sample_source("digits_cnn"), (Prune(0.75), Quantize(3, symmetric=False)))
    ws = _weights(graph)
    zeros = sum(int((w == 0).sum()) for w in ws.values())
    assert zeros >= round(0.75 * sum(w.size for w in ws.values()))


def test_structured_pruning_lowers_flops_params_and_size(tmp_path):
    source = sample_source("digits_cnn")
    settings = Settings(min_seconds=0.3)
    base, _ = evaluate(source, (), tmp_path / "a", settings, None)
    small, _ = evaluate(source, (StructuredPrune(0.5),), tmp_path / "b", settings, None)
    assert small.flops < 0.5 * base.flops
    assert small.params < 0.5 * base.params
    assert small.size_bytes < 0.5 * base.size_bytes
    assert small.graph_id != base.graph_id  # a smaller graph runs (its speed: bench/)


def test_plan_order_is_checked():
    with pytest.raises(ValueError, match="torch-stage steps must come before graph-stage steps"):
        plans.validate((Quantize(4), StructuredPrune(0.5)))
    with pytest.raises(
        ValueError,
        match=r"`Int8` must be the plan's last step .* but got plan 'int8 static/channel \+ prune",
    ):
        plans.validate((Int8(), Prune(0.5)))
    assert plans.validate((Quantize(4), Prune(0.5)))  # weight rounding, then pruning: fine


@pytest.mark.parametrize(
    "cfg, message",
    [
        (lambda: Quantize(bits=1), r"`2 <= bits <= 8 or bits == 16` must hold, but got bits=1"),
        (lambda: Quantize(bits=33), r"but got bits=33"),
        (lambda: Quantize(granularity="row"), r"`granularity` must be one of"),
        (lambda: Prune(1.0), r"`0 <= sparsity < 1` must hold, but got sparsity=1.0"),
        (lambda: Prune(None), r"one of `amount` and `threshold` must be set"),
        (lambda: Prune(threshold=-1.0), r"`threshold >= 0` must hold"),
        (lambda: StructuredPrune(-0.1), r"`0 <= sparsity < 1` must hold, but got sparsity=-0.1"),
        (lambda: Int8(calibration="entropy"), r"`calibration` must be one of"),
        (lambda: Int4MatMul(block_size=48), r"block_size=48"),
    ],
)
def test_bad_configs_name_the_rule_and_value(cfg, message):
    with pytest.raises(ValueError, match=message):
        cfg()


EXAMPLES = {
    "Quantize": Quantize(3),
    "Prune": Prune(0.5),
    "StructuredPrune": StructuredPrune(0.25),
    "Int8": Int8(),
    "Int8Auto": Int8Auto(rounds=2, seconds=0.02),
    "Int8Fallback": Int8Fallback(0.99, step=0, rounds=2, seconds=0.02),
    "DynamicInt8": DynamicInt8(),
    "Int4MatMul": Int4MatMul(),
    "FineTune": FineTune(1),
    "LowRank": LowRank(0.5),
    "Distill": Distill(0.5, epochs=3),
    "QAT": QAT(3, epochs=1),
    "GradualPrune": GradualPrune(0.5, steps=2),
    "MixedQuantize": MixedQuantize({"1.weight": 8, "5.weight": 2}, default_bits=3),
    "BiasCorrect": BiasCorrect(3),
    "Equalize": Equalize(),
    "GPTQ": GPTQ(3),
    "SmoothQuant": SmoothQuant(),
}
CONTRACT_SOURCES = {"SmoothQuant": "digits_vit"}  # needs LayerNorm-fed Linear layers


def test_every_registered_technique_has_a_contract_example():
    assert set(plans.REGISTRY) == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_technique_contract(name):
    """Same checks for all: new object, input untouched, output shape kept, deterministic,
    config round-trips through JSON, every field documented for the UI."""
    cfg = EXAMPLES[name]
    tech = plans.REGISTRY[name]
    source = sample_source(CONTRACT_SOURCES.get(name, "cancer_mlp"))
    assert plans.from_json(json.loads(json.dumps(plans.to_json((cfg,))))) == (cfg,)
    for f in dataclasses.fields(cfg):
        assert "help" in f.metadata, f"{name}.{f.name} has no help text"
    ctx = plans.Context(source, cpu=measure.cpu_info())
    x = source.splits["test"].x
    if tech.stage == "torch":
        model = source.build()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        out = plans.apply(model, (cfg,), ctx)
        assert out is not model
        assert all((model.state_dict()[k] == v).all() for k, v in before.items())
        import torch

        with torch.no_grad():
            assert out(torch.from_numpy(x)).shape == model(torch.from_numpy(x)).shape
        again = plans.apply(model, (cfg,), ctx).state_dict()  # deterministic given the seed
        assert again.keys() == out.state_dict().keys()
        assert all(torch.equal(again[k], v) for k, v in out.state_dict().items())
        return
    graph, _ = build(source, ())
    before = graph.model.SerializeToString()
    out1 = plans.apply(graph, (cfg,), ctx)
    out2 = plans.apply(graph, (cfg,), ctx)
    assert out1 is not graph and graph.model.SerializeToString() == before
    onnx.checker.check_model(out1.model)
    y1 = measure.predict(measure.session(out1.model.SerializeToString()), x)
    y2 = measure.predict(measure.session(out2.model.SerializeToString()), x)
    y0 = measure.predict(measure.session(before), x)
    assert y1.shape == y0.shape
    np.testing.assert_array_equal(y1, y2)
    assert out1.precision
