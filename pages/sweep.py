"""Sweep: pick a model and a grid of optimizations, see the cost up front, run it, watch it.

While a run is measuring, the page shows THAT run's grid, read-only, with its progress (after a
reload or in a second tab too); a new grid is planned beside it and starts as a new run."""

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

if not (live := forms.live_runs()):
    st.session_state.pop("_plan_next", None)  # the next live run opens read-only again
elif not st.session_state.get("_plan_next"):
    forms.running_grid(live[0])  # what is measuring now, read-only, and its progress
    st.stop()
else:
    st.button(f"Back to run #{live[0]}, measuring", icon=":material/arrow_back:",
              on_click=forms._plan_next, args=(False,))  # fmt: skip

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
