"""Mixed precision, gradual pruning, per-layer sensitivity and the resumable NSGA-II search."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import optuna
import pandas as pd
import pytest
from onnx import TensorProto, numpy_helper

from optim import plan as plans
from optim.artifact import to_onnx, weight_initializers
from optim.build import Settings, build
from optim.frontier import frontier
from optim.search import hypervolume, search, study_name
from optim.sensitivity import allocate, rank, sensitivity, uniform_noise
from optim.sources import Split, sample_source
from optim.techniques import GradualPrune, MixedQuantize, Prune, Quantize
from optim.techniques.quantize import quantize_array

DIGITS_LAYERS = ["0.weight", "2.weight", "5.weight", "9.weight"]  # 3 convs and the classifier


def _weights(graph) -> dict[str, np.ndarray]:
    inits = {t.name: t for t in graph.model.graph.initializer}
    return {n: numpy_helper.to_array(inits[n]) for n in weight_initializers(graph.model)}


def _storage(graph) -> dict[str, int]:
    """Element type of each weight's codes in the shipped file."""
    model, _ = to_onnx(graph)
    return {t.name.removesuffix(".q"): t.data_type for t in model.graph.initializer
            if t.name.endswith(".q")}  # fmt: skip


# ------------------------------------------------------------------ MixedQuantize


def test_mixed_quantize_stores_each_layer_at_its_bits():
    source = sample_source("digits_cnn")
    base, _ = build(source, ())
    cfg = MixedQuantize({"0.weight": 2, "2.weight": 3, "9.weight": 8}, default_bits=5)
    graph = plans.apply(base, (cfg,), plans.Context(source))
    want = {"0.weight": 2, "2.weight": 3, "5.weight": 5, "9.weight": 8}
    assert cfg.layer_bits(DIGITS_LAYERS) == want
    storage, base_w = _storage(graph), _weights(base)
    for name, bits in want.items():
        enc = graph.encodings[name]
        assert enc.bits == bits and int(enc.codes.max()) < 2**bits, name
        # the same rounding as Quantize: symmetric, one scale per output channel (axis 0)
        ref = quantize_array(base_w[name], bits, 0, True)
        np.testing.assert_array_equal(enc.codes, ref.codes)
        np.testing.assert_array_equal(_weights(graph)[name], ref.dequantize())
        box = {2: TensorProto.INT2, 3: TensorProto.INT4, 5: TensorProto.INT8, 8: TensorProto.INT8}
        assert storage[name] == box[bits], name  # the narrowest ONNX integer type that fits
    _, stored = to_onnx(graph)
    assert {w.bits for w in stored.widths} >= {2, 3, 5, 8} and graph.precision == "fp32"


def test_mixed_quantize_keeps_the_most_sensitive_layers_at_8_bits():
    ranking = ("9.weight", "0.weight", "5.weight", "2.weight")
    cfg = MixedQuantize(default_bits=3, keep_8bit=2, sensitivity=ranking)
    assert cfg.layer_bits(DIGITS_LAYERS) == {
        "0.weight": 8, "2.weight": 3, "5.weight": 3, "9.weight": 8,
    }  # fmt: skip
    explicit = MixedQuantize({"9.weight": 4}, default_bits=3, keep_8bit=2, sensitivity=ranking)
    assert explicit.layer_bits(DIGITS_LAYERS)["9.weight"] == 4  # an explicit entry wins
    assert cfg.label == "mixed int3 w/channel, top-2 sensitive at int8"


def test_mixed_quantize_round_trips_through_json_and_is_canonical():
    p = (
        MixedQuantize({"9.weight": 8, "0.weight": 2}, keep_8bit=1, sensitivity=("5.weight",)),
        MixedQuantize((("2.weight", 6),), default_bits=3, granularity="tensor"),
    )
    back = plans.from_json(json.loads(json.dumps(plans.to_json(p))))
    assert back == p and plans.key(back) == plans.key(p)
    assert back[0].bits == (("0.weight", 2), ("9.weight", 8))  # tuples again, sorted by name
    assert isinstance(back[0].sensitivity, tuple)
    same = MixedQuantize([["0.weight", 2], ["9.weight", 8]], keep_8bit=1, sensitivity=["5.weight"])
    assert same == p[0] and hash(same) == hash(p[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bits": {"0.weight": 1}}, r"`2 <= bits <= 8` must hold, but got bits=1 for '0.weight'"),
        ({"default_bits": 9}, r"`2 <= bits <= 8` must hold, but got bits=9 for 'default_bits'"),
        ({"keep_8bit": 2, "sensitivity": ("a",)}, r"`0 <= keep_8bit <= len\(sensitivity\)`"),
        ({"bits": (("a", 4), ("a", 5))}, r"each layer must appear once in `bits`"),
        ({"granularity": "row"}, r"`granularity` must be one of"),
    ],
)
def test_mixed_quantize_rejects_bad_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MixedQuantize(**kwargs)


def test_mixed_quantize_names_an_unknown_layer():
    source = sample_source("digits_cnn")
    base, _ = build(source, ())
    with pytest.raises(ValueError, match=r"must name weight initializers .* \['conv9.weight'\]"):
        plans.apply(base, (MixedQuantize({"conv9.weight": 4}),), plans.Context(source))


# ------------------------------------------------------------------ GradualPrune


def test_gradual_prune_schedule_is_cubic():
    assert GradualPrune(0.8, steps=2).schedule() == pytest.approx([0.7, 0.8])  # 0.8 * (1 - 1/8)
    with pytest.raises(ValueError, match=r"`steps >= 1` must hold, but got steps=0"):
        GradualPrune(steps=0)
    with pytest.raises(ValueError, match=r"`0 <= sparsity < 1` must hold, but got sparsity=1.0"):
        GradualPrune(1.0)


@pytest.mark.slow
def test_gradual_prune_exact_sparsity_survives_export_and_quantization():
    import torch

    source = sample_source("digits_cnn")
    cfg = GradualPrune(0.75, steps=2)
    model = plans.apply(source.build(), (cfg,), plans.Context(source))
    state = model.state_dict()
    assert not [k for k in state if k.endswith(("_orig", "_mask"))]
    assert all(not m._forward_pre_hooks for m in model.modules())
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    total = sum(m.weight.numel() for m in layers)
    assert sum(int((m.weight == 0).sum()) for m in layers) == round(0.75 * total)

    raw, _ = build(source, (cfg,))  # exported once; the plans below reuse the export
    for name, w in _weights(raw).items():
        np.testing.assert_array_equal(w == 0, state[name].numpy() == 0)  # export keeps zeros
    graph, _ = build(source, (cfg, Quantize(4)))  # the intended plan
    for name, w in _weights(graph).items():  # every pruned weight is still zero after rounding
        assert not w[state[name].numpy() == 0].any(), name
    again, _ = build(source, (cfg, Prune(0.75)))  # idempotent: the same zeros, nothing more
    for name, w in _weights(again).items():
        np.testing.assert_array_equal(w, _weights(raw)[name])
    masked, _ = build(source, (cfg, Prune(0.75), Quantize(4)))
    assert to_onnx(masked)[1].sparsity >= 0.75  # the shipped INT4 codes keep every zero


# ------------------------------------------------------------------ sensitivity


def test_sensitivity_covers_every_layer_and_setting_on_calib_only():
    source = sample_source("digits_cnn")
    df = sensitivity(source, bits=(2, 8), sparsities=(0.5, 0.9))
    assert len(df) == 4 * 4 and set(df["layer"]) == set(DIGITS_LAYERS)
    assert set(zip(df["kind"], df["setting"], strict=True)) == {
        ("quantize", 2), ("quantize", 8), ("prune", 0.5), ("prune", 0.9),
    }  # fmt: skip
    assert (df["accuracy_drop"] >= -0.01).mean() >= 0.9  # a few calib samples of noise at most
    per = df.drop_duplicates("layer")
    assert per["params_share"].sum() == pytest.approx(
        per["params"].sum() / sum(p.numel() for p in source.build().parameters())
    )
    share = per.set_index("layer")["latency_share"]
    assert 0 < share.sum() <= 1 and share["2.weight"] > share["0.weight"]  # 1.2M vs 18k MACs
    drop = df.set_index(["layer", "kind", "setting"])["accuracy_drop"]
    noise = df.set_index(["layer", "kind", "setting"])["output_noise"]
    for layer in per.loc[per["params_share"] > 0.1, "layer"]:  # the big layers
        assert drop[layer, "quantize", 2] >= drop[layer, "quantize", 8], layer
        assert noise[layer, "quantize", 2] > 10 * noise[layer, "quantize", 8] > 0, layer
    assert drop[:, "prune", 0.9].sum() > drop[:, "prune", 0.5].sum()
    ranked = rank(df, bits=2)
    assert sorted(ranked) == sorted(DIGITS_LAYERS)
    assert list(drop.loc[ranked, "quantize", 2]) == sorted(drop[:, "quantize", 2], reverse=True)
    with pytest.raises(ValueError, match=r"`bits` must be one of the measured \[2, 8\]"):
        rank(df, bits=3)
    cfg = MixedQuantize(default_bits=2, keep_8bit=1, sensitivity=tuple(ranked))
    graph = plans.apply(build(source, ())[0], (cfg,), plans.Context(source))
    assert {n: e.bits for n, e in graph.encodings.items()} == {
        n: 8 if n == ranked[0] else 2 for n in DIGITS_LAYERS
    }
    # the test split is never read for accuracy: blanking it changes no accuracy figure
    test = source.splits["test"]
    blank = replace(source, splits={**source.splits, "test": Split(np.zeros_like(test.x), test.y)})
    again = sensitivity(blank, bits=(2, 8), sparsities=(0.5, 0.9))
    pd.testing.assert_series_equal(again["accuracy"], df["accuracy"])


def test_allocate_spends_the_noise_budget_on_the_fewest_bits():
    df = pd.DataFrame({
        "layer": ["a"] * 3 + ["b"] * 3, "kind": "quantize", "setting": [2, 3, 4] * 2,
        "output_noise": [0.5, 0.1, 0.02, 0.3, 0.05, 0.01], "params": [100] * 3 + [1000] * 3,
    })  # fmt: skip
    assert uniform_noise(df, 4) == pytest.approx(0.03)
    assert allocate(df, 0.0) == {"a": 8, "b": 8}  # 8 bits: taken as noiseless
    assert allocate(df, 0.03) == {"a": 4, "b": 4}  # 4,400 bits; a8 + b4 would be 4,800
    assert allocate(df, 0.07) == {"a": 4, "b": 3}  # 3,400 bits: b is 10x larger, cut it first
    assert allocate(df, 10.0) == {"a": 2, "b": 2}
    with pytest.raises(ValueError, match=r"`max_noise >= 0` must hold, but got max_noise=-0.1"):
        allocate(df, -0.1)
    with pytest.raises(ValueError, match=r"`bits` must be one of the measured \[2, 3, 4\]"):
        uniform_noise(df, 5)


# ------------------------------------------------------------------ search


def test_hypervolume_hand_computed():
    df = pd.DataFrame({
        "accuracy": [0.9, 0.85, 0.5, np.nan],
        "size_bytes": [250, 125, 10, 10],
        "latency_p50_ms": [0.5, 0.25, 0.1, 0.1],
    })  # fmt: skip
    # boxes to ref (0.8, 1000 B, 1 ms): 0.1 x 2 halvings x 0.5 and 0.05 x 3 x 0.75, overlapping
    # in 0.05 x 2 x 0.5; the 50 % row is below the reference accuracy, the NaN row unmeasured
    assert hypervolume(df, (0.8, 1000, 1.0)) == pytest.approx(0.1 + 0.1125 - 0.05)
    assert hypervolume(df.iloc[2:], (0.8, 1000, 1.0)) == 0.0
    with pytest.raises(ValueError, match=r"`0 <= accuracy <= 1`.* but got ref=\(2"):
        hypervolume(df, (2, 1000, 1.0))


@pytest.mark.slow
def test_search_stores_every_trial_and_resumes_without_repeating(fresh_store):
    fast = Settings(min_seconds=0.02, jobs=1)
    run_id = search("digits_cnn", trials=6, seed=0, store=fresh_store, settings=fast)
    study = optuna.load_study(study_name=study_name(run_id), storage=fresh_store.url)
    first = [(t.number, t.params, t.values) for t in study.trials]
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 6
    df = fresh_store.results(run_id)
    rows = df.set_index("key")
    assert df["key"].is_unique and df["is_baseline"].sum() == 1
    keys = {t.user_attrs["key"] for t in study.trials}
    assert set(rows.index) == keys | {plans.key(())}  # every trial is a row, duplicates once
    for t in study.trials:  # the sampler saw calib accuracy, size and latency of the artifact
        row = rows.loc[t.user_attrs["key"]]
        assert t.values == [row["calib_accuracy"], row["size_bytes"], row["trial_latency_ms"]]
        assert row["latency_p50_ms"] > 0 and row["speed_verdict"]  # re-timed with all trials
        assert 0 < row["accuracy"] <= 1 and row["artifact"]  # test accuracy: reported only
        assert row["family"] in ("prune+mixed", "prune+int8", "mixed", "int8")
    assert frontier(df).any()
    assert fresh_store.run(run_id)["status"] == "done"

    calls = []
    again = search("digits_cnn", trials=9, store=fresh_store, run_id=run_id,
                   progress=lambda done, total, row: calls.append((done, total, row is None)))  # fmt: skip
    assert again == run_id and calls[:-1] == [(7, 9, False), (8, 9, False), (9, 9, False)]
    assert calls[-1][2]  # then the timing phase, done
    study = optuna.load_study(study_name=study_name(run_id), storage=fresh_store.url)
    assert len(study.trials) == 9
    assert [(t.number, t.params, t.values) for t in study.trials[:6]] == first
    df = fresh_store.results(run_id)
    assert df["key"].is_unique
    assert len(df) == 1 + len({t.user_attrs["key"] for t in study.trials})
    search("digits_cnn", trials=9, store=fresh_store, run_id=run_id)  # budget met: no trial
    study = optuna.load_study(study_name=study_name(run_id), storage=fresh_store.url)
    assert len(study.trials) == 9
    with pytest.raises(ValueError, match=r"`model` must match run"):
        search("cancer_mlp", trials=9, store=fresh_store, run_id=run_id)


def test_search_rejects_bad_arguments(fresh_store):
    with pytest.raises(ValueError, match=r"`trials >= 1` must hold, but got trials=0"):
        search("digits_cnn", trials=0, store=fresh_store)
    run_id = fresh_store.create_run("digits_cnn", {"model": "digits_cnn", "plans": []})
    with pytest.raises(ValueError, match=r"must be a search run"):
        search("digits_cnn", trials=3, store=fresh_store, run_id=run_id)
