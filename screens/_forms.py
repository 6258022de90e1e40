"""Streamlit building blocks of the Sweep screen: the grid form, technique forms built from
the config dataclasses, the start / cancel / resume controls and the live progress."""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from optim import plan as plans
from optim import sweep, ui
from screens import _common as common

BITS = (2, 3, 4, 5, 6, 8, 16, 32)
SPARSITY = (0.0, 0.25, 0.5, 0.75, 0.9)
INT8_HELP = {
    "static": "calibrated int8 weights and activations (QDQ): really runs int8",
    "dynamic": "int8 MatMul/Gemm weights, activations quantized at run time",
    "weight": "8-bit storage only; executes in fp32",
}


def _bits_label(b: int) -> str:
    return {32: "32 (fp32)", 16: "16 (fp16)", 8: "8 (int8)"}.get(b, str(b))


def grid_form() -> list[tuple]:
    """The common bits × sparsity grid; returns its plans (empty, after a warning, if invalid)."""
    bits_col, sparsity_col = st.columns(2)
    bits = bits_col.multiselect("Weight bits", BITS, default=[4, 8, 32], key="sweep_bits",
                                format_func=_bits_label, help="32 = fp32 (no quantization)")  # fmt: skip
    sparsity = sparsity_col.multiselect("Sparsity", SPARSITY, default=[0.0, 0.5],
                                        key="sweep_sparsity", format_func=lambda s: f"{s:.0%}",
                                        help="Fraction of weights (or channels) removed")  # fmt: skip
    structured, granularity, int8, symmetric = st.columns(4)
    structured = structured.toggle("Structured pruning", key="sweep_structured",
                                   help="Remove whole channels: smaller and faster, less accurate")  # fmt: skip
    grans = granularity.multiselect("Scales", ["channel", "tensor"], default=["channel"],
                                    key="sweep_granularity", help="One scale per output channel or per tensor")  # fmt: skip
    mode = int8.selectbox("8-bit mode", sweep.INT8_MODES, key="sweep_int8",
                          format_func=lambda m: f"{m}: {INT8_HELP[m]}")  # fmt: skip
    sym = symmetric.toggle("Symmetric", value=True, key="sweep_symmetric",
                           help="Zero point fixed at 0 for sub-8-bit weights")  # fmt: skip
    try:
        return sweep.grid(sorted(bits), sorted(sparsity), structured, grans, mode, sym)
    except ValueError as e:
        st.warning(str(e), icon=":material/warning:")
        return []


def field_input(f: ui.FormField, key: str) -> object:
    """One technique field as a widget (choice, bool, int, float; None allowed if optional)."""
    label = f.name.replace("_", " ")
    if f.kind == "choice":
        return st.selectbox(label, f.choices, index=f.choices.index(f.default), key=key, help=f.help)
    if f.kind == "bool":
        return st.checkbox(label, value=bool(f.default), key=key, help=f.help)
    if f.kind == "int":
        return st.number_input(label, min_value=f.low, max_value=f.high, value=f.default, step=1,
                               key=key, help=f.help)  # fmt: skip
    return st.number_input(label, min_value=f.low, max_value=f.high, value=f.default, step=0.05,
                           key=key, help=f.help, placeholder="not set")  # fmt: skip


def _add_plan(plan_json: list) -> None:
    extra = st.session_state.setdefault("extra_plans", [])
    if plan_json not in extra:
        extra.append(plan_json)


def advanced_form() -> list[tuple]:
    """Hand-built plans from any registered technique (forms from its dataclass fields)."""
    ss = st.session_state
    with st.expander("Advanced: add technique plans"):
        steps = st.multiselect("Steps, in order", list(plans.REGISTRY), key="adv_steps",
                               help="Torch-stage steps (structured pruning) must come first")  # fmt: skip
        plan, problem = [], None
        for name in steps:
            tech = plans.REGISTRY[name]
            fields = ui.form_fields(tech.config)
            st.markdown(f"**{name}** — {(tech.config.__doc__ or '').strip().splitlines()[0]}")
            values = {}
            for f, col in zip(fields, st.columns(max(len(fields), 1))):
                with col:
                    values[f.name] = field_input(f, key=f"adv_{name}_{f.name}")
            try:
                plan.append(tech.config(**values))
            except (TypeError, ValueError) as e:
                problem = f"{name}: {e}"
        if plan and problem is None:
            try:
                plans.validate(plan)
            except ValueError as e:
                problem = str(e)
        if problem:
            st.warning(problem, icon=":material/warning:")
        elif plan:
            st.button(f"Add plan: {plans.label(plan)}", on_click=_add_plan,
                      args=(plans.to_json(plan),), icon=":material/add:")  # fmt: skip
        extra = [plans.from_json(p) for p in ss.get("extra_plans", [])]
        if extra:
            st.markdown("Added plans: " + ", ".join(f"`{plans.label(p)}`" for p in extra))
            st.button("Clear added plans", on_click=ss.pop, args=("extra_plans", None))
    return extra


def settings_form() -> sweep.Settings:
    threads, compress = st.columns(2)
    n = threads.number_input("Latency threads", min_value=1, max_value=os.cpu_count() or 1,
                             value=1, key="sweep_threads",
                             help="Intra-op threads while timing; 1 = the edge-device worst case")  # fmt: skip
    zstd = compress.toggle("zstd over the artifact", value=True, key="sweep_compress")
    return sweep.Settings(threads=int(n), compress=zstd)


def _start(model: str, plan_list: list, settings: sweep.Settings) -> None:
    store = common.store()
    try:
        run_id = sweep.create(store, model, plan_list, settings)
        sweep.launch(store, run_id)
    except (OSError, ValueError) as e:
        st.session_state["_flash"] = f"Could not start the sweep: {e}"
        return
    st.session_state["run"] = run_id
    st.session_state.pop("floor", None)  # the new run gets its own default floor


def start_controls(model: str, plan_list: list, settings: sweep.Settings) -> None:
    """Number of configs, estimated time and the Run button."""
    n = ui.count_configs(plan_list) if plan_list else 0
    seconds = sweep.estimate_seconds(common.store(), model, n) if n else 0.0
    count, eta, go = st.columns([1, 1, 1.2], vertical_alignment="center")
    count.metric("Configs", n, help="Including the fp32 baseline")
    eta.metric("Estimated time", ui.fmt_duration(seconds) if n else "—",
               help="From this model's earlier runs (else ~2 s per config), over the CPU cores")  # fmt: skip
    go.button("Run sweep", type="primary", icon=":material/play_arrow:", disabled=not plan_list,
              on_click=_start, args=(model, plan_list, settings), width="stretch")  # fmt: skip


def _cancel(run_id: int) -> None:
    sweep.cancel(common.store(), run_id)


def progress_panel(run_id: int) -> None:
    """The run's progress and rows, polled from the store: any tab or reload sees the same."""
    store = common.store()
    live = sweep.state(store.run(run_id)) in common.LIVE

    @st.fragment(run_every=1.0 if live else None)
    def panel() -> None:
        try:
            run = store.run(run_id)
        except ValueError:
            st.warning(f"Run #{run_id} was deleted.")
            return
        df, state = store.results(run_id), sweep.state(run)
        done, total = ui.progress(run, len(df))
        st.progress(done / max(total, 1), text=f"Run #{run_id} ({run['model']}): {done} of "
                    f"{total} configs — {state}")  # fmt: skip
        if state in common.LIVE:
            st.button("Cancel", key=f"cancel-{run_id}", on_click=_cancel, args=(run_id,),
                      icon=":material/stop:")  # fmt: skip
        if len(df):
            st.dataframe(rows_table(df), hide_index=True, width="stretch")
        if (state in common.LIVE) != live:
            st.rerun(scope="app")  # the run ended (or restarted): refresh the whole page

    panel()


def rows_table(df: pd.DataFrame) -> pd.DataFrame:
    """Finished rows, newest first, as they stream in."""
    cols = {"label": "config", "accuracy": "accuracy", "size_bytes": "size_bytes",
            "latency_p50_ms": "p50_ms", "seconds": "seconds", "error": "error"}  # fmt: skip
    table = df[[c for c in cols if c in df.columns]].rename(columns=cols).iloc[::-1]
    for col in ("accuracy", "size_bytes", "p50_ms", "seconds"):
        table[col] = pd.to_numeric(table[col], errors="coerce")
    table["accuracy"] = table["accuracy"].map(lambda a: ui.fr.fmt_pct(a))
    table["size_bytes"] = table["size_bytes"].map(lambda b: ui.fr.fmt_bytes(b))
    table["p50_ms"] = table["p50_ms"].map(lambda t: "n/a" if t != t else ui.fr.fmt_ms(t))
    table["seconds"] = table["seconds"].map(lambda t: "" if t != t else f"{t:.1f} s")
    return table.rename(columns={"size_bytes": "size", "p50_ms": "p50", "seconds": "took"})
