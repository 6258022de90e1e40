from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.io as pio
import pytest

from optim.charts import compare_figure, fmt_bytes, fmt_pct, profile_figure, tradeoff_figure
from optim.frontier import Constraints, recommend


def rows(n: int = 6, baseline: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(n)
    size = np.geomspace(2e5, 4.5e7, n)[::-1].astype(int)
    acc = np.clip(0.982 - 0.04 * rng.random(n) * np.arange(n) / max(n - 1, 1), 0, 1)
    lat = 10.0 * rng.uniform(0.3, 1.2, n)
    families = ["baseline"] + [
        ["quantize", "int8", "prune", "structured"][i % 4] for i in range(n - 1)
    ]
    return pd.DataFrame(
        {
            "key": [f"k{i}" for i in range(n)],
            "label": [f"config {i}" for i in range(n)],
            "family": families,
            "is_baseline": [baseline and i == 0 for i in range(n)],
            "accuracy": acc,
            "acc_low": acc - 0.01,
            "acc_high": np.minimum(acc + 0.01, 1),
            "size_bytes": size,
            "latency_p50_ms": lat,
            "latency_p90_ms": lat * 1.1,
            "precision": "int8 QDQ u8s8",
            "backend": "onnxruntime 1.32 CPU",
        }
    )


def as_json(fig) -> dict:
    return json.loads(fig.to_json())


def trace(fig, name: str):
    return next(t for t in fig.data if t.name == name)


def test_floor_line_at_the_floor_value() -> None:
    df = rows()
    rec = recommend(df, Constraints(floor=0.99, relative=True))
    fig = tradeoff_figure(df, rec=rec)
    shapes = {s["name"]: s for s in as_json(fig)["layout"]["shapes"]}
    assert shapes["floor"]["y0"] == pytest.approx(rec.floor_value)
    assert shapes["floor"]["y1"] == pytest.approx(rec.floor_value)
    assert shapes["below floor"]["y1"] == pytest.approx(rec.floor_value)
    texts = [a.text for a in fig.layout.annotations]
    assert f"floor {fmt_pct(rec.floor_value)}" in texts
    assert fig.layout.yaxis.range[0] < rec.floor_value < fig.layout.yaxis.range[1]


def test_size_axis_is_log_with_readable_ticks() -> None:
    fig = tradeoff_figure(rows())
    assert fig.layout.xaxis.type == "log"
    assert fig.layout.xaxis.title.text == "Artifact size (bytes on disk)"
    assert any(t.endswith("MB") for t in fig.layout.xaxis.ticktext)
    assert fig.layout.yaxis.tickformat.endswith("%")
    assert fig.layout.dragmode == "select"
    assert fig.layout.template == pio.templates["plotly_white"]


def test_latency_axis() -> None:
    fig = tradeoff_figure(rows(), x="latency_p50_ms")
    assert fig.layout.xaxis.type == "linear"
    assert fig.layout.xaxis.title.text == "Latency p50 (ms, ONNX Runtime)"
    with pytest.raises(ValueError, match="x in"):
        tradeoff_figure(rows(), x="flops")


@pytest.mark.parametrize("n, kind", [(1000, "scatter"), (1001, "scattergl")])
def test_webgl_above_1000_rows(n: int, kind: str) -> None:
    fig = tradeoff_figure(rows(n))
    families = {"quantize", "int8", "prune", "structured"}
    assert {t.type for t in fig.data if t.name in families} == {kind}


def test_customdata_maps_points_back_to_keys() -> None:
    df = rows(40)
    fig = tradeoff_figure(df)
    point_traces = [t for t in fig.data if t.customdata is not None]
    keys = {row[0] for t in point_traces for row in t.customdata}
    assert keys == set(df["key"])
    hovered = [t for t in point_traces if t.hovertemplate]
    assert sum(len(t.customdata) for t in hovered) == len(df)  # each row hoverable once
    text = next(row[1] for t in hovered for row in t.customdata if row[0] == "k3")
    assert "config 3" in text and "95 % CI" in text and "int8 QDQ u8s8" in text
    assert "onnxruntime 1.32 CPU" in text and "p90" in text


def test_frontier_step_line_and_faded_points() -> None:
    df = rows(40)
    fig = tradeoff_figure(df)
    step = trace(fig, "Pareto frontier")
    assert step.line.shape == "hv" and list(step.x) == sorted(step.x)
    opacities = np.concatenate([np.atleast_1d(t.marker.opacity) for t in fig.data[:4]])
    assert set(np.round(opacities, 2)) == {0.35, 1.0}
    star = trace(fig, "baseline")
    assert star.marker.symbol == "star" and star.customdata[0][0] == "k0"


def test_budget_recommendation_selection_and_flags() -> None:
    df = rows(40)
    rec = recommend(df, Constraints(floor=0.9, max_size_bytes=5e6))
    fig = tradeoff_figure(df, rec=rec, selected=["k5", "k7"])
    shapes = {s.name: s for s in fig.layout.shapes}
    assert shapes["budget"].x0 == 5e6 and shapes["budget"].line.dash == "dash"
    assert shapes["over budget"].x0 == 5e6
    assert [r[0] for r in trace(fig, "recommended").customdata] == [rec.key]
    assert sorted(r[0] for r in trace(fig, "selected").customdata) == ["k5", "k7"]
    base = df.iloc[0]
    flagged = {r[0] for r in trace(fig, "slower / not smaller than baseline").customdata}
    slower = set(df.key[(df.latency_p50_ms > base.latency_p50_ms) & ~df.is_baseline])
    assert flagged == slower


def test_closest_is_ringed_when_nothing_qualifies() -> None:
    df = rows()
    rec = recommend(df, Constraints(floor=0.999))
    fig = tradeoff_figure(df, rec=rec)
    ring = trace(fig, "closest (misses the target)")
    assert ring.customdata[0][0] == rec.closest_key


@pytest.mark.parametrize("x", ["size_bytes", "latency_p50_ms"])
def test_degenerate_inputs_do_not_crash(x: str) -> None:
    empty = rows().iloc[:0]
    rec = recommend(empty, Constraints(floor=0.9))
    as_json(tradeoff_figure(empty, x=x, rec=rec))
    as_json(tradeoff_figure(pd.DataFrame(), x=x))
    single = tradeoff_figure(rows(1), x=x, rec=recommend(rows(1), Constraints(floor=0.5)))
    assert trace(single, "recommended").customdata[0][0] == "k0"
    no_base = tradeoff_figure(rows(baseline=False), x=x)
    assert all(t.marker.symbol != "star" for t in no_base.data if t.mode == "markers")
    as_json(no_base)


def test_profile_figure() -> None:
    layers = pd.DataFrame(
        {
            "layer": ["conv1", "conv2", "fc1"],
            "params": [320, 18_496, 401_536],
            "flops": [2e5, 3.6e6, 4e5],
            "latency_share": [0.2, 0.5, np.nan],
        }
    )
    fig = profile_figure(layers)
    assert [t.orientation for t in fig.data] == ["h"] * 3
    assert fig.data[0].x[2] == pytest.approx(401_536 / (320 + 18_496 + 401_536))
    assert len(profile_figure(layers.assign(latency_share=np.nan)).data) == 2
    as_json(profile_figure(layers.iloc[:0]))
    with pytest.raises(ValueError, match="layer"):
        profile_figure(layers.drop(columns="layer"))


def test_compare_figure() -> None:
    a, b = rows(20), rows(30)
    fig = compare_figure({"run A": a, "run B": b.assign(accuracy=b.accuracy - 0.01)})
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["run A", "run B"]
    assert all(t.line.shape == "hv" for t in lines)
    assert lines[0].line.color != lines[1].line.color
    assert fig.layout.xaxis.type == "log"
    as_json(compare_figure({}))
    as_json(compare_figure({"empty": a.iloc[:0]}, x="latency_p50_ms"))


def test_formatters_are_reexported() -> None:
    assert fmt_bytes(44_700_000) == "44.7 MB" and fmt_pct(0.972) == "97.2 %"


def test_hover_notes_flag_baseline_regressions_and_budgets() -> None:
    df = rows(40)
    rec = recommend(df, Constraints(floor=0.9, max_latency_ms=5.0))
    fig = tradeoff_figure(df, rec=rec)
    text = {r[0]: r[1] for t in fig.data if t.hovertemplate for r in t.customdata}
    base = df.iloc[0]
    for _, row in df.iloc[1:].iterrows():
        assert ("slower than the baseline" in text[row.key]) == (
            row.latency_p50_ms > base.latency_p50_ms
        )
        assert ("over the latency budget" in text[row.key]) == (row.latency_p50_ms > 5.0)
