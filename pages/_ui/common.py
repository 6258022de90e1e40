"""Streamlit helpers shared by the pages: the store, the view state and its URL, the sidebar,
the current run with its status messages, and friendly errors. Logic lives in ``optim``."""

from __future__ import annotations

import contextlib
import hmac
import os
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st
from streamlit import runtime

from optim import charts, md, model_view, run_view, tables, view_state
from optim.store import Store, db_url, elsewhere
from optim.store import run_state as _run_state

# No ``optim.sweep`` (torch, ~6 s to import) at module level: every page imports this module,
# and Trade-offs must open fast on a fresh server. Only starting a run imports it.

WIDGETS = (
    "run",
    "floor",
    "scenario",
    "relative",
    "worst",
    "max_size_mb",
    "max_latency_ms",
    "prefer",
    "present",
    "selected",
    "model",
    "all_configs",  # the Trade-offs table's expander, open or not
)
# the Sweep form (hidden while a run measures: it shows that run's grid) and the Sensitivity
# pickers: a form that comes back must show the values its counts are computed from
FORM_PREFIXES = ("sweep_", "adv_", "sens_")
LIVE = ("pending", "running")


def _pid(run: dict) -> int | None:
    pid = run.get("pid")  # None, NaN or <NA> for a run never launched
    return None if pid is None or pd.isna(pid) else int(pid)


def run_state(run: dict) -> str:
    """``sweep.state`` of a run record or of a ``Store.runs()`` row."""
    return _run_state(run)


def is_live(run: dict) -> bool:
    """Whether a worker is measuring the run now (a run never launched has no pid)."""
    return _pid(run) is not None and run_state(run) in LIVE


@st.cache_resource(show_spinner=False)
def _store(url: str) -> Store:
    return Store(url)


def store() -> Store:
    """The run store of ``OPTIM_DB_URL`` / ``OPTIM_HOME`` (one handle per URL and process)."""
    return _store(db_url())


# ------------------------------------------------------------------ view state and the URL


def restore_state() -> None:
    """On a session's first run, read the URL into session state; on every run, keep the
    widget values alive across page switches (streamlit drops a widget's state otherwise)."""
    ss = st.session_state
    if "_restored" not in ss:
        state, bad = view_state.parse_params(st.query_params.to_dict())
        for name in ("relative", "worst", "prefer", "present", "max_size_mb", "max_latency_ms"):
            ss.setdefault(name, state.get(name, view_state.DEFAULTS[name]))
        for name in ("run", "floor", "scenario"):
            if name in state:
                ss.setdefault(name, state[name])
        ss["_selected_ids"] = state.get("selected", ())
        ss["_start_page"] = state.get("page", view_state.DEFAULTS["page"])
        ss["_bad_params"] = bad
        ss["_restored"] = True
    for name in [*WIDGETS, *(k for k in ss if isinstance(k, str) and k.startswith(FORM_PREFIXES))]:
        if name in ss:
            ss[name] = ss[name]


def _link_params() -> dict[str, str]:
    """The view state as query params (the page is the URL's path, not a parameter)."""
    ss = st.session_state
    state = {name: ss.get(name) for name in view_state.DEFAULTS if name != "page"}
    ids = ss.get("_selected_ids")
    state["selected"] = ids if ids else tuple(charts.short_id(k) for k in ss.get("selected") or ())
    return view_state.encode_params(state)


def mirror_state() -> None:
    """Write the view state to the URL, so that a copied link restores this exact view."""
    params = _link_params()
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)


def landing() -> None:
    """``/``: app.py forwards it to a screen's own address before anything is drawn."""


def forward(page: st.Page) -> None:
    """Go to ``page``'s own address (``/export?run=3``), keeping the link's view state."""
    if runtime.exists():  # not in a bare run (a worker process that re-imports ``__main__``)
        st.switch_page(page, query_params=_link_params())


def present() -> bool:
    return bool(st.session_state.get("present"))


PRESENT_CSS = """
<style>
[data-testid="stToolbar"], [data-testid="stMainMenu"], [data-testid="stAppDeployButton"],
[data-testid="stDecoration"] { display: none !important; }
[data-testid="stMetricValue"], [data-testid="stMetricValue"] p { font-size: 3.4rem !important; }
[data-testid="stMetricLabel"] p { font-size: 1.2rem !important; }
.st-key-ship [data-testid="stMetricValue"] p { font-size: 2.3rem !important; }
.st-key-headline-text p { font-size: 1.45rem; }
</style>
"""
BASE_CSS = """
<style>
.st-key-ship [data-testid="stMetricValue"] p { white-space: normal; line-height: 1.15; }
.st-key-headline-text p { font-size: 1.1rem; }
.block-container { padding-top: 2.2rem; }
</style>
"""


def style() -> None:
    st.html(BASE_CSS + (PRESENT_CSS if present() else ""))


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Show an unexpected fault as a message (details only outside presentation mode)."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - the page shows every fault as a message
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        st.error(f"Something went wrong on this page: {reason}", icon=":material/error:")
        if not present():
            with st.expander("Details for engineers"):
                st.code(traceback.format_exc(), language="text")


# ------------------------------------------------------------------ runs


def sidebar() -> None:
    """The run picker (newest first), the run's model, and presentation mode."""
    ss = st.session_state
    runs = store().runs()
    with st.sidebar:
        if runs.empty:
            st.caption("No runs yet: start one on the Sweep page.")
            ss.pop("run", None)
        else:
            labels = {
                int(r["id"]): run_view.run_label(r, run_state(r)) for r in runs.to_dict("records")
            }
            if ss.get("run") not in labels:
                if ss.get("run") is not None:
                    ss["_missing_run"] = ss["run"]
                ss["run"] = next(iter(labels))
            st.selectbox("Run", list(labels), key="run", format_func=labels.get)
            run = runs.loc[runs["id"] == ss["run"]].iloc[0].to_dict()
            text = f"Model: **{md.plain(run['model'])}**"  # a file's name is text, not Markdown
            if summary := run_view.run_summary(run):
                text += f"  \n{md.plain(summary)}"
            if isinstance(run.get("notes"), str) and run["notes"]:
                text += f"  \n*{md.plain(run['notes'])}*"
            st.caption(text)
            if not present():
                run_editor(run)
        st.toggle("Presentation mode", key="present", help="Big numbers, no developer menu")


def _save_run(run_id: int) -> None:
    from optim import runs

    ss = st.session_state
    name, notes = ss.get(f"run_name_{run_id}") or None, ss.get(f"run_notes_{run_id}")
    try:
        runs.rename(store(), run_id, name=name, notes=notes or "")
    except ValueError as e:
        ss["_flash"] = f"Could not rename run #{run_id}: {e}"


def _delete_run(run_id: int) -> None:
    from optim import runs

    try:
        runs.delete(store(), run_id)  # its rows and its artifact folder; a live run is refused
    except ValueError as e:
        st.session_state["_flash"] = f"Could not delete run #{run_id}: {e}"
    else:
        st.session_state.pop("run", None)  # the sidebar picks the newest run left


def run_editor(run: dict) -> None:
    """Name, notes and delete for the sidebar's run."""
    run_id = int(run["id"])
    with st.popover("Name, notes, delete", icon=":material/edit:", width="stretch"):
        st.text_input("Name", value=run.get("name") or "", key=f"run_name_{run_id}",
                      max_chars=80, placeholder=f"run #{run_id}")  # fmt: skip
        st.text_area("Notes", value=run.get("notes") or "", key=f"run_notes_{run_id}",
                     max_chars=2000, height=90)  # fmt: skip
        st.button("Save", key=f"run_save_{run_id}", on_click=_save_run, args=(run_id,),
                  icon=":material/save:")  # fmt: skip
        st.divider()
        sure = st.checkbox("Delete this run, its rows and its files", key=f"run_sure_{run_id}")
        st.button("Delete run", key=f"run_delete_{run_id}", disabled=not sure or is_live(run),
                  on_click=_delete_run, args=(run_id,), icon=":material/delete:",
                  help="Cancel a running sweep first" if is_live(run) else None)  # fmt: skip


def notices() -> None:
    """One-off messages about the URL: a run id that no longer exists, a bad parameter."""
    ss = st.session_state
    if (missing := ss.pop("_missing_run", None)) is not None:
        now = f"; showing run #{ss['run']} instead" if ss.get("run") else ""
        st.warning(f"Run #{missing} does not exist (it may have been deleted){now}.")
    if bad := ss.pop("_bad_params", None):
        st.warning(f"Ignored invalid link parameter(s): {', '.join(bad)}.")


@dataclass
class Current:
    """The current run: its record, live state, measured rows and failed rows."""

    run: dict
    state: str
    ok: pd.DataFrame
    failed: pd.DataFrame

    @property
    def id(self) -> int:
        return int(self.run["id"])


def current() -> Current | None:
    """The run picked in the sidebar with its rows, or None (after saying why)."""
    run_id = st.session_state.get("run")
    if run_id is None:
        from pages._ui.welcome import welcome

        welcome()  # an empty store: what the tool does and a one-click start
        return None
    try:
        run = store().run(int(run_id))
    except ValueError:
        st.warning(f"Run #{run_id} does not exist any more (it may have been deleted).")
        return None
    return Current(run, run_state(run), *_rows(run))


def _rows(run: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(measured, failed) rows of ``run``. A finished run's are read once per change of its
    stamp (rows, their timing, its last update) and shared: 10,000 rows take ~1 s to read and
    decode, which a floor move must not pay. Callers get shallow copies (copy-on-write)."""
    if run_state(run) in LIVE:  # rows arrive: read them fresh
        return tables.split_rows(store().results(int(run["id"])))
    stamp = (run["status"], str(run["updated"]), *store().results_stamp(int(run["id"])))
    ok, failed = _finished_rows(db_url(), int(run["id"]), stamp)
    return ok.copy(deep=False), failed.copy(deep=False)


@st.cache_resource(show_spinner=False, max_entries=8)
def _finished_rows(url: str, run_id: int, stamp: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    return tables.split_rows(_store(url).results(run_id))


def _resume(run_id: int) -> None:
    from optim import runs

    try:
        runs.launch(store(), run_id)
    except (OSError, ValueError) as e:
        st.session_state["_flash"] = f"Could not resume run #{run_id}: {e}"


def status_banner(cur: Current) -> None:
    """What the run is doing, and Resume where it stopped before finishing."""
    done, total = run_view.progress(cur.run, len(cur.ok) + len(cur.failed))
    where = f"{done} of {total} configs measured"
    if cur.state == "not started":
        st.warning(
            f"Run #{cur.id} was created but never started: {where}.",
            icon=":material/pause_circle:",
        )
        st.button(
            "Start run",
            key=f"resume-{cur.id}",
            on_click=_resume,
            args=(cur.id,),
            icon=":material/play_arrow:",
        )
        return
    if cur.state in LIVE:
        untimed = int(cur.ok["latency_p50_ms"].isna().sum()) if len(cur.ok) else 0
        timing = " Latency: timing… (all configs are timed together once every file is built)."
        st.info(
            f"Run #{cur.id} is still running{_on(cur.run)}: {where}. Results update as they "
            "arrive." + (timing if untimed else ""),
            icon=":material/hourglass_top:",
        )
        live_refresh(cur.id, done, cur.state)
        return
    if cur.state == "done":
        return
    why = "its worker process died"
    if elsewhere(cur.run):
        why = f"its driver on {cur.run['host']} stopped beating"
    text = {
        "interrupted": f"Run #{cur.id} stopped unexpectedly ({why}): {where}.",
        "cancelled": f"Run #{cur.id} was cancelled: {where}.",
        "failed": f"Run #{cur.id} failed: {cur.run.get('error') or 'no reason given'}. {where}.",
    }.get(cur.state, f"Run #{cur.id} is {cur.state}: {where}.")
    show = st.error if cur.state == "failed" else st.warning
    show(text + " Finished rows are shown below.", icon=":material/warning:")
    from optim import runs  # here, not at import: Trade-offs opens without torch

    if done < total or runs.resumable(store(), cur.id):  # missing rows, or retryable failures
        st.button(
            "Resume run",
            key=f"resume-{cur.id}",
            on_click=_resume,
            args=(cur.id,),
            icon=":material/replay:",
        )


def _on(run: dict) -> str:
    """`` on HOST`` for a run driven from another machine (a shared PostgreSQL store)."""
    return f" on {run['host']}" if elsewhere(run) else ""


def live_refresh(run_id: int, n_rows: int, state: str) -> None:
    """While a run is live, rerun the whole page when a row arrives or the run ends."""

    @st.fragment(run_every=2.0)
    def watch() -> None:
        try:
            run = store().run(run_id)
        except ValueError:
            return
        if len(store().keys(run_id)) != n_rows or run_state(run) != state:
            st.rerun(scope="app")

    watch()


def flash() -> None:
    if text := st.session_state.pop("_flash", None):
        st.error(text)


def no_rows(cur: Current) -> bool:
    """Say so and return True when the run has no measured rows to chart."""
    if len(cur.ok):
        return False
    if is_live(cur.run):
        st.info("No config has finished yet; the baseline comes first.")
    else:
        st.info(f"Run #{cur.id} has no measured results.")
    failed_expander(cur.failed)
    return True


def failed_expander(failed: pd.DataFrame) -> None:
    if len(failed):
        with st.expander(f"{len(failed)} config(s) failed and are not charted"):
            st.dataframe(tables.failed_table(failed), hide_index=True, width="stretch")


# ------------------------------------------------------------------ models


def model_picker() -> str:
    """The model select box (shared by Models and Sweep), defaulting to the run's."""
    from optim.sources import describe, model_names

    names, ss = model_names(), st.session_state
    if ss.get("model") not in names:
        run_id, runs = ss.get("run"), store().runs()
        hit = runs.loc[runs["id"] == run_id, "model"] if run_id is not None else []
        ss["model"] = hit.iloc[0] if len(hit) and hit.iloc[0] in names else names[0]
    name = st.selectbox("Model", names, key="model", format_func=lambda n: f"{n} — {describe(n)}")
    state, note = model_view.model_note(name)
    if state != "ready":
        (st.warning if state == "missing" else st.info)(f"{name}: {note}.")
    return name


@st.cache_data(show_spinner="Checking which techniques apply…", max_entries=32)
def not_applicable(name: str) -> dict[str, str]:
    """Technique name -> why it cannot run on model ``name`` (only those that cannot)."""
    from optim import applicable
    from optim import plan as plans
    from optim.sources import get_source

    source = get_source(name)
    out = {}
    for tech_name, tech in plans.REGISTRY.items():
        why = applicable.reason((tech.config(),), source)
        if why:
            out[tech_name] = "needs " + why.split(": it needs ", 1)[-1]
    return out


@st.cache_data(show_spinner="Measuring every layer alone (a few seconds)…", max_entries=16)
def sensitivity(name: str, bits: tuple[int, ...], sparsities: tuple[float, ...]):
    """``optim.sensitivity.sensitivity``, cached (the Sensitivity page and the sweep forms)."""
    from optim.sensitivity import sensitivity as measure

    return measure(name, bits=bits, sparsities=sparsities)


@st.cache_data(show_spinner="Profiling the model (a few seconds)…", max_entries=32)
def profile(name: str, threads: int = 1):
    """``optim.profile.profile``, cached per model and thread count."""
    from optim.profile import profile as run_profile

    return run_profile(name, threads=threads)


def model_profile(name: str):
    """The model's profile (cached), or None while its weights are missing or untrained."""
    state, _ = model_view.model_note(name)
    if state == "missing":
        return None
    if state == "train" and not st.session_state.get(f"_train_{name}"):
        st.button(
            "Train and profile (about 3 minutes)",
            icon=":material/model_training:",
            on_click=st.session_state.__setitem__,
            args=(f"_train_{name}", True),
        )
        return None
    prof = profile(name)
    st.session_state.setdefault("_profiled", {})[name] = prof.summary
    return prof


def baseline_figures() -> dict[str, dict]:
    """Each model's baseline row from its newest run that has one (params, size, latency...)."""
    runs, out = store().runs(), {}
    for row in runs[runs["results"] > 0].to_dict("records"):
        if row["model"] not in out:
            ok, _ = tables.split_rows(store().results(int(row["id"])))
            if (base := tables.baseline(ok)) is not None:
                out[row["model"]] = base.to_dict() | {"measured_in": f"run #{row['id']}"}
    return out


def measured(run_id: int) -> pd.DataFrame:
    """The measured (charted) rows of a run."""
    return tables.split_rows(store().results(run_id))[0]


@contextlib.contextmanager
def framed() -> Iterator[None]:
    """Mark the page's run as one inside ``app.py``'s frame (see :func:`frame_guard`)."""
    st.session_state["_framed"] = True
    try:
        yield
    finally:
        st.session_state.pop("_framed", None)


def frame_guard() -> None:
    """Make sure this page runs inside ``app.py``'s frame (sidebar, URL state, navigation).

    Until some session has called ``st.navigation``, Streamlit treats a ``pages/`` folder next
    to the entry point as its old-style multipage app and runs the page of a URL directly,
    without ``app.py``: the first deep link (``/export``) after a restart. Calling
    ``st.navigation`` once switches the whole server to navigation mode ("your app will
    ignore the pages/ directory (across all sessions)", its documentation says); the pages
    are the same files under the same url paths, so this URL's page is found (no "Page not
    found"), and the rerun executes ``app.py``, which runs this page in its frame.
    """
    if st.session_state.get("_framed"):
        return
    folder = Path(__file__).resolve().parents[1]
    files = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    st.navigation([st.Page(p, url_path=p.stem) for p in files], position="hidden")
    st.rerun()


# ------------------------------------------------------------------ access control
# Serving a team is a choice made with a token (scripts/app.sh refuses a non-loopback address
# without one): with OPTIM_TOKEN set, a session sees only the sign-in box until it gives it.


def locked() -> bool:
    """True while ``OPTIM_TOKEN`` is set and this session has not given it (the sign-in box or
    ``?token=`` in the URL, which is then dropped from the URL so shared links never carry it)."""
    token, ss = os.environ.get("OPTIM_TOKEN", ""), st.session_state
    if not token or ss.get("_signed_in"):
        return False
    if (given := st.query_params.get("token")) is not None:
        del st.query_params["token"]
        _check_token(given, token)
    return not ss.get("_signed_in")


def _check_token(given: str, token: str) -> None:
    if hmac.compare_digest(given.encode(), token.encode()):
        st.session_state["_signed_in"] = True
        st.session_state.pop("_sign_in_error", None)
    else:
        time.sleep(1.0)  # slows down guessing; the token itself should be long and random
        st.session_state["_sign_in_error"] = "Wrong access token."


def _submit_token() -> None:
    ss = st.session_state
    if (given := ss.get("_token_box")) and not ss.get("_signed_in"):
        ss["_token_box"] = ""
        _check_token(given, os.environ.get("OPTIM_TOKEN", ""))


def sign_in() -> None:
    """The only screen of a locked dashboard: a password box for the access token."""
    st.title("Model optimizer")
    st.text_input("Access token", type="password", key="_token_box", on_change=_submit_token)
    st.button("Sign in", type="primary", on_click=_submit_token, icon=":material/login:")
    if error := st.session_state.pop("_sign_in_error", None):
        st.error(error, icon=":material/lock:")
