"""Trade-offs: set an accuracy floor and budgets, see which config ships and what it costs."""

from __future__ import annotations

import streamlit as st

from pages._ui import common
from pages._ui import views

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

size_chart, latency_chart = st.columns(2, gap="large")
with size_chart:
    views.tradeoff_chart(cur.ok, "size_bytes", rec, selected)
with latency_chart:
    views.tradeoff_chart(cur.ok, "latency_p50_ms", rec, selected)
views.flag_summary(cur.ok)

views.selection_details(cur.ok)

st.subheader("All configs")
views.config_table(cur.ok, rec, cur.id)
common.failed_expander(cur.failed)
