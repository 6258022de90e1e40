"""int8 auto: the placement keeps no int8 group that measured slower in its own timing, says
what stayed fp32 and why, is cached, and ships a standard ONNX file for a corpus model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from optim import measure
from optim import placement as placements
from optim import plan as plans
from optim.build import Settings, build, evaluate
from optim.sources import get_source, sample_source
from optim.sweep import grid
from optim.techniques import Int8Auto
from tests.corpus import external_data_cnn

QUICK = Int8Auto(rounds=2, seconds=0.02)  # the search's logic, not its precision, is tested


def _placement(source, cfg=QUICK):
    graph, _ = build(source, ())
    ctx = plans.Context(source, cpu=measure.cpu_info())
    return placements.measured(graph, ctx, cfg.budget, cfg.calibration)


def test_placement_keeps_no_group_that_measured_slower_in_int8():
    placement, quantizer = _placement(sample_source("digits_cnn"))
    groups = quantizer.groups
    assert set(placement.int8) | set(placement.fp32) == set(groups)
    assert not set(placement.int8) & set(placement.fp32)
    last = {}
    for rec in placement.records:  # in round order: the last record of each group wins
        last[rec["group"]] = rec
    for g in placement.int8:  # kept in int8: its last timing never said it is slower there
        if placement.converged:
            assert last[g]["verdict"] != "faster", (g, last[g])
    for g, why in placement.fp32.items():  # reverted: fp32 ran faster (beyond noise, or in
        assert last[g]["fp32_speedup"] > 1, (g, last[g])  # step 2b where nothing else paid)
        assert "faster in fp32" in why, (g, why)
    assert set(placement.excluded) == {n for g in placement.fp32 for n in groups[g]}
    assert placement.converged or "no int8 placement was faster" in placement.note()
    if not placement.faster:
        assert "no int8 placement was faster than fp32 on this CPU" in placement.note()
    chosen = [s for s in placement.settings_timed if s["chosen"]]
    assert len(chosen) == 1 and chosen[0]["setting"] == placement.setting.label
    assert placement.calibration in placement.calibrations
    assert {"fp32", "full int8", "placed"} <= set(placement.profile)


def test_placement_is_cached_and_the_row_says_what_ran():
    source = sample_source("digits_cnn")
    first, _ = _placement(source)
    again, _ = _placement(source)  # from OPTIM_HOME: the same measured placement
    assert again == first
    graph = plans.apply(
        build(source, ())[0], (QUICK,), plans.Context(source, cpu=measure.cpu_info())
    )
    assert graph.precision == first.note()
    conv = first.counts["Conv"]
    assert f"{conv[0]} of {conv[1]} Conv" in graph.precision


def test_corpus_model_gets_a_standard_onnx_that_stock_ort_loads(tmp_path):
    np.savez(tmp_path / "data.npz", **external_data_cnn(tmp_path))
    source = get_source(f"{tmp_path}/model.onnx:{tmp_path}/data.npz")
    out = tmp_path / "int8"
    row, _ = evaluate(source, (QUICK,), out, Settings(), None)  # runs it in a fresh ORT too
    assert row.error is None and row.bits == 8 and row.family == "int8"
    model = onnx.load(out / "model.onnx")
    onnx.checker.check_model(model)
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node) or "int8" in row.precision
    assert row.precision.startswith("int8 (")


def test_auto_is_the_grids_default_int8_and_bad_configs_are_refused():
    assert (Int8Auto(),) in grid(bits=(8,), sparsity=(0.0,))
    assert grid(bits=(8,), sparsity=(0.0,), int8="static") != grid(bits=(8,), sparsity=(0.0,))
    with pytest.raises(ValueError, match=r"`calibration` must be one of .* but got 'max'"):
        Int8Auto(calibration="max")
    with pytest.raises(ValueError, match=r"`2 <= rounds <= 50` must hold, but got rounds=1"):
        Int8Auto(rounds=1)
