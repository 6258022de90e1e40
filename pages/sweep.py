"""Sweep: pick a model and a grid of optimizations, see the cost up front, run it, watch it."""

from __future__ import annotations

import streamlit as st

from pages._ui import common, forms

common.frame_guard()

st.title("Sweep")
st.caption(
    "Every config is built, written to disk and measured from that artifact alone. "
    "The sweep runs in the background: close the tab, come back, it is still going."
)
common.flash()

model = common.model_picker()
st.subheader("Grid")
plan_list = forms.grid_form(model)
plan_list += forms.advanced_form(model)
settings = forms.settings_form()
forms.start_controls(model, plan_list, settings)
forms.search_form(model, settings)

st.subheader("Progress")
if st.session_state.get("run") is None:
    st.caption("No runs yet: press **Run sweep** and its rows stream in here as they finish.")
elif (cur := common.current()) is not None:
    if not common.is_live(cur.run):
        common.status_banner(cur)
    forms.progress_panel(cur.id)
