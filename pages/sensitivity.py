"""Sensitivity: which layer is responsible? The accuracy drop when one layer at a time is
quantized or pruned, beside its share of parameters and of latency."""

from __future__ import annotations

import streamlit as st

from optim import model_view
from optim.sensitivity_chart import sensitivity_figure
from pages._ui import common

common.frame_guard()


st.title("Sensitivity")
st.caption(
    "Each cell changes ONE layer (everything else stays fp32) and measures the accuracy drop on "
    "the calibration split; the held-out test split stays untouched for the frontier."
)
name = common.model_picker()
left, right = st.columns(2)
bits = left.multiselect("Bit-widths", [2, 3, 4, 5, 6, 8], default=[2, 3, 4, 8], key="sens_bits")
sparsities = right.multiselect(
    "Sparsities", [0.25, 0.5, 0.75, 0.9], default=[0.5, 0.75, 0.9], key="sens_sparsity",
    format_func=lambda s: f"{s:.0%}",
)  # fmt: skip
if not bits and not sparsities:
    st.info("Pick at least one bit-width or sparsity.")
    st.stop()
if model_view.model_note(name)[0] != "ready":
    st.stop()  # the model picker has said why
df = common.sensitivity(name, tuple(sorted(bits)), tuple(sorted(sparsities)))
fig = sensitivity_figure(df)
# colour bar and legend in the figure's bottom margin, clear of the axis labels
bottom = dict(orientation="h", yref="container", y=0.02, yanchor="bottom")
fig.update_traces(
    colorbar=bottom | dict(x=0.36, len=0.5, thickness=12, title=dict(text="points", side="right")),
    selector=dict(type="heatmap"),
)
fig.update_layout(legend=bottom | dict(x=1, xanchor="right"), margin=dict(b=95))
fig.update_layout(height=(fig.layout.height or 320) + 35)
st.plotly_chart(fig, key="sensitivity_chart")
worst = df.sort_values("accuracy_drop", ascending=False).head(3)
st.markdown(
    "**Most sensitive:** "
    + ", ".join(
        f"**{r.name}** `{r.layer}` ({r.kind} {r.setting:g}: −{100 * r.accuracy_drop:.1f} pts)"
        for r in worst.itertuples()
    )  # fmt: skip
)
st.caption(
    "Use it in a sweep: *mixed precision* keeps the most sensitive layers at 8 bits "
    "(MixedQuantize with keep 8bit > 0 in the Sweep page's advanced plans takes this ranking at "
    "3 bits), or let the search allocate bits."
)
with st.expander("Table"):
    st.dataframe(df, hide_index=True, width="stretch")
