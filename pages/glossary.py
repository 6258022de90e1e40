"""Glossary: the terms the dashboard uses, in plain words."""

from __future__ import annotations

import streamlit as st

from optim.glossary import TERMS
from pages._ui import common

common.frame_guard()

st.title("Glossary")
st.caption("What the words on these screens mean. Hover a figure's (?) for the same in short.")
query = st.text_input("Find a term", placeholder="e.g. p50, per-channel, Pareto", key="gloss_q")
hits = {t: e for t, e in TERMS.items() if query.lower() in f"{t} {e}".lower()}
if not hits:
    st.info(f"No term mentions {query!r}.")
for term in sorted(hits, key=str.lower):
    st.markdown(f"**{term}** — {hits[term]}")
