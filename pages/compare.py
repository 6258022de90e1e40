"""Compare runs: overlay the frontiers of several runs and tabulate what each buys at the floor."""

from __future__ import annotations

import streamlit as st

from optim import charts, run_view, tables
from optim import frontier as fr
from pages._ui import common, views

common.frame_guard()

st.title("Compare runs")
runs = common.store().runs()
if runs.empty:
    st.info("No runs yet. Start a sweep to have something to compare.")
    st.stop()

labels = {
    int(r["id"]): run_view.run_label(r, common.run_state(r)) for r in runs.to_dict("records")
}
current = st.session_state.get("run")
default = ([current] if current in labels else []) + [r for r in labels if r != current]
default = default[:2]  # the current run and the newest other one
picked = st.multiselect(
    "Runs", list(labels), default=default, format_func=labels.get, key="compare_runs"
)
if not picked:
    st.info("Pick one or more runs.")
    st.stop()

chosen = runs[runs["id"].isin(picked)]
st.dataframe(
    run_view.runs_table(chosen), hide_index=True, width="stretch", column_config=views.RUNS_COLUMNS
)
results = {run_view.run_title(r): common.measured(int(r["id"])) for r in chosen.to_dict("records")}
if empty := [name for name, ok in results.items() if not len(ok)]:
    st.warning(f"No measured results yet in {', '.join(empty)}.")

# the Trade-offs floor, under its rules: its % toggle converts against the current run's baseline
base_acc = fr.floor_reference(common.measured(current)) if current in labels else None
floor, relative = views.compare_floor(base_acc)
size_chart, latency_chart = st.columns(2, gap="large")
for column, x in ((size_chart, "size_bytes"), (latency_chart, "latency_p50_ms")):
    with column:
        focus = floor if not relative else floor * (base_acc or float("nan"))
        fig = charts.compare_figure(results, x, floor=focus)  # the y axis near the floor
        fig.update_layout(height=440, legend=dict(orientation="h", y=-0.2, x=0))
        if not relative:  # a relative floor differs per run: only the table applies it
            views.floor_line(fig, floor)
        st.plotly_chart(fig, key=f"compare_{x}", config={"displaylogo": False})
        views.png_button(fig, f"compare-{x.split('_')[0]}.png", key=f"compare_png_{x}")

st.subheader("At the floor")
st.dataframe(
    tables.compare_rows(results, floor, relative),
    hide_index=True,
    width="stretch",
    column_config=views.COMPARE_COLUMNS,
)
