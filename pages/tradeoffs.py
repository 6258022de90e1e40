"""Trade-offs: set an accuracy floor and budgets, see which config ships and what it costs.

Presentation mode asks the question in words, names configs in words ("4-bit weights, per
channel"), and leaves out the developer's widgets (PNG buttons, Inspect, the tables)."""

from __future__ import annotations

import streamlit as st

from optim.glossary import plain_label
from pages._ui import common, views
from pages._ui.report_button import report_button

common.frame_guard()

present = common.present()
cur = common.current() if present else None
if present and cur is not None:  # the question being answered, for the room
    st.title(f"{cur.run['model']}: which optimized model can we ship?")
    st.caption("Set the lowest accuracy we accept; the measured answer follows.")
else:
    st.title("Trade-offs")
    cur = common.current()
if cur is None:
    st.stop()
common.flash()
common.status_banner(cur)
if common.no_rows(cur):
    st.stop()
ok = cur.ok.assign(label=cur.ok["label"].map(plain_label)) if present else cur.ok
ok = views.latency_scenario(ok)  # "Latency measured at", when the run timed more than one

rec = views.constraint_controls(ok)
views.headline_card(rec, ok)
selected = views.restore_selection(ok)

views.tradeoff_charts(ok, rec, selected, cur.run["model"])  # accuracy vs size | vs p50 latency
views.flag_summary(ok)
views.scenario_flips(ok, rec)  # configs faster in one scenario and not in another
views.measurement_note(cur.run, ok)
if not present:
    views.selection_details(ok)
    views.all_configs(ok, rec, cur.id)
    common.failed_expander(cur.failed)
report_button(cur, rec, ok)  # the one-page decision report, PDF / HTML
