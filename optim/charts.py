"""Plotly figures from result rows (no streamlit): trade-off scatter, layer profile, run compare.

Every trade-off point carries the :func:`short_id` of its config ``key`` in ``ids`` (a UI maps
a clicked or box-selected point back to its row from the event's ``id``; overlay traces repeat
points: dedupe). Its hover figures travel as numbers (``customdata``, typed arrays) and are
formatted in the browser, so a 10,000-row figure is cheap to rebuild and to serialize on every
slider move. The figures are assembled as plain dicts and wrapped unvalidated (the tests
validate them): plotly's validation would triple the cost."""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from optim.frontier import Recommendation, baseline_index, fmt_bytes, fmt_ms, fmt_pct, frontier

__all__ = [
    "compare_figure",
    "family_styles",
    "fmt_bytes",
    "fmt_pct",
    "profile_figure",
    "regressions",
    "short_id",
    "tradeoff_figure",
    "tradeoff_figures",
]

X_TITLES = {
    "size_bytes": "Artifact size (bytes on disk)",
    "latency_p50_ms": "Latency p50 (ms, ONNX Runtime)",
}
# single techniques first, in a fixed order; combinations ("prune+quantize") after them, sorted
FAMILIES = (
    "quantize", "int8", "int4", "mixed", "prune", "structured", "lowrank", "qat", "distill",
)  # fmt: skip
# 12 hues that stay apart on white, also faded: no red (the floor), gold (the baseline star) or
# orange (the selection squares); combinations are diamonds, so ~10 families read apart
FAMILY_COLORS = (
    "#1F77B4", "#2CA02C", "#9467BD", "#17BECF", "#8C564B", "#E377C2",
    "#BCBD22", "#393B79", "#637939", "#7B4173", "#8C6D31", "#6B6ECF",
)  # fmt: skip
PALETTE = qualitative.Plotly + qualitative.D3  # runs and profile panels
GL_ROWS = 1000  # above this many rows, points use WebGL (go.Scattergl)
FADED = 0.35  # opacity of dominated points
ZOOM = 0.05  # the accuracy axis starts this far below min(floor, baseline accuracy)
RED, GREY = "#B22222", "#555"
_TEMPLATE = pio.templates["plotly_white"]  # the object validates faster than its name
# plotly_white's layout only: its defaults for 50 other trace types cost the browser ~0.1 s a
# chart to apply, and the scatter charts look the same without them
_SCATTER_TEMPLATE = dict(layout=_TEMPLATE.layout.to_plotly_json())
# customdata columns: accuracy, CI low, CI high (percent), size (bytes), p50, p90 (ms)
_HOVER = (
    "<b>%{text}</b><br>accuracy %{customdata[0]:.1f} % "
    "(95 % CI %{customdata[1]:.1f}–%{customdata[2]:.1f} %)<br>size %{customdata[3]:.3s}B<br>"
    "latency p50 %{customdata[4]:.3~f} ms, p90 %{customdata[5]:.3~f} ms<br>executed %{hovertext}"
    "<extra>%{fullData.name}</extra>"
)


def family_styles(families: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(colour, marker symbol) per family: distinct colours for up to 12 families present, the
    single techniques first in a fixed order; a combination ("prune+quantize") is a diamond.

    Example:
        >>> family_styles(["prune+quantize", "quantize", "baseline"])
        {'quantize': ('#1F77B4', 'circle'), 'prune+quantize': ('#2CA02C', 'diamond')}
    """
    present = set(families) - {"baseline"}
    order = [f for f in FAMILIES if f in present] + sorted(present - set(FAMILIES))
    styles = {}
    for i, f in enumerate(order):
        symbol = "diamond" if "+" in f else "circle"
        if i >= len(FAMILY_COLORS):  # past 12 families colours repeat: change the shape too
            symbol = "triangle-up" if symbol == "circle" else "hexagon"
        styles[f] = (FAMILY_COLORS[i % len(FAMILY_COLORS)], symbol)
    return styles


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    if col not in df.columns:
        return np.full(len(df), np.nan)
    return df[col].to_numpy(dtype=float, na_value=np.nan)


def _str(df: pd.DataFrame, col: str, default: str = "") -> np.ndarray:
    if col not in df.columns:
        return np.full(len(df), default, dtype=object)
    return df[col].to_numpy(dtype=object, na_value=default)


def _tick_bytes(v: float) -> str:
    unit = min(int(math.log10(v) // 3), 3) if v >= 1 else 0
    return f"{v / 1000**unit:.3g} {('B', 'KB', 'MB', 'GB')[unit]}"


def _x_axis(x: str, values: np.ndarray) -> tuple[dict, float]:
    """Log byte axis (KB/MB ticks) or linear ms axis over ``values``; and the range end."""
    v = values[np.isfinite(values) & (values > 0)]
    if x == "size_bytes":
        lo, hi = (math.log10(v.min()), math.log10(v.max())) if v.size else (3.0, 9.0)
        pad = max(0.08 * (hi - lo), 0.15)
        lo, hi = lo - pad, hi + pad
        ticks = [m * 10.0**e for e in range(math.floor(lo), math.ceil(hi)) for m in (1, 2, 5)]
        ticks = [t for t in ticks if lo <= math.log10(t) <= hi]
        ticks = [t for t in ticks if f"{t:e}"[0] == "1"] if len(ticks) > 10 else ticks
        text = [_tick_bytes(t) for t in ticks]
        return dict(type="log", range=[lo, hi], tickvals=ticks, ticktext=text), 10**hi
    hi = 1.08 * v.max() if v.size else 10.0
    return dict(type="linear", range=[0, hi], ticksuffix=" ms"), hi


def _tickformat(span: float) -> str:
    return ".0%" if span > 0.2 else ".1%" if span > 0.01 else ".2%"


def _style_x(fig: go.Figure, x: str, values: np.ndarray) -> float:
    axis, hi = _x_axis(x, values)
    fig.update_xaxes(**axis)
    return hi


def _style_y(fig: go.Figure, acc: np.ndarray) -> None:
    """Percent accuracy axis covering every point (the run comparison)."""
    v = acc[np.isfinite(acc)]
    lo, hi = (v.min(), v.max()) if v.size else (0.0, 1.0)
    pad = max(0.08 * (hi - lo), 0.005)
    fig.update_yaxes(range=[lo - pad, hi + pad], tickformat=_tickformat(hi - lo + 2 * pad))


def accuracy_range(acc: np.ndarray, floor: float, base: float) -> tuple[float, float, float]:
    """The trade-off chart's accuracy axis: (bottom, top, bottom of every point).

    It starts ``ZOOM`` below the lower of the floor and the baseline's accuracy (or at the worst
    point, if that is higher) and ends a little above the best point: the region where the
    decision is made. Points below it are left to the toolbar's Autoscale (a double-click
    only clears the selection in the chart's box-select mode).

    Example:
        >>> accuracy_range(np.array([0.3, 0.97, 0.985]), 0.975, 0.98)[:2]  # doctest: +ELLIPSIS
        (0.925, 0.98...)
    """
    v = np.append(acc[np.isfinite(acc)], [floor] if math.isfinite(floor) else [])
    if not v.size:
        return 0.0, 1.0, 0.0
    top, every = v.max(), v.min()
    refs = [r for r in (floor, base) if math.isfinite(r)]
    ref = min(refs) if refs else top
    every -= max(0.08 * (top - every), 0.005)
    lo = max(every, ref - ZOOM)
    return float(lo), float(top + max(0.1 * (top - lo), 0.004)), float(every)  # room for a star


def regressions(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the rows slower than the baseline and of those not smaller than it.

    Slower only beyond timing noise: the row's paired speed-up interval lies below 1
    (``speed_verdict == "slower"``, from the run's interleaved timing). Not smaller:
    size_bytes >= the baseline's. The baseline itself (and every row, without a baseline) is
    never flagged.

    Example:
        >>> slower, not_smaller = regressions(df)  # doctest: +SKIP
    """
    n, b = len(df), baseline_index(df)
    if b is None:
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    size = _num(df, "size_bytes")
    verdict = df["speed_verdict"] if "speed_verdict" in df.columns else pd.Series("", df.index)
    slower, bigger = np.array(verdict == "slower", dtype=bool), size >= size[b]
    slower[b] = bigger[b] = False
    return slower, bigger


def _figure(x: str, legend: str) -> go.Figure:
    if x not in X_TITLES:
        raise ValueError(f"`x in {tuple(X_TITLES)}` must hold, but got x={x!r}")
    # dragmode "select": box-select picks configs; uirevision keeps zoom and legend toggles
    layout = dict(template=_SCATTER_TEMPLATE, dragmode="select", hovermode="closest")
    layout["uirevision"] = x
    layout |= dict(xaxis_title=X_TITLES[x], yaxis_title="Accuracy (held-out test split)")
    legend_ = dict(title=legend, itemsizing="constant")
    return go.Figure(layout=dict(layout, legend=legend_, margin=dict(l=70, r=20, t=30, b=60)))


def _empty(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def _rule(axis: str, at: float, band: tuple[float, float], style: dict) -> tuple[list, dict]:
    """A named line at ``at`` on ``axis`` ("x" or "y") and a shaded band ``band`` beside it:
    ([band shape, line shape], label annotation)."""
    other = dict(xref="paper", x0=0, x1=1) if axis == "y" else dict(yref="paper", y0=0, y1=1)
    ref, color = {f"{axis}ref": axis}, style["color"]
    fill = dict(fillcolor=color, opacity=0.08, line_width=0, layer="below")
    span, ends = {f"{axis}0": band[0], f"{axis}1": band[1]}, {f"{axis}0": at, f"{axis}1": at}
    line = dict(color=color, width=2, dash=style.get("dash", "solid"))
    shapes = [
        dict(type="rect", name=style["band"], **ref, **other, **span, **fill),
        dict(type="line", name=style["name"], **ref, **other, **ends, line=line),
    ]
    pos = dict(x=1, y=at, xref="paper", xanchor="right", yanchor="bottom") if axis == "y" else {}
    pos = pos or dict(x=style.get("log_at", at), y=1, yref="paper", xanchor="left", yanchor="top")
    text = dict(text=style["text"], showarrow=False, font=dict(color=color), name=style["name"])
    text["bgcolor"] = "rgba(255,255,255,0.75)"  # readable over the points
    return shapes, text | pos


@functools.lru_cache(maxsize=1 << 16)
def short_id(key: str) -> str:
    """A short stable id of a config key (keys are long JSON plans; ids and URLs stay short).

    Example:
        >>> short_id("[]")
        '97d170e1'
    """
    return hashlib.sha1(key.encode()).hexdigest()[:8]


def _hover(df: pd.DataFrame, notes: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """(hovertemplate, customdata, hovertext): the figures travel as float32 numbers (percent
    accuracy, CI, bytes, p50, p90), the executed precision and the warnings as text."""
    cols = [100 * _num(df, c) for c in ("accuracy", "acc_low", "acc_high")]
    cols += [_num(df, c) for c in ("size_bytes", "latency_p50_ms", "latency_p90_ms")]
    executed, backend = _str(df, "precision", "?"), _str(df, "backend", "?")
    one = pd.unique(backend)
    if len(one) == 1:  # the usual case: name the backend once, in the template
        template = _HOVER.replace("<br>executed", f" on {one[0]}<br>executed")
    else:
        template, executed = _HOVER, executed + " on " + backend
    return template, np.column_stack(cols).astype(np.float32), (executed + notes).astype(str)


def _rows(df: pd.DataFrame, rec: Recommendation | None) -> dict:
    """The per-row arrays both trade-off figures share (computed once for the pair)."""
    c = rec.constraints if rec is not None else None
    keys, b = _str(df, "key"), baseline_index(df)
    notes, flagged = np.full(len(df), "", dtype=object), np.zeros(len(df), dtype=bool)
    warnings = []
    if b is not None:
        slower, bigger = regressions(df)
        flagged = slower | bigger
        warnings = [(slower, "slower than the baseline"), (bigger, "not smaller than it")]
    for col, lim in ((("size_bytes", c.max_size_bytes), ("latency_p50_ms", c.max_latency_ms))
                     if c else ()):  # fmt: skip
        if lim is not None:
            warnings.append((_num(df, col) > lim, f"over the {col.split('_')[0]} budget"))
    for mask, text in warnings:
        notes[mask] = notes[mask] + "<br>⚠ " + text
    template, cd, executed = _hover(df, notes)
    labels = (_str(df, "label") if "label" in df.columns else keys).astype(str)
    ids = np.array([short_id(k) for k in keys])  # fixed-width str: copied as one block
    return dict(keys=keys, ids=ids, fam=_str(df, "family", "other"), labels=labels, b=b,
                acc=_num(df, "accuracy"), flagged=flagged, template=template, cd=cd,
                executed=executed)  # fmt: skip


def tradeoff_figures(
    df: pd.DataFrame, rec: Recommendation | None = None, selected: Sequence[str] = ()
) -> dict[str, go.Figure]:
    """Both :func:`tradeoff_figure` s, ``{"size_bytes": ..., "latency_p50_ms": ...}``, sharing
    the per-row work (hover data, flags, ids): what a floor-slider move redraws."""
    rows = _rows(df, rec)
    return {x: _tradeoff(df, x, rec, selected, rows) for x in X_TITLES}


def tradeoff_figure(
    df: pd.DataFrame,
    x: str = "size_bytes",
    rec: Recommendation | None = None,
    selected: Sequence[str] = (),
) -> go.Figure:
    """Accuracy vs size (log axis) or vs p50 latency, with frontier, floor, budgets and picks.

    The 2-D Pareto frontier of the projection is a step line and its points are opaque with a
    dark outline; dominated points are faded. The baseline is a star, the recommended config is
    ringed (the closest one, in red, when nothing qualifies), ``selected`` keys get a square and
    points slower than or not smaller than the baseline (:func:`regressions`) an ``x``. One
    legend entry per family (:func:`family_styles`). The accuracy axis shows the region around
    the floor and the baseline (:func:`accuracy_range`); a note counts the points below it.

    Args:
        df: Result rows.
        x: ``"size_bytes"`` or ``"latency_p50_ms"``.
        rec: Recommendation whose floor and budget are drawn, or ``None``.
        selected: Keys to highlight.

    Example:
        >>> fig = tradeoff_figure(df, "latency_p50_ms", rec=recommend(df, Constraints(0.97)))
    """
    if x not in X_TITLES:
        raise ValueError(f"`x in {tuple(X_TITLES)}` must hold, but got x={x!r}")
    return _tradeoff(df, x, rec, selected, _rows(df, rec))


def _tradeoff(df, x: str, rec, selected: Sequence[str], rows: dict) -> go.Figure:
    c = rec.constraints if rec is not None else None
    floor = rec.floor_value if rec is not None else math.nan
    budget = (c.max_size_bytes if x == "size_bytes" else c.max_latency_ms) if c else None
    xs, acc, b, keys = _num(df, x), rows["acc"], rows["b"], rows["keys"]
    xaxis, x_hi = _x_axis(x, np.append(xs, budget or []))
    y_lo, y_hi, y_all = accuracy_range(acc, floor, acc[b] if b is not None else math.nan)
    yaxis = dict(range=[y_lo, y_hi], tickformat=_tickformat(y_hi - y_lo))
    traces, shapes, notes = [], [], []
    layout = dict(
        template=_SCATTER_TEMPLATE,
        # a click picks a config (shift-click adds one); the toolbar's Box Select picks many.
        # Not dragmode "select": Streamlit turns click-selection off while box-select is on
        dragmode="zoom",
        hovermode="closest",
        uirevision=x,  # keeps zoom and legend toggles across reruns
        xaxis=xaxis | dict(title=dict(text=X_TITLES[x])),
        yaxis=yaxis | dict(title=dict(text="Accuracy (held-out test split)")),
        legend=dict(title=dict(text="family"), itemsizing="constant"),
        margin=dict(l=70, r=20, t=30, b=60),
        shapes=shapes,
        annotations=notes,
    )
    if not len(df):
        notes.append(dict(text="No results yet", showarrow=False, xref="paper", yref="paper"))
        notes[-1] |= dict(x=0.5, y=0.5)
        return go.Figure(dict(data=traces, layout=layout), _validate=False)
    kind = "scattergl" if len(df) > GL_ROWS else "scatter"
    on = frontier(df, ("accuracy", x))

    def points(mask: np.ndarray, name: str, marker: dict, trace: str = kind, **kw) -> None:
        """Add the rows in ``mask`` as one marker trace; overlays pass ``hoverinfo="skip"``."""
        if mask.any():
            if "hoverinfo" not in kw:
                kw |= dict(customdata=rows["cd"][mask], text=rows["labels"][mask])
                kw |= dict(hovertext=rows["executed"][mask], hovertemplate=rows["template"])
            xy = dict(x=xs[mask].astype(np.float32), y=acc[mask].astype(np.float32))
            kw |= dict(**xy, ids=rows["ids"][mask], mode="markers", name=name)
            traces.append(dict(type=trace, marker=marker, **kw))

    others, fam = np.arange(len(df)) != (-1 if b is None else b), rows["fam"]
    for f, (color, symbol) in family_styles(list(pd.unique(fam[others]))).items():
        name, group = f.replace("+", " + "), dict(legendgroup=f, showlegend=False)
        marker = dict(color=color, symbol=symbol, size=9, line=dict(width=1.5, color="#222"))
        # the legend entry is a trace of its own, so that it is never drawn faded
        legend = dict(x=[None], y=[None], mode="markers", hoverinfo="skip", legendgroup=f)
        traces.append(dict(type=kind, name=name, marker=marker, **legend))
        points(others & (fam == f) & on, name, marker, **group)
        faded = dict(marker, opacity=FADED, line=dict(width=0))
        points(others & (fam == f) & ~on, name, faded, **group)
    order = np.flatnonzero(on)[np.argsort(xs[on], kind="stable")]
    step = dict(x=xs[order], y=acc[order], mode="lines", name="Pareto frontier", hoverinfo="skip")
    traces.append(dict(type=kind, **step, line=dict(shape="hv", color="#444", width=1.5)))
    star = dict(symbol="star", size=18, color="#FFD700", line=dict(width=1.5, color="#222"))
    points(others == 0, "baseline", star, "scatter")
    cross = dict(symbol="x", size=6, color=RED)
    points(rows["flagged"], "slower / not smaller than baseline", cross, hoverinfo="skip")
    square = dict(symbol="square-open", size=17, color="#FF7F0E", line=dict(width=2.5))
    points(np.isin(keys, list(selected)), "selected", square, hoverinfo="skip")
    if rec is not None and (rec.key or rec.closest_key):
        ring = dict(symbol="circle-open", size=24, color="#111" if rec.key else RED)
        ring["line"] = dict(width=3)
        name = "recommended" if rec.key else "closest (misses the target)"
        points(keys == (rec.key or rec.closest_key), name, ring, "scatter", hoverinfo="skip")
    if math.isfinite(floor):
        worst = (
            rec is not None and rec.constraints is not None and rec.constraints.on != "accuracy"
        )
        text = f"floor {fmt_pct(floor)}" + (" (on each config's worst class)" if worst else "")
        style = dict(name="floor", band="below floor", color=RED, text=text)
        # the band reaches the lowest point, so that Autoscale shows them under it
        more, text = _rule("y", floor, (min(y_lo, y_all), floor), style)
        shapes += more
        notes.append(text)
    if budget is not None:
        text = f"budget {fmt_bytes(budget) if x == 'size_bytes' else fmt_ms(budget)}"
        log_at = math.log10(budget) if x == "size_bytes" else budget  # annotations use log units
        style = dict(name="budget", band="over budget", color=GREY, dash="dash", text=text)
        more, text = _rule("x", budget, (budget, max(x_hi, budget)), style | {"log_at": log_at})
        shapes += more
        notes.append(text)
    if hidden := int(np.sum(acc < y_lo)):
        text = f"{hidden} config{'s' * (hidden > 1)} below {fmt_pct(y_lo)}: "
        notes.append(
            dict(text=text + "Autoscale (toolbar) shows all", name="hidden", showarrow=False)
            | dict(xref="paper", yref="paper", x=0.01, y=0.01, xanchor="left", yanchor="bottom")
            | dict(font=dict(color=GREY, size=11), bgcolor="rgba(255,255,255,0.8)")
        )
    return go.Figure(dict(data=traces, layout=layout), _validate=False)


def profile_figure(layers: pd.DataFrame) -> go.Figure:
    """Horizontal bars of each layer's share of parameters, FLOPs and (if measured) latency.

    Args:
        layers: One row per layer with ``layer``, ``params``, ``flops`` and optionally
            ``latency_share`` (a fraction; NaN where not measured).

    Example:
        >>> profile_figure(pd.DataFrame({"layer": ["fc1"], "params": [10], "flops": [20]}))
    """
    if "layer" not in layers.columns:
        raise ValueError(f"`layers` must have a `layer` column, but got {list(layers.columns)}")
    panels = []
    for i, (col, title) in enumerate((("params", "Parameters"), ("flops", "FLOPs"))):
        raw = _num(layers, col)
        total = np.nansum(raw)
        panels.append((title, raw / total if total > 0 else np.full(len(raw), np.nan), raw, i))
    lat = _num(layers, "latency_share")
    if np.isfinite(lat).any():
        panels.append(("Latency", lat, lat, 2))
    titles = [p[0] + " share" for p in panels]
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, subplot_titles=titles)
    names = _str(layers, "layer").astype(str)
    if "type" in layers.columns:  # "2 Conv2d" says more than "2" (nn.Sequential indices)
        names = names + " " + _str(layers, "type").astype(str)
    for k, (title, share, raw, i) in enumerate(panels, 1):
        hover = f"%{{y}}<br>{title}: %{{x:.1%}} (%{{customdata:,.4~g}})<extra></extra>"
        bar = dict(x=share, y=names, orientation="h", name=title, marker_color=PALETTE[i])
        fig.add_trace(go.Bar(**bar, customdata=raw, hovertemplate=hover), row=1, col=k)
    fig.update_xaxes(tickformat=".0%", rangemode="tozero")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(template=_TEMPLATE, showlegend=False, height=160 + 22 * len(layers))
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=30), bargap=0.25)
    return fig if len(layers) else _empty(fig, "No layer profile yet")


def compare_figure(
    runs: dict[str, pd.DataFrame], x: str = "size_bytes", floor: float = math.nan
) -> go.Figure:
    """Overlay each run's 2-D frontier (accuracy vs ``x``) as a step line with its points.

    Args:
        runs: Result rows per run name; one colour per run.
        x: ``"size_bytes"`` or ``"latency_p50_ms"``.
        floor: An absolute accuracy floor: the y axis then focuses near it, as Trade-offs'
            does (:func:`accuracy_range`); NaN covers every point.

    Example:
        >>> compare_figure({"mnist-cnn": df_a, "resnet18": df_b}, x="latency_p50_ms")
    """
    fig = _figure(x, "run")
    frames = [d for d in runs.values() if len(d)]
    _style_x(fig, x, np.concatenate([_num(d, x) for d in frames] or [np.empty(0)]))
    acc = np.concatenate([_num(d, "accuracy") for d in frames] or [np.empty(0)])
    if math.isfinite(floor) and np.isfinite(acc).any():
        lo, hi, _ = accuracy_range(acc, floor, math.nan)
        fig.update_yaxes(range=[lo, hi], tickformat=_tickformat(hi - lo))
    else:
        _style_y(fig, acc)
    if not frames:
        return _empty(fig, "No runs to compare yet")
    hover = "<b>%{customdata[2]}</b> (%{customdata[1]})<br>accuracy %{y:.1%}<extra></extra>"
    for i, (name, d) in enumerate((n, d) for n, d in runs.items() if len(d)):
        color, xs, acc = PALETTE[i % len(PALETTE)], _num(d, x), _num(d, "accuracy")
        on = frontier(d, ("accuracy", x))
        order = np.flatnonzero(on)[np.argsort(xs[on], kind="stable")]
        label = _str(d, "label") if "label" in d.columns else _str(d, "key")
        cd = np.column_stack([_str(d, "key"), np.full(len(d), name, dtype=object), label])
        scatter = go.Scattergl if len(d) > GL_ROWS else go.Scatter
        kw = dict(name=name, legendgroup=name, hovertemplate=hover)
        pts = dict(x=xs, y=acc, mode="markers", showlegend=False, customdata=cd)
        fig.add_trace(scatter(**pts, marker=dict(color=color, size=7, opacity=FADED), **kw))
        kw |= dict(x=xs[order], y=acc[order], mode="lines+markers", customdata=cd[order])
        kw |= dict(line=dict(shape="hv", color=color, width=2), marker=dict(color=color, size=9))
        fig.add_trace(scatter(**kw))
    return fig


def deck_figure(fig: go.Figure, title: str, marks: dict[str, str]) -> go.Figure:
    """``fig`` as a slide takes it: ``title`` on top, each trace named in ``marks`` (e.g.
    ``{"recommended": "int4 w/channel", "baseline": "fp32"}``) labelled at its point, and no
    hint that only the interactive chart has (its toolbar's Autoscale).

    Example:
        >>> deck = deck_figure(fig, "digits_cnn: accuracy vs size (floor 97 %)", {"baseline": "fp32"})
    """
    deck = go.Figure(fig)
    notes = [a for a in deck.layout.annotations if a.name != "hidden"]
    for trace in deck.data:
        if trace.name in marks and trace.x is not None and len(trace.x):
            notes.append(dict(
                x=math.log10(trace.x[0]) if deck.layout.xaxis.type == "log" else trace.x[0],
                y=trace.y[0], text=f"<b>{trace.name}</b>: {marks[trace.name]}", showarrow=True,
                arrowhead=2, ax=40, ay=-36, font=dict(size=13), bgcolor="rgba(255,255,255,0.85)",
                bordercolor="#444", borderwidth=1,
            ))  # fmt: skip
    deck.update_layout(
        annotations=notes,
        title=dict(text=title, x=0.01, xanchor="left", font=dict(size=20)),
        margin=dict(t=70),
        font=dict(size=14),
    )
    return deck
