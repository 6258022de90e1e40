"""The dashboard frame: page config, sidebar (run, model, presentation mode), navigation.

One file per screen lives in ``pages/``; their shared widgets in ``pages/_ui/``. Every screen
has one address, its url path (``/export?run=3``): a copied link, a reload or a typed path
opens that screen. ``/`` is a hidden landing page that forwards to the screen of a legacy
``?page=`` link, Trade-offs by default. Each screen starts with ``common.frame_guard()``: until
some session has called ``st.navigation``, Streamlit runs a ``pages/`` script on its own, e.g.
for the first deep link after a restart; the guard then hands the run to this frame.

Run with ``streamlit run app.py``. The view (run, floor, budgets, selection, presentation
mode) lives in session state and in the URL, so a shared link restores it.
"""

from __future__ import annotations

import streamlit as st

from pages._ui import common

SCREENS = (  # url path, file, title, icon: in the order of the workflow
    ("models", "pages/models.py", "Models", ":material/memory:"),
    ("sweep", "pages/sweep.py", "Sweep", ":material/play_arrow:"),
    ("tradeoffs", "pages/tradeoffs.py", "Trade-offs", ":material/insights:"),
    ("sensitivity", "pages/sensitivity.py", "Sensitivity", ":material/tune:"),
    ("compare", "pages/compare.py", "Compare runs", ":material/compare_arrows:"),
    ("export", "pages/export.py", "Export", ":material/download:"),
    ("glossary", "pages/glossary.py", "Glossary", ":material/menu_book:"),
)

if common.locked():  # OPTIM_TOKEN is set and this session has not given it: nothing else shows
    st.set_page_config(page_title="Model optimizer", page_icon=":material/lock:")
    gate = [st.Page(common.sign_in, title="Sign in", default=True)]  # at every screen's path:
    gate += [st.Page(common.sign_in, title="Sign in", url_path=s[0]) for s in SCREENS]
    st.navigation(gate, position="hidden").run()  # a link opens its screen once signed in
    st.stop()

common.restore_state()
st.set_page_config(
    page_title="Model optimizer",
    page_icon=":material/speed:",
    layout="wide",
    initial_sidebar_state="collapsed" if common.present() else "auto",
)

screens = {
    name: st.Page(path, title=title, icon=icon, url_path=name)
    for name, path, title, icon in SCREENS
}
landing = st.Page(common.landing, title="Model optimizer", default=True, visibility="hidden")
page = st.navigation([landing, *screens.values()])
if page is landing:  # "/" or a legacy "/?page=export" link: go to the screen's own address
    common.forward(screens[st.session_state["_start_page"]])

with common.friendly_errors():
    common.sidebar()
common.style()
common.mirror_state()
common.notices()
with common.friendly_errors(), common.framed():
    page.run()
