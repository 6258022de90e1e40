"""Plotly figures from result rows (no streamlit): trade-off scatter, layer profile, run compare.

Every point carries its config ``key`` in ``customdata[0]``, so a UI can map a clicked or
box-selected point back to its row (overlay traces repeat keys: dedupe)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from optim.frontier import Recommendation, baseline_index, fmt_bytes, fmt_ms, fmt_pct, frontier

__all__ = ["compare_figure", "fmt_bytes", "fmt_pct", "profile_figure", "tradeoff_figure"]

X_TITLES = {
    "size_bytes": "Artifact size (bytes on disk)",
    "latency_p50_ms": "Latency p50 (ms, ONNX Runtime)",
}
FAMILIES = ("baseline", "quantize", "int8", "prune", "structured")  # fixed colours come first
PALETTE = qualitative.Plotly + qualitative.D3
GL_ROWS = 1000  # above this many rows, points use WebGL (go.Scattergl)
FADED = 0.35  # opacity of dominated points
RED, GREY = "#B22222", "#555"
_TEMPLATE = pio.templates["plotly_white"]  # the object validates faster than its name
_HOVER = "%{customdata[1]}<extra>%{fullData.name}</extra>"
_ROW = (
    "<b>{}</b><br>accuracy {:.1f} % (95 % CI {:.1f}-{:.1f} %)<br>size {:.1f} {}<br>"
    "latency p50 {:.2f} ms, p90 {:.2f} ms<br>executed {} on {}{}"
)


def family_colors(families: Sequence[str]) -> dict[str, str]:
    """Stable colour per family: the known families first, then the others sorted.

    Example:
        >>> family_colors(["prune", "quantize"])["quantize"]
        '#EF553B'
    """
    order = list(FAMILIES) + sorted(set(families) - set(FAMILIES))
    return {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(order)}


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    if col not in df.columns:
        return np.full(len(df), np.nan)
    return df[col].to_numpy(dtype=float, na_value=np.nan)


def _str(df: pd.DataFrame, col: str, default: str = "") -> np.ndarray:
    if col not in df.columns:
        return np.full(len(df), default, dtype=object)
    return df[col].fillna(default).astype(str).to_numpy(dtype=object)


def _tick_bytes(v: float) -> str:
    unit = min(int(math.log10(v) // 3), 3) if v >= 1 else 0
    return f"{v / 1000**unit:.3g} {('B', 'KB', 'MB', 'GB')[unit]}"


def _style_x(fig: go.Figure, x: str, values: np.ndarray) -> float:
    """Log byte axis (KB/MB ticks) or linear ms axis over ``values``; returns the range end."""
    v = values[np.isfinite(values) & (values > 0)]
    if x == "size_bytes":
        lo, hi = (math.log10(v.min()), math.log10(v.max())) if v.size else (3.0, 9.0)
        pad = max(0.08 * (hi - lo), 0.15)
        lo, hi = lo - pad, hi + pad
        ticks = [m * 10.0**e for e in range(math.floor(lo), math.ceil(hi)) for m in (1, 2, 5)]
        ticks = [t for t in ticks if lo <= math.log10(t) <= hi]
        ticks = [t for t in ticks if f"{t:e}"[0] == "1"] if len(ticks) > 10 else ticks
        text = [_tick_bytes(t) for t in ticks]
        fig.update_xaxes(type="log", range=[lo, hi], tickvals=ticks, ticktext=text)
        return 10**hi
    hi = 1.08 * v.max() if v.size else 10.0
    fig.update_xaxes(type="linear", range=[0, hi], ticksuffix=" ms")
    return hi


def _style_y(fig: go.Figure, acc: np.ndarray, floor: float = math.nan) -> float:
    """Percent accuracy axis covering the points and the floor; returns the range bottom."""
    v = np.append(acc[np.isfinite(acc)], [floor] if math.isfinite(floor) else [])
    lo, hi = (v.min(), v.max()) if v.size else (0.0, 1.0)
    pad, span = max(0.08 * (hi - lo), 0.005), hi - lo
    fmt = ".0%" if span > 0.05 else ".1%" if span > 0.005 else ".2%"
    fig.update_yaxes(range=[lo - pad, hi + pad], tickformat=fmt)
    return lo - pad


def _figure(x: str, legend: str) -> go.Figure:
    if x not in X_TITLES:
        raise ValueError(f"`x in {tuple(X_TITLES)}` must hold, but got x={x!r}")
    # dragmode "select": box-select picks configs; uirevision keeps zoom and legend toggles
    layout = dict(template=_TEMPLATE, dragmode="select", hovermode="closest", uirevision=x)
    layout |= dict(xaxis_title=X_TITLES[x], yaxis_title="Accuracy (held-out test split)")
    legend_ = dict(title=legend, itemsizing="constant")
    return go.Figure(layout=dict(layout, legend=legend_, margin=dict(l=70, r=20, t=30, b=60)))


def _empty(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def _customdata(df: pd.DataFrame, notes: np.ndarray) -> np.ndarray:
    """``[key, hover text]`` per row: cheaper for plotly to copy and serialize than 11 columns."""
    keys = _str(df, "key")
    cols = [_str(df, "label") if "label" in df.columns else keys, 100 * _num(df, "accuracy")]
    size = _num(df, "size_bytes")
    exp = np.clip(np.log10(np.where(size > 0, size, 1)) // 3, 0, 3).astype(int)  # as fmt_bytes
    unit = np.array(["B", "KB", "MB", "GB"], dtype=object)[exp]
    cols += [100 * _num(df, "acc_low"), 100 * _num(df, "acc_high"), size / 1000.0**exp, unit]
    cols += [_num(df, "latency_p50_ms"), _num(df, "latency_p90_ms")]
    cols += [_str(df, "precision", "?"), _str(df, "backend", "?"), notes]
    rows = zip(*(c.tolist() for c in cols), strict=True)
    text = np.array([_ROW.format(*row) for row in rows], dtype=object)
    return np.column_stack([keys, text]).reshape(len(df), 2)


def _notes(size: np.ndarray, lat: np.ndarray, b: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Hover warning per row and the mask of rows slower than or not smaller than the baseline."""
    notes = np.full(len(size), "", dtype=object)
    if b is None:
        return notes, np.zeros(len(size), dtype=bool)
    slower, bigger = lat > lat[b], size >= size[b]
    slower[b] = bigger[b] = False
    for mask, text in ((slower, "slower than the baseline"), (bigger, "not smaller than it")):
        notes[mask] = notes[mask] + "<br>⚠ " + text
    return notes, slower | bigger


def _rule(fig: go.Figure, axis: str, at: float, band: tuple[float, float], style: dict) -> None:
    """A named line at ``at`` on ``axis`` ("x" or "y") and a shaded band ``band`` beside it."""
    other = dict(xref="paper", x0=0, x1=1) if axis == "y" else dict(yref="paper", y0=0, y1=1)
    color, span = style["color"], {f"{axis}0": band[0], f"{axis}1": band[1]}
    fill = dict(fillcolor=color, opacity=0.08, line_width=0, layer="below")
    fig.add_shape(type="rect", name=style["band"], **other, **span, **fill)
    line = dict(color=color, width=2, dash=style.get("dash", "solid"))
    ends = {f"{axis}0": at, f"{axis}1": at}
    fig.add_shape(type="line", name=style["name"], **other, **ends, line=line)
    pos = dict(x=1, y=at, xref="paper", xanchor="right", yanchor="bottom") if axis == "y" else {}
    pos = pos or dict(x=style.get("log_at", at), y=1, yref="paper", xanchor="left", yanchor="top")
    fig.add_annotation(text=style["text"], showarrow=False, font=dict(color=color), **pos)


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
    points slower than or not smaller than the baseline an ``x``. One legend entry per family.

    Args:
        df: Result rows.
        x: ``"size_bytes"`` or ``"latency_p50_ms"``.
        rec: Recommendation whose floor and budget are drawn, or ``None``.
        selected: Keys to highlight.

    Example:
        >>> fig = tradeoff_figure(df, "latency_p50_ms", rec=recommend(df, Constraints(0.97)))
    """
    fig = _figure(x, "family")
    c = rec.constraints if rec is not None else None
    floor = rec.floor_value if rec is not None else math.nan
    budget = (c.max_size_bytes if x == "size_bytes" else c.max_latency_ms) if c else None
    xs, acc = _num(df, x), _num(df, "accuracy")
    x_hi = _style_x(fig, x, np.append(xs, budget or []))
    y_lo = _style_y(fig, acc, floor)
    if not len(df):
        return _empty(fig, "No results yet")
    scatter = go.Scattergl if len(df) > GL_ROWS else go.Scatter
    keys, fam, b = _str(df, "key"), _str(df, "family", "other"), baseline_index(df)
    on = frontier(df, ("accuracy", x))
    notes, flagged = _notes(_num(df, "size_bytes"), _num(df, "latency_p50_ms"), b)
    limits = {"size_bytes": c.max_size_bytes, "latency_p50_ms": c.max_latency_ms} if c else {}
    for col, lim in limits.items():
        if lim is not None:
            notes[_num(df, col) > lim] += f"<br>⚠ over the {col.split('_')[0]} budget"
    cd = _customdata(df, notes)

    def points(mask: np.ndarray, name: str, marker: dict, trace: type = scatter, **kw) -> None:
        """Add the rows in ``mask`` as one marker trace; overlays pass ``hoverinfo="skip"``."""
        if mask.any():
            hover = {} if "hoverinfo" in kw else {"hovertemplate": _HOVER}
            data = cd[mask] if hover else cd[mask, :1]  # overlays carry just the key
            kw |= dict(x=xs[mask], y=acc[mask], mode="markers", name=name, customdata=data)
            fig.add_trace(trace(marker=marker, **hover, **kw))

    others = np.arange(len(df)) != (-1 if b is None else b)
    colors = family_colors(list(pd.unique(fam)))
    for f, color in colors.items():
        m = others & (fam == f)
        outline = dict(width=np.where(on[m], 1.5, 0.0), color="#222")
        marker = dict(color=color, size=9, opacity=np.where(on[m], 1.0, FADED), line=outline)
        points(m, f, marker, legendgroup=f)
    order = np.flatnonzero(on)[np.argsort(xs[on], kind="stable")]
    step = dict(x=xs[order], y=acc[order], mode="lines", name="Pareto frontier", hoverinfo="skip")
    fig.add_trace(scatter(**step, line=dict(shape="hv", color="#444", width=1.5)))
    star = dict(symbol="star", size=18, color="#FFD700", line=dict(width=1.5, color="#222"))
    points(others == 0, "baseline", star, go.Scatter)
    cross = dict(symbol="x", size=6, color=RED)
    points(flagged, "slower / not smaller than baseline", cross, hoverinfo="skip")
    square = dict(symbol="square-open", size=17, color="#FF7F0E", line=dict(width=2.5))
    points(np.isin(keys, list(selected)), "selected", square, hoverinfo="skip")
    if rec is not None and (rec.key or rec.closest_key):
        ring = dict(symbol="circle-open", size=24, color="#111" if rec.key else RED)
        ring["line"] = dict(width=3)
        name = "recommended" if rec.key else "closest (misses the target)"
        points(keys == (rec.key or rec.closest_key), name, ring, go.Scatter, hoverinfo="skip")
    if math.isfinite(floor):
        style = dict(name="floor", band="below floor", color=RED, text=f"floor {fmt_pct(floor)}")
        _rule(fig, "y", floor, (y_lo, floor), style)
    if budget is not None:
        text = f"budget {fmt_bytes(budget) if x == 'size_bytes' else fmt_ms(budget)}"
        log_at = math.log10(budget) if x == "size_bytes" else budget  # annotations use log units
        style = dict(name="budget", band="over budget", color=GREY, dash="dash", text=text)
        _rule(fig, "x", budget, (budget, max(x_hi, budget)), {**style, "log_at": log_at})
    return fig


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
    names = _str(layers, "layer")
    for k, (title, share, raw, i) in enumerate(panels, 1):
        hover = f"%{{y}}<br>{title}: %{{x:.1%}} (%{{customdata:,.4~g}})<extra></extra>"
        bar = dict(x=share, y=names, orientation="h", name=title, marker_color=PALETTE[i])
        fig.add_trace(go.Bar(**bar, customdata=raw, hovertemplate=hover), row=1, col=k)
    fig.update_xaxes(tickformat=".0%", rangemode="tozero")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(template=_TEMPLATE, showlegend=False, height=160 + 22 * len(layers))
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=30), bargap=0.25)
    return fig if len(layers) else _empty(fig, "No layer profile yet")


def compare_figure(runs: dict[str, pd.DataFrame], x: str = "size_bytes") -> go.Figure:
    """Overlay each run's 2-D frontier (accuracy vs ``x``) as a step line with its points.

    Args:
        runs: Result rows per run name; one colour per run.
        x: ``"size_bytes"`` or ``"latency_p50_ms"``.

    Example:
        >>> compare_figure({"mnist-cnn": df_a, "resnet18": df_b}, x="latency_p50_ms")
    """
    fig = _figure(x, "run")
    frames = [d for d in runs.values() if len(d)]
    _style_x(fig, x, np.concatenate([_num(d, x) for d in frames] or [np.empty(0)]))
    _style_y(fig, np.concatenate([_num(d, "accuracy") for d in frames] or [np.empty(0)]))
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
