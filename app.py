"""The dashboard frame: page config, sidebar (run, model, presentation mode), navigation.

The screens live in ``screens/``, not ``pages/``: streamlit treats a ``pages/`` folder beside the
main script as an old-style multipage app until ``st.navigation`` has run once in the process,
so a deep link opened first after a restart (``/sweep``) would run the bare page script without
this frame (and AppTest re-runs would skip the frame every time).

Run with ``streamlit run app.py``. The view (run, floor, budgets, selection, page,
presentation mode) lives in session state and in the URL, so a shared link restores it.
"""

from __future__ import annotations

import streamlit as st

from screens import _common as common

common.restore_state()
st.set_page_config(
    page_title="Model optimizer",
    page_icon=":material/speed:",
    layout="wide",
    initial_sidebar_state="collapsed" if common.present() else "auto",
)

SCREENS = (  # url path, file, title, icon: in the order of the workflow
    ("models", "screens/models.py", "Models", ":material/memory:"),
    ("sweep", "screens/sweep.py", "Sweep", ":material/play_arrow:"),
    ("tradeoffs", "screens/tradeoffs.py", "Trade-offs", ":material/insights:"),
    ("compare", "screens/compare.py", "Compare runs", ":material/compare_arrows:"),
    ("export", "screens/export.py", "Export", ":material/download:"),
)
start = st.session_state["_start_page"]  # the page of a shared link (Trade-offs by default)
pages = [
    st.Page(path, title=title, icon=icon, url_path=name, default=name == start)
    for name, path, title, icon in SCREENS
]
page = st.navigation(pages)

with common.friendly_errors():
    common.sidebar()
common.style()
common.mirror_state(page.url_path or start)
common.notices()
with common.friendly_errors():
    page.run()
