"""Trade-offs: set an accuracy floor and budgets, see which config ships and what it costs."""

from __future__ import annotations

import streamlit as st

from pages._ui import common, views
from pages._ui.report_button import report_button

common.frame_guard()

st.title("Trade-offs")
cur = common.current()
if cur is None:
    st.stop()
common.flash()
common.status_banner(cur)
if common.no_rows(cur):
    st.stop()

rec = views.constraint_controls(cur.ok)
views.headline_card(rec, cur.ok)
selected = views.restore_selection(cur.ok)

views.tradeoff_charts(cur.ok, rec, selected)  # accuracy vs size | accuracy vs p50 latency
views.flag_summary(cur.ok)
views.measurement_note(cur.run, cur.ok)

views.selection_details(cur.ok)

views.all_configs(cur.ok, rec, cur.id)
common.failed_expander(cur.failed)
report_button(cur, rec)  # the one-page decision report, PDF / HTML
