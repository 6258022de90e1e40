"""The dashboard frame: page config, sidebar (run, model, presentation mode), navigation.

One file per screen lives in ``pages/``; their shared widgets in ``pages/_ui/``. Streamlit runs
a ``pages/`` script on its own (old-style multipage mode) until ``st.navigation`` has run once in
the server process, e.g. for the first deep link after a restart: every page therefore starts
with ``common.frame_guard()``, which switches to navigation mode and reruns through this frame.

Run with ``streamlit run app.py``. The view (run, floor, budgets, selection, page,
presentation mode) lives in session state and in the URL, so a shared link restores it.
"""

from __future__ import annotations

import streamlit as st

from pages._ui import common

if common.locked():  # OPTIM_TOKEN is set and this session has not given it: nothing else shows
    st.set_page_config(page_title="Model optimizer", page_icon=":material/lock:")
    st.navigation([st.Page(common.sign_in, title="Sign in")], position="hidden").run()
    st.stop()

common.restore_state()
st.set_page_config(
    page_title="Model optimizer",
    page_icon=":material/speed:",
    layout="wide",
    initial_sidebar_state="collapsed" if common.present() else "auto",
)

SCREENS = (  # url path, file, title, icon: in the order of the workflow
    ("models", "pages/models.py", "Models", ":material/memory:"),
    ("sweep", "pages/sweep.py", "Sweep", ":material/play_arrow:"),
    ("tradeoffs", "pages/tradeoffs.py", "Trade-offs", ":material/insights:"),
    ("sensitivity", "pages/sensitivity.py", "Sensitivity", ":material/tune:"),
    ("compare", "pages/compare.py", "Compare runs", ":material/compare_arrows:"),
    ("export", "pages/export.py", "Export", ":material/download:"),
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
