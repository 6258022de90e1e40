"""Models: the sample models with their baseline figures, and one model's per-layer profile."""

from __future__ import annotations

import streamlit as st

from optim import charts, ui
from optim.frontier import fmt_bytes, fmt_ms, fmt_pct
from optim.sources import model_names
from pages._ui import common, views

common.frame_guard()

st.title("Models")
st.caption("Baseline figures come from each model's newest run, or from its profile once taken.")

table = st.container()  # filled after the profile below, so it includes it

st.subheader("Profile")
name = common.model_picker()
prof = common.model_profile(name)  # None (after saying why) until the weights exist
figures = common.baseline_figures() | st.session_state.get("_profiled", {})
table.dataframe(
    ui.model_table(model_names(), figures),
    hide_index=True,
    width="stretch",
    column_config=views.MODEL_COLUMNS,
    placeholder="—",
)
if prof is None:
    st.stop()

s = prof.summary
params, flops, acc, size, latency = st.columns(5)
params.metric("Parameters", f"{s['params']:,}")
flops.metric("FLOPs / example", f"{s['flops'] / 1e6:,.2f} M" if s["flops"] else "n/a")
acc.metric(
    "Accuracy",
    fmt_pct(s["accuracy"]),
    help=f"95 % CI {fmt_pct(s['acc_low'])} – {fmt_pct(s['acc_high'])}",
)
size.metric(
    "Size (.onnx)",
    fmt_bytes(s["size_bytes"]),
    help=f"The fp32 .onnx file; download (.onnx.zst) {fmt_bytes(s.get('download_bytes'))}, "
    f"peak memory running it {fmt_bytes(s.get('peak_rss_bytes'))}",
)
timed = figures.get(name, {})  # the newest run's baseline, timed with that run's configs
if "measured_in" in timed and timed.get("latency_p50_ms") == timed.get("latency_p50_ms"):
    p50, lo, hi, where = (
        timed[k] for k in ("latency_p50_ms", "p50_low", "p50_high", "measured_in")
    )
else:
    p50, lo, hi, where = s["latency_p50_ms"], s["p50_low"], s["p50_high"], "this profile"
latency.metric(
    "Latency p50",
    fmt_ms(p50),
    help=f"95 % CI {fmt_ms(lo)}–{fmt_ms(hi)}; measured in {where}: {s['backend']}, "
    f"{s['threads']} thread(s), batch 1, interleaved rounds",
)

st.caption(
    f"Latency p50 {fmt_ms(p50)} (95 % CI {fmt_ms(lo)}–{fmt_ms(hi)}) measured in {where}; size is "
    "the fp32 .onnx file's bytes."
)
st.plotly_chart(charts.profile_figure(prof.layers), config={"displaylogo": False})
st.dataframe(prof.layers, hide_index=True, width="stretch", column_config=views.LAYER_COLUMNS)
