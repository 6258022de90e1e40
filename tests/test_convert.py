"""Torch-stage techniques on a model brought as an ONNX file with training data, through a
faithful onnx2torch conversion (optim/convert.py); where the conversion is not faithful, the
reason, up front."""

from __future__ import annotations

import numpy as np
import pytest

from optim import applicable
from optim import plan as plans
from optim.build import Settings
from optim.sources import onnx_source
from optim.sweep import sweep
from optim.techniques import QAT, Distill, FineTune, LowRank, Quantize, StructuredPrune
from tests.corpus import external_data_cnn, shufflenet_opset13

pytestmark = pytest.mark.slow


def _with_train(tmp_path, builder, n_train=120):
    data = builder(tmp_path)
    x, y = data["x_test"], data["y_test"]
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(x), n_train)  # a training split of the same distribution
    noise = rng.normal(0, 0.05, (n_train, *x.shape[1:])).astype(np.float32)
    np.savez(tmp_path / "data.npz", **data, x_train=x[idx] + noise, y_train=y[idx])
    return onnx_source(tmp_path / "model.onnx", tmp_path / "data.npz")


def test_an_onnx_cnn_with_training_data_takes_every_torch_technique(tmp_path, fresh_store):
    source = _with_train(tmp_path, external_data_cnn)
    assert source.build is not None and source.meta["torch"] == "onnx2torch conversion"
    plan_list = [
        (FineTune(1),), (StructuredPrune(0.5), FineTune(1)), (LowRank(0.5),),
        (QAT(4, epochs=1), Quantize(4)), (Distill(0.5, epochs=2),),
    ]  # fmt: skip
    for p in plan_list:
        assert applicable.reason(p, source) is None, p
    settings = Settings(min_seconds=0.02, jobs=1, rounds=2)
    run_id = sweep(source.meta["spec"], plan_list, settings, fresh_store)
    rows = {r.key: r for r in fresh_store.rows(run_id)}
    base = rows[plans.key(())]
    for p in plan_list:
        row = rows[plans.key(p)]
        assert row.error is None, (row.label, row.error)
        assert row.metric == "top1" and row.n_test == base.n_test
    pruned = rows[plans.key(plan_list[1])]
    assert pruned.params < base.params and pruned.size_bytes < base.size_bytes


def test_a_conversion_that_does_not_export_back_is_a_reason(tmp_path):
    source = _with_train(tmp_path, shufflenet_opset13, n_train=40)
    assert source.build is None
    why = applicable.reason((FineTune(1),), source)
    assert why and "needs a torch model (its onnx2torch conversion does not export back" in why


def test_without_training_data_the_reason_is_the_onnx_file(tmp_path):
    np.savez(tmp_path / "data.npz", **external_data_cnn(tmp_path))
    source = onnx_source(tmp_path / "model.onnx", tmp_path / "data.npz")
    why = applicable.reason((StructuredPrune(0.5),), source)
    assert source.build is None and why.endswith("needs a torch model (it is an ONNX file)")
