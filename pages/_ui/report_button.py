"""The Trade-offs page's decision report: one page (PDF or HTML) of the current view, built
by ``optim.report`` only when a button is clicked (Kaleido and Chromium take a few seconds)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from optim import frontier as fr
from optim import report, scenario_runs
from pages._ui import common


def report_button(cur: common.Current, rec: fr.Recommendation, shown: pd.DataFrame) -> None:
    """An expander (closed by default, rendered once opened) with the report's downloads, for
    the floor, budgets, preference and latency scenario of the rows ``shown`` now."""
    box = st.expander(
        "Decision report: one page for the decision (PDF / HTML)",
        key="report",
        on_change="rerun",
        icon=":material/description:",
    )
    if not box.open:
        return
    constraints = rec.constraints or fr.Constraints(rec.floor_value)

    def page() -> str:
        rows = scenario_runs.like(cur.ok, shown)
        return report.render_html(report.build_report(cur.run, rows, constraints))

    with box:
        st.caption(
            "The recommendation at this floor and these budgets, which constraint binds and "
            "what relaxing it would buy, both charts, the top candidates with their intervals, "
            "where and how everything was measured, and the recipe hash."
        )
        pdf, html = st.columns(2)
        pdf.download_button(
            "Download report (PDF)",
            lambda: report.print_pdf(page()),
            file_name=f"report-run-{cur.id}.pdf",
            mime="application/pdf",
            key="report_pdf",
            icon=":material/picture_as_pdf:",
            on_click="ignore",
            disabled=report.chromium() is None,
            help=None if report.chromium() else "Needs `chromium` on the server's PATH",
            width="stretch",
        )
        html.download_button(
            "Download report (HTML)",
            page,
            file_name=f"report-run-{cur.id}.html",
            mime="text/html",
            key="report_html",
            icon=":material/html:",
            on_click="ignore",
            width="stretch",
        )
