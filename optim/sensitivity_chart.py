"""The sensitivity heatmap (plotly, no streamlit): layers x settings, coloured by accuracy drop."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def setting_label(kind: str, setting: float) -> str:
    return f"int{int(setting)}" if kind == "quantize" else f"prune {setting:.0%}"


def sensitivity_figure(df: pd.DataFrame) -> go.Figure:
    """Heatmap of the accuracy drop (points) per layer and setting, with each layer's share of
    parameters and of measured latency beside it. Layers run top to bottom in graph order.

    Example:
        >>> fig = sensitivity_figure(sensitivity("digits_cnn"))  # doctest: +SKIP
    """
    fig = make_subplots(rows=1, cols=2, column_widths=[0.72, 0.28], shared_yaxes=True,
                        horizontal_spacing=0.03,
                        subplot_titles=("Accuracy drop when only this layer changes (points, calib split)",
                                        "Share of the model"))  # fmt: skip
    if not len(df):
        return fig
    df = df.assign(
        col=[setting_label(k, s) for k, s in zip(df["kind"], df["setting"], strict=True)]
    )
    if "name" in df.columns:  # "conv 2 (32→64, 3×3)", not the initializer's "0.weight"
        df = df.assign(layer=df["name"].fillna(df["layer"]))
    layers = list(dict.fromkeys(df["layer"]))
    # quantization, then pruning, each from the mildest change to the harshest
    harsh = df["setting"].where(df["kind"] == "prune", -df["setting"])
    cols = list(dict.fromkeys(df.assign(harsh=harsh).sort_values(
        ["kind", "harsh"], ascending=[False, True])["col"]))  # fmt: skip
    grid = df.pivot_table(index="layer", columns="col", values="accuracy_drop").loc[layers, cols]
    z = grid.to_numpy() * 100
    fig.add_trace(go.Heatmap(
        z=z, x=cols, y=layers, colorscale="Reds", zmin=0, zmax=max(5.0, float(z.max())),
        text=[[f"{v:.1f}" for v in row] for row in z], texttemplate="%{text}",
        hovertemplate="%{y}<br>%{x}: −%{z:.2f} points<extra></extra>",
        colorbar={"title": "points", "orientation": "h", "x": 0.36, "y": -0.18, "len": 0.5,
                  "thickness": 12},
    ), row=1, col=1)  # fmt: skip
    shares = df.drop_duplicates("layer").set_index("layer").loc[layers]
    for name, col, colour in (("params", "params_share", "#2563EB"),
                              ("latency", "latency_share", "#F59E0B")):  # fmt: skip
        fig.add_trace(go.Bar(x=shares[col].fillna(0) * 100, y=layers, orientation="h", name=name,
                             marker_color=colour,
                             hovertemplate="%{y}: %{x:.1f} % of " + name + "<extra></extra>"),
                      row=1, col=2)  # fmt: skip
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_xaxes(title_text="% of model", row=1, col=2)
    fig.update_layout(template="plotly_white", barmode="group", height=max(320, 34 * len(layers) + 140),
                      legend={"orientation": "h", "y": -0.12, "x": 0.75}, margin={"t": 60})  # fmt: skip
    return fig
