"""Streamlit building blocks of the Sweep screen: the grid form, technique forms built from
the config dataclasses, the start / cancel / resume controls and the live progress."""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from optim import md, model_view, run_view, runs, scenario_runs, scenarios, sweep, technique_form
from optim import plan as plans
from optim.estimate import estimate
from optim.frontier import fmt_bytes, fmt_ms, fmt_pct
from optim.glossary import tip
from optim.ray_executor import ray_address
from pages._ui import common

BITS = (2, 3, 4, 5, 6, 8, 16, 32)
SPARSITY = (0.0, 0.25, 0.5, 0.75, 0.9)
STUDENTS = (0.75, 0.5, 0.35, 0.25)  # widths; 0.35 is a MobileNet width_mult of its paper
INT8_HELP = {
    "auto": "int8 where it measured faster on this machine, fp32 elsewhere (placement by timing)",
    "static": "calibrated int8 weights and activations (QDQ): really runs int8",
    "dynamic": "int8 MatMul/Gemm weights, activations quantized at run time",
    "weight": "8-bit storage only; executes in fp32",
}


def _bits_label(b: int) -> str:
    return {32: "32 (fp32)", 16: "16 (fp16)", 8: "8 (int8)"}.get(b, str(b))


def grid_form(model: str) -> list[tuple]:
    """The model × bits × sparsity grid; returns its plans (empty, after a warning, if invalid).
    Options that cannot run on ``model`` are greyed out, with the reason as their help."""
    na = common.not_applicable(model)
    if na:
        st.info(
            f"Not available for {md.plain(model)}: "
            + "; ".join(f"**{n}** ({why})" for n, why in sorted(na.items())),
            icon=":material/block:",
        )
    bits_col, sparsity_col, students_col = st.columns(3)
    bits = bits_col.multiselect(
        "Weight bits",
        BITS,
        default=[4, 8, 32],
        key="sweep_bits",
        format_func=_bits_label,
        help="32 = fp32 (no quantization)",
    )
    sparsity = sparsity_col.multiselect(
        "Sparsity",
        SPARSITY,
        default=[0.0, 0.5],
        key="sweep_sparsity",
        format_func=lambda s: f"{s:.0%}",
        help="Fraction of weights (or channels) removed. " + tip("pruning"),
    )
    students = students_col.multiselect(
        "Distilled students",
        STUDENTS,
        default=[],
        key="sweep_students",
        format_func=lambda w: f"{w:.0%} width",
        placeholder="none: the model alone",
        disabled="Distill" in na,
        help=na.get("Distill")
        or "Also train narrower students of the model's own architecture on its soft targets "
        "(knowledge distillation), then prune and quantize each like the model. Training a "
        "student takes seconds for the 8x8 samples, minutes for the 64x64 CNNs.",
    )
    structured_col, scales_col, int8_col, symmetric_col, order_col = st.columns(
        [1.2, 1.4, 1.2, 1, 1.2], vertical_alignment="bottom"
    )
    structured = structured_col.toggle(
        "Structured pruning",
        key="sweep_structured",
        disabled="StructuredPrune" in na,
        help=na.get("StructuredPrune") or tip("structured pruning"),
    )
    grans = scales_col.multiselect(
        "Scales",
        ["channel", "tensor"],
        default=["channel"],
        key="sweep_granularity",
        help=tip("per-channel"),
    )
    mode = int8_col.selectbox(
        "8-bit mode",
        sweep.INT8_MODES,
        key="sweep_int8",
        help="; ".join(f"{m}: {h}" for m, h in INT8_HELP.items()),
    )
    sym = symmetric_col.toggle(
        "Symmetric",
        value=True,
        key="sweep_symmetric",
        help="Zero point fixed at 0 for sub-8-bit weights",
    )
    both = order_col.toggle(
        "Both orders",
        key="sweep_orders",
        help="Also round the weights first and prune the rounded values (quantize → prune), "
        "next to prune → quantize",
    )
    structured = structured and "StructuredPrune" not in na
    students = [] if "Distill" in na else students
    missing = [name for name, picked in (("a weight bit-width", bits), ("a sparsity", sparsity),
               ("a scale (channel or tensor)", grans)) if not picked]  # fmt: skip
    if missing:  # say which field is empty, not the grid's generic complaint
        st.warning(f"Pick {' and '.join(missing)}: the grid is empty.", icon=":material/warning:")
        return []
    try:
        return sweep.grid(
            sorted(bits), sorted(sparsity), structured, grans, mode, sym, sorted(students)[::-1],
            sweep.ORDERS if both else sweep.ORDERS[:1],
        )  # fmt: skip
    except ValueError as e:
        st.warning(str(e), icon=":material/warning:")
        return []


def field_input(f: technique_form.FormField, key: str) -> object:
    """One technique field as a widget (choice, bool, int, float; None allowed if optional)."""
    label = f.name.replace("_", " ")
    if f.kind == "choice":
        return st.selectbox(
            label, f.choices, index=f.choices.index(f.default), key=key, help=f.help
        )
    if f.kind == "bool":
        return st.checkbox(label, value=bool(f.default), key=key, help=f.help)
    low, high = f.low, f.high
    if f.kind == "int":
        low, high = (None if v is None else int(v) for v in (low, high))
    return st.number_input(
        label,
        min_value=low,
        max_value=high,
        value=f.default,
        step=f.step,
        format=f.format,
        key=key,
        help=f.help,
        placeholder="not set",
    )


def _add_plan(plan_json: list) -> None:
    extra = st.session_state.setdefault("extra_plans", [])
    if plan_json not in extra:
        extra.append(plan_json)


def _ranking(model: str) -> tuple[str, ...]:
    """The model's layers, most sensitive to 3-bit rounding first (the Sensitivity page's
    default measurement, so a visit there has already cached it)."""
    from optim.sensitivity import rank

    return tuple(rank(common.sensitivity(model, (2, 3, 4, 8), (0.5, 0.75, 0.9)), bits=3))


FILLERS = {"sensitivity": _ranking}  # measurement name -> how a form fills such a field


def advanced_form(model: str) -> list[tuple]:
    """Hand-built plans from any registered technique (forms from its dataclass fields)."""
    ss = st.session_state
    with st.expander("Advanced: add technique plans"):
        na = common.not_applicable(model)
        steps = st.multiselect(
            "Steps, in order",
            [n for n in plans.REGISTRY if n not in na],
            key="adv_steps",
            help="Torch-stage steps (structured pruning) must come first",
        )
        if na:
            st.caption(
                f"Not offered for {md.plain(model)}: "
                + "; ".join(f"{n} ({why})" for n, why in sorted(na.items()))
            )
        plan, problem = [], None
        for name in steps:
            tech = plans.REGISTRY[name]
            fields = technique_form.form_fields(tech.config)
            summary = next(iter((tech.config.__doc__ or "").strip().splitlines()), "")
            st.markdown(f"**{name}** — {summary}")
            values = {}
            for f, col in zip(fields, st.columns(max(len(fields), 3)), strict=False):
                with col:
                    values[f.name] = field_input(f, key=f"adv_{name}_{f.name}")
            for field_name, fill in technique_form.filled_fields(tech.config, values).items():
                if model_view.model_note(model)[0] != "ready":
                    problem = f"{name}: {field_name} needs {model}'s trained weights first"
                    continue
                try:
                    values[field_name] = FILLERS[fill](model)
                except ValueError as e:
                    problem = f"{name}: {field_name} could not be measured: {e}"
                    continue
                st.caption(
                    f"{field_name.replace('_', ' ')}: filled in from {model}'s measured {fill}"
                )
            if problem:
                continue
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
            st.button(
                f"Add plan: {plans.label(plan)}",
                on_click=_add_plan,
                args=(plans.to_json(plan),),
                icon=":material/add:",
            )
        extra = [plans.from_json(p) for p in ss.get("extra_plans", [])]
        if extra:
            st.markdown("Added plans: " + ", ".join(f"`{plans.label(p)}`" for p in extra))
            st.button("Clear added plans", on_click=ss.pop, args=("extra_plans", None))
    return extra


def checked_int(col, label: str, name: str, rule: tuple[int, int], value: int, key: str,
                help: str, why: str = "") -> int | None:  # fmt: skip
    """An integer field whose every entry applies (no silent bounds that keep the old value):
    outside ``rule`` it states the rule in one line and returns None, which turns Run off."""
    n = col.number_input(label, value=value, step=1, key=key, help=help)
    lo, hi = rule
    if n is None or not lo <= n <= hi:
        col.error(f"`{lo} <= {name} <= {hi}`{why} must hold, but got {name}={n}")
        return None
    return int(n)


def settings_form() -> sweep.Settings | None:
    """How latency is measured: threads, and how many interleaved timing rounds (None, with
    the rule shown, while a field is out of range)."""
    threads_col, rounds_col, where_col = st.columns([1, 1, 2], vertical_alignment="bottom")
    cores = os.cpu_count() or 1
    n = checked_int(
        threads_col, "Latency threads", "threads", (1, cores), 1, "sweep_threads",
        "Intra-op threads while timing; 1 = the edge-device case",
        " (this machine's cores)",
    )  # fmt: skip
    rounds = checked_int(
        rounds_col, "Timing rounds", "rounds", (2, 200), 20, "sweep_rounds",
        "Once every config is built, all are timed together in this many rounds, each in "
        "a shuffled order with the baseline in every round; more rounds narrow the intervals",
    )  # fmt: skip
    cluster = ray_address()  # OPTIM_RAY_ADDRESS: builds may go to that Ray cluster
    on_ray = cluster is not None and where_col.checkbox(
        f"Build on the Ray cluster at {cluster}", key="sweep_ray",
        help="Each config is built on a node of the cluster; every latency is still measured "
        "on this machine, after all builds",
    )  # fmt: skip
    axes = scenario_axes(n or 1)
    if n is None or rounds is None:
        return None
    return sweep.Settings(threads=n, rounds=rounds, executor="ray" if on_ray else "local",
                          scenarios=axes)  # fmt: skip


def scenario_axes(threads_now: int) -> tuple:
    """Optional latency scenarios: thread counts x batch sizes, each file timed again in each
    after the run's own timing at ``threads_now`` threads (nothing chosen: that timing only)."""
    threads_col, batch_col = st.columns(2)
    threads = threads_col.multiselect(
        "Also time at threads", scenarios.thread_choices(), key="sweep_scenario_threads",
        format_func=scenarios.threads_name, placeholder="only the latency threads above",
        help="Latency scenarios: every built file is timed again with these intra-op threads "
        "at each batch size, interleaved with the baseline; the Trade-offs page then answers "
        "for the scenario you pick and lists configs whose verdict flips",
    )  # fmt: skip
    batches = batch_col.multiselect(
        "at batch sizes", scenarios.BATCHES, key="sweep_scenario_batches",
        placeholder="batch 1", help="Examples per call; batched scenarios show items/s too",
    )  # fmt: skip
    if threads and not batches:
        batches = [1]
    elif batches and not threads:
        threads = [threads_now]
    return scenarios.cross(threads, batches)


def _start(model: str, plan_list: list, settings: sweep.Settings) -> None:
    store = common.store()
    try:
        run_id = runs.create(store, model, plan_list, settings)
        runs.launch(store, run_id)
    except (OSError, ValueError) as e:
        st.session_state["_flash"] = f"Could not start the sweep: {e}"
        return
    st.session_state["run"] = run_id
    st.session_state.pop("floor", None)  # the new run gets its own default floor


def _start_search(model: str, trials: int, seed: int, settings: sweep.Settings) -> None:
    store = common.store()
    try:
        run_id = runs.create(
            store, model, settings=settings, search={"trials": trials, "seed": seed}
        )
        runs.launch(store, run_id)
    except (OSError, ValueError) as e:
        st.session_state["_flash"] = f"Could not start the search: {e}"
        return
    st.session_state["run"] = run_id
    st.session_state.pop("floor", None)


def search_form(model: str, settings: sweep.Settings | None) -> None:
    """An NSGA-II search over per-layer bit-widths and sparsity, as an alternative to the grid."""
    with st.expander("Or search: NSGA-II over per-layer bits and sparsity"):
        st.caption(
            "Optuna's NSGA-II proposes plans (per-layer bit-widths from sensitivity, a global "
            "sparsity, int8 or weight-only); each trial is built and measured like a grid row. "
            "It is steered by calibration-split accuracy; the test split is only reported."
        )
        trials_col, seed_col, go = st.columns([1, 1, 1.2], vertical_alignment="bottom")
        trials = checked_int(trials_col, "Trials", "trials", (4, 500), 12, "search_trials",
                             "How many plans the search builds and measures")  # fmt: skip
        seed = checked_int(seed_col, "Seed", "seed", (0, 10_000), 0, "search_seed",
                           "The same seed proposes the same plans")  # fmt: skip
        ready = settings is not None and trials is not None and seed is not None
        go.button(
            "Run search",
            icon=":material/travel_explore:",
            disabled=not ready or bool(live_runs()),
            on_click=_start_search,
            args=(model, trials, seed, settings),
            width="stretch",
            help=None if ready else "Fix the field marked in red first",
        )


def live_runs() -> list[int]:
    """Ids of the runs whose worker is measuring right now."""
    runs = common.store().runs()
    return [int(r["id"]) for r in runs.to_dict("records") if common.is_live(r)]


def start_controls(model: str, plan_list: list, settings: sweep.Settings | None) -> None:
    """Number of configs, estimated time and the Run button (one sweep at a time)."""
    n = technique_form.count_configs(plan_list) if plan_list else 0
    how = settings or sweep.Settings()
    timing = how.min_seconds + 0.05 * sweep.TIMING_BLOCKS  # calls, plus fresh sessions,
    timing *= max(1, len(scenario_runs.of_settings(how)))  # once per latency scenario
    est = estimate(common.store(), model, plan_list, timing_s=timing) if n else None
    busy = live_runs()
    count, eta, go = st.columns([1, 1, 1.2], vertical_alignment="center")
    count.metric("Configs", n, help="Including the fp32 baseline")
    eta.metric(
        "Estimated time" if est is None or est.measured else "Estimated time (a guess)",
        run_view.fmt_duration(est.seconds) if est else "—",
        help=(est.basis[0].upper() + est.basis[1:] + ".") if est else None,
    )
    go.button(
        "Run sweep",
        type="primary",
        icon=":material/play_arrow:",
        disabled=not plan_list or settings is None or bool(busy),
        on_click=_start,
        args=(model, plan_list, settings),
        width="stretch",
        help="Fix the field marked in red first" if settings is None else None,
    )
    if est is not None:
        st.caption(f"Estimated {est.basis}.")
    if busy:
        go.caption(
            f"Run #{busy[0]} is still measuring; one sweep at a time keeps the latency "
            "figures honest (parallel sweeps would share the cores)."
        )


def _cancel(run_id: int) -> None:
    try:
        runs.cancel(common.store(), run_id)
    except ValueError as e:  # it ended between the page's draw and the click
        st.session_state["_flash"] = f"Could not cancel run #{run_id}: {e}"


def progress_panel(run_id: int) -> None:
    """The run's progress and rows, polled from the store: any tab or reload sees the same."""
    store = common.store()
    live = common.is_live(store.run(run_id))

    @st.fragment(run_every=1.0 if live else None)
    def panel() -> None:
        try:
            run = store.run(run_id)
        except ValueError:
            st.warning(f"Run #{run_id} was deleted.")
            return
        df, state, now_live = store.results(run_id), sweep.state(run), common.is_live(run)
        done, total = run_view.progress(run, len(df))
        text = f"Run #{run_id} ({run['model']}): {done} of {total} configs — {state}"
        if now_live and not done:
            text += " (loading the model and measuring the fp32 baseline first)"
        st.progress(done / max(total, 1), text=text)
        if now_live:
            st.button(
                "Cancel",
                key=f"cancel-{run_id}",
                on_click=_cancel,
                args=(run_id,),
                icon=":material/stop:",
            )
        if len(df):
            st.dataframe(rows_table(df), hide_index=True, width="stretch")
        if now_live != live:
            st.rerun(scope="app")  # the run ended (or restarted): refresh the whole page

    panel()


def rows_table(df: pd.DataFrame) -> pd.DataFrame:
    """Finished rows, newest first, as they stream in."""
    cols = {
        "label": "config",
        "accuracy": "accuracy",
        "size_bytes": "size_bytes",
        "latency_p50_ms": "p50_ms",
        "seconds": "seconds",
        "error": "error",
    }
    table = df[[c for c in cols if c in df.columns]].rename(columns=cols).iloc[::-1]
    for col in ("accuracy", "size_bytes", "p50_ms", "seconds"):
        table[col] = pd.to_numeric(table[col], errors="coerce")
    table["accuracy"] = table["accuracy"].map(lambda a: fmt_pct(a))
    table["size_bytes"] = table["size_bytes"].map(lambda b: fmt_bytes(b))
    table["p50_ms"] = table["p50_ms"].map(lambda t: "timing…" if t != t else fmt_ms(t))
    table["seconds"] = table["seconds"].map(lambda t: "" if t != t else f"{t:.1f} s")
    if "error" in table:
        table["error"] = table["error"].fillna("")
    return table.rename(columns={"size_bytes": "size", "p50_ms": "p50", "seconds": "took"})


def _plan_next(on: bool) -> None:
    st.session_state["_plan_next"] = on


def running_grid(run_id: int) -> None:
    """The live run's grid, read-only, with its progress: the form never pretends to be it."""
    run = common.store().run(run_id)
    spec = run.get("spec") or {}
    labels = [plans.label(plans.from_json(p)) or "fp32 baseline" for p in spec.get("plans", [])]
    st.info(
        f"Run #{run_id} ({run['model']}) is measuring this grid: {len(labels)} configs. "
        "It cannot be changed while it runs; plan the next sweep and it starts as a new run "
        "once this one is done.",
        icon=":material/lock:",
    )
    with st.container(border=True, key="running_grid"):
        settings = spec.get("settings") or {}
        facts = [f"model **{run['model']}**"]
        facts += [f"{k} {v}" for k, v in settings.items() if k in ("threads", "rounds", "seed")]
        st.markdown(" · ".join(facts))
        st.dataframe(
            pd.DataFrame({"config": labels}), hide_index=True, width="stretch", height=220
        )
    st.button("Plan the next sweep", icon=":material/edit:", on_click=_plan_next, args=(True,))
    st.subheader("Progress")
    progress_panel(run_id)
