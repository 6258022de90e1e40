from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from optim.charts import (
    FADED,
    accuracy_range,
    compare_figure,
    family_styles,
    fmt_bytes,
    fmt_pct,
    profile_figure,
    regressions,
    short_id,
    tradeoff_figure,
    tradeoff_figures,
)
from optim.frontier import Constraints, frontier, recommend


def _verdict(speedup: float) -> str:
    """As an interleaved timing phase with 1 % noise would call it."""
    return "faster" if speedup > 1.02 else "slower" if speedup < 0.98 else "same"


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
            "latency_cv": 0.01,
            "speedup": lat[0] / lat,
            "speed_verdict": ["baseline"] + [_verdict(lat[0] / x) for x in lat[1:]],
            "precision": "int8 QDQ u8s8",
            "backend": "onnxruntime 1.32 CPU",
        }
    )


def as_json(fig) -> dict:
    return json.loads(fig.to_json())


def trace(fig, name: str):
    return next(t for t in fig.data if t.name == name)


def keys_of(t) -> list[str]:
    """The config keys of a trace's points (``ids`` carry their short ids)."""
    ids = {short_id(f"k{i}"): f"k{i}" for i in range(2000)}
    return [ids[i] for i in t.ids]


def hover(fig) -> dict[str, str]:
    """The hover text per key, as the browser formats it from the template (enough of it)."""
    out = {}
    for t in fig.data:
        if t.hovertemplate:
            for k, label, cd, executed in zip(
                keys_of(t), t.text, t.customdata, t.hovertext, strict=True
            ):
                out[k] = (
                    t.hovertemplate.replace("%{text}", label)
                    .replace("%{hovertext}", executed)
                    .replace("%{customdata[0]:.1f}", f"{cd[0]:.1f}")
                )
    return out


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
    assert fig.layout.dragmode == "zoom"  # a click selects; box-select is a toolbar button
    assert fig.layout.template.layout == pio.templates["plotly_white"].layout  # its look
    assert (
        fig.layout.template.data.to_plotly_json() == {}
    )  # without its defaults for 50 other trace types


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


def test_ids_map_points_back_to_keys_and_hover_is_formatted_in_the_browser() -> None:
    df = rows(40)
    fig = tradeoff_figure(df)
    point_traces = [t for t in fig.data if t.ids is not None]
    assert {k for t in point_traces for k in keys_of(t)} == set(df["key"])
    hovered = [t for t in point_traces if t.hovertemplate]
    assert sum(len(t.ids) for t in hovered) == len(df)  # each row hoverable once
    text = hover(fig)["k3"]
    assert "<b>config 3</b>" in text and "95 % CI" in text and "int8 QDQ u8s8" in text
    assert "onnxruntime 1.32 CPU" in text and "p90" in text  # one backend: in the template
    assert f"accuracy {100 * df.accuracy[3]:.1f} %" in text
    t = next(t for t in hovered if "k3" in keys_of(t))
    row = t.customdata[keys_of(t).index("k3")]
    want = df.loc[3, ["acc_low", "acc_high"]].to_numpy() * 100
    assert list(row[1:3]) == pytest.approx(want, rel=1e-6)
    assert row[3] == pytest.approx(df.size_bytes[3], rel=1e-6)  # bytes, %{...:.3s}B in hover
    two = tradeoff_figure(df.assign(backend=["ort A", "ort B"] * 20))
    assert "int8 QDQ u8s8 on ort B" in hover(two)["k3"]


def test_both_figures_at_once_equal_one_at_a_time() -> None:
    df = rows(40)
    rec = recommend(df, Constraints(floor=0.97, max_latency_ms=8.0))
    both = tradeoff_figures(df, rec, ["k5"])
    assert list(both) == ["size_bytes", "latency_p50_ms"]
    for x, fig in both.items():
        assert fig.to_json() == tradeoff_figure(df, x, rec, ["k5"]).to_json()


def test_the_figure_is_valid_plotly() -> None:
    df = rows(40)
    rec = recommend(df, Constraints(floor=0.97, max_size_bytes=5e6))
    for x in ("size_bytes", "latency_p50_ms"):
        fig = tradeoff_figure(df, x, rec=rec, selected=["k5"])
        go.Figure(fig.to_dict())  # validates every property (the chart builds unvalidated)


def test_frontier_step_line_and_faded_points() -> None:
    df = rows(40)
    fig = tradeoff_figure(df)
    step = trace(fig, "Pareto frontier")
    assert step.line.shape == "hv" and list(step.x) == sorted(step.x)
    on = {k for k, o in zip(df.key, frontier(df, ("accuracy", "size_bytes")), strict=True) if o}
    families = [t for t in fig.data if t.legendgroup in set(df.family)]
    for t in families:
        if t.showlegend is False:  # points: opaque and outlined on the frontier, else faded
            want = (1.5, None) if set(keys_of(t)) <= on else (0, FADED)
            assert (t.marker.line.width, t.marker.opacity) == want, t.name
            assert set(keys_of(t)) <= on or not set(keys_of(t)) & on
        else:  # the legend entry: never faded
            assert t.marker.opacity is None and list(t.x) == [None]
    star = trace(fig, "baseline")
    assert star.marker.symbol == "star" and keys_of(star) == ["k0"]


def test_budget_recommendation_selection_and_flags() -> None:
    df = rows(40)
    rec = recommend(df, Constraints(floor=0.9, max_size_bytes=5e6))
    fig = tradeoff_figure(df, rec=rec, selected=["k5", "k7"])
    shapes = {s.name: s for s in fig.layout.shapes}
    assert shapes["budget"].x0 == 5e6 and shapes["budget"].line.dash == "dash"
    assert shapes["over budget"].x0 == 5e6
    assert keys_of(trace(fig, "recommended")) == [rec.key]
    assert sorted(keys_of(trace(fig, "selected"))) == ["k5", "k7"]
    flagged = set(keys_of(trace(fig, "slower / not smaller than baseline")))
    slower = df.speed_verdict == "slower"  # the paired timing's verdict, nothing else
    assert flagged == set(df.key[slower & ~df.is_baseline]) and flagged


def test_closest_is_ringed_when_nothing_qualifies() -> None:
    df = rows()
    rec = recommend(df, Constraints(floor=0.999))
    fig = tradeoff_figure(df, rec=rec)
    ring = trace(fig, "closest (misses the target)")
    assert keys_of(ring) == [rec.closest_key]


@pytest.mark.parametrize("x", ["size_bytes", "latency_p50_ms"])
def test_degenerate_inputs_do_not_crash(x: str) -> None:
    empty = rows().iloc[:0]
    rec = recommend(empty, Constraints(floor=0.9))
    as_json(tradeoff_figure(empty, x=x, rec=rec))
    as_json(tradeoff_figure(pd.DataFrame(), x=x))
    single = tradeoff_figure(rows(1), x=x, rec=recommend(rows(1), Constraints(floor=0.5)))
    assert keys_of(trace(single, "recommended")) == ["k0"]
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
    assert list(fig.data[0].y) == ["conv1", "conv2", "fc1"]
    typed = profile_figure(layers.assign(layer=["0", "2", "9"], type=["Conv2d"] * 2 + ["Linear"]))
    assert list(typed.data[0].y) == ["0 Conv2d", "2 Conv2d", "9 Linear"]  # not bare indices
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
    text = hover(tradeoff_figure(df, rec=rec))
    for _, row in df.iloc[1:].iterrows():
        assert ("slower than the baseline" in text[row.key]) == (row.speed_verdict == "slower")
        assert ("over the latency budget" in text[row.key]) == (row.latency_p50_ms > 5.0)


def test_slower_only_beyond_timing_noise() -> None:
    base = dict(key="b", family="baseline", is_baseline=True, size_bytes=1000,
                latency_p50_ms=10.0, speed_verdict="baseline")  # fmt: skip
    other = dict(is_baseline=False, size_bytes=900)
    df = pd.DataFrame([
        base,
        other | dict(key="a", latency_p50_ms=13.0, speed_verdict="same"),  # interval spans 1
        other | dict(key="c", latency_p50_ms=10.6, speed_verdict="slower"),
        other | dict(key="d", latency_p50_ms=12.0, speed_verdict="same graph", size_bytes=1000),
        other | dict(key="e", latency_p50_ms=9.0, speed_verdict="faster"),
        other | dict(key="f", latency_p50_ms=10.6, speed_verdict=None),  # not timed yet
    ])  # fmt: skip
    slower, not_smaller = regressions(df)
    # only the paired verdict counts: a raw p50 30 % above the baseline's is not "slower"
    assert slower.tolist() == [False, False, True, False, False, False]
    assert not_smaller.tolist() == [False, False, False, True, False, False]
    assert not regressions(df.assign(is_baseline=False))[0].any()  # no baseline, no flags


def test_accuracy_axis_zooms_on_the_floor_and_counts_what_it_hides() -> None:
    df = rows(12)
    df.loc[6:, "accuracy"] = [0.3, 0.5, 0.6, 0.7, 0.8, 0.85]  # far below the decision region
    base = float(df.accuracy[0])
    rec = recommend(df, Constraints(floor=0.95))
    fig = tradeoff_figure(df, rec=rec)
    lo, hi = fig.layout.yaxis.range
    assert lo == pytest.approx(min(0.95, base) - 0.05)
    assert df.accuracy.max() < hi < df.accuracy.max() + 0.01
    note = next(a for a in fig.layout.annotations if a.name == "hidden")
    assert note.text == f"6 configs below {fmt_pct(lo)}: Autoscale (toolbar) shows all"
    # the floor band reaches the lowest point: Autoscale shows them all
    assert {s.name: s for s in fig.layout.shapes}["below floor"].y0 < 0.3
    floor_lo = tradeoff_figure(df, rec=recommend(df, Constraints(floor=0.4)))
    assert floor_lo.layout.yaxis.range[0] == pytest.approx(0.35)  # follows the floor down
    assert "1 config below" in next(
        a.text for a in floor_lo.layout.annotations if a.name == "hidden"
    )
    # nothing hidden: the axis covers every point, with no note
    assert all(a.name != "hidden" for a in tradeoff_figure(rows(12), rec=rec).layout.annotations)
    assert accuracy_range(np.array([0.99, 0.98]), np.nan, np.nan)[0] < 0.98
    assert accuracy_range(np.array([]), np.nan, np.nan)[:2] == (0.0, 1.0)


def test_ten_families_get_distinct_colours() -> None:
    families = ["quantize", "int8", "prune", "structured", "distill", "lowrank"]
    families += ["prune+quantize", "structured+quantize", "qat+quantize", "prune+int8"]
    styles = family_styles(families + ["baseline"])
    assert list(styles) == families[:3] + ["structured", "lowrank", "distill"] + sorted(
        families[6:]
    )
    assert len({color for color, _ in styles.values()}) == 10
    assert {s for f, (_, s) in styles.items() if "+" in f} == {"diamond"}
    assert {s for f, (_, s) in styles.items() if "+" not in f} == {"circle"}
    df = rows(40).assign(family=["baseline"] + [families[i % 10] for i in range(39)])
    fig = tradeoff_figure(df)
    traces = [t for t in fig.data if t.legendgroup in styles]
    assert len({t.marker.color for t in traces}) == 10
    assert trace(fig, "prune + quantize").marker.symbol == "diamond"
    many = family_styles([f"f{i}" for i in range(14)])
    assert len(set(many.values())) == 14  # colours repeat past 12, the shapes tell them apart
