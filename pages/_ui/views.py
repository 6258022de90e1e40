"""Streamlit building blocks of the Trade-offs screen: the constraint controls, the headline
card, a selectable trade-off chart with its PNG download, and the config tables."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from optim import charts, md, run_view, scenario_runs, tables, view_state
from optim import frontier as fr
from optim.glossary import tip
from pages._ui import common

PERCENT = st.column_config.NumberColumn(format="percent")
COLUMNS = {
    "config": st.column_config.TextColumn("Config", pinned=True),
    "family": st.column_config.TextColumn("Family"),
    "accuracy": st.column_config.NumberColumn("Accuracy", format="percent"),
    "ci_low": st.column_config.NumberColumn("CI low", format="percent", help=tip("CI")),
    "ci_high": st.column_config.NumberColumn("CI high", format="percent", help=tip("CI")),
    "agreement": st.column_config.NumberColumn(
        "Agreement", format="percent", help=tip("agreement")
    ),
    "vs baseline": st.column_config.TextColumn(
        "Accuracy vs baseline", help="Paired on the same test examples (McNemar's exact test)"
    ),
    "worst class": st.column_config.NumberColumn(
        "Worst class", format="percent", help="Accuracy on the config's worst class"
    ),
    "size_bytes": st.column_config.NumberColumn(
        "Size", format="bytes", help="Bytes of the .onnx file that ships and runs"
    ),
    "smaller": st.column_config.NumberColumn("× smaller", format="%.1f×"),
    "download_bytes": st.column_config.NumberColumn("Download", format="bytes", help=tip("zstd")),
    "peak_rss_bytes": st.column_config.NumberColumn(
        "Peak memory", format="bytes", help="Peak resident memory of a fresh process running it"
    ),
    "p50_ms": st.column_config.NumberColumn("p50", format="%.3f ms", help=tip("p50")),
    "p50 95 % CI": st.column_config.TextColumn("p50 95 % CI (ms)"),
    "speed": st.column_config.TextColumn(
        "Speed vs baseline",
        help="Paired over interleaved timing rounds; faster or slower only when the 95 % "
        "interval of the speed-up excludes 1",
    ),
    "p90_ms": st.column_config.NumberColumn("p90", format="%.3f ms", help=tip("p90")),
    "items/s": st.column_config.NumberColumn(
        "Items/s", format="%.0f", help="Throughput at the scenario's batch: batch / p50"
    ),
    "executed": st.column_config.TextColumn("Executed as"),
    "session": st.column_config.TextColumn(
        "ORT session", help="The ONNX Runtime session settings that timed it"
    ),
    "stored": st.column_config.TextColumn("Stored as"),
    "pareto": st.column_config.CheckboxColumn("Pareto", help=tip("Pareto frontier")),
    "qualifies": st.column_config.CheckboxColumn("Qualifies", help="Meets the floor and budgets"),
    "flags": st.column_config.TextColumn("Flags"),
}


# ------------------------------------------------------------------ constraints


SIZE_UNITS = {"KB": 1e3, "MB": 1e6, "GB": 1e9}  # SI, like every size the dashboard shows
SIZE_STEP = {"KB": 1.0, "MB": 0.1, "GB": 0.01}


def _convert_floor(base_acc: float | None) -> None:
    ss = st.session_state
    ss["floor"] = fr.convert_floor(ss["floor"], base_acc, ss["relative"])


def _typed_floor() -> None:
    """The exact-floor box moves the floor (the slider follows on the rerun)."""
    ss = st.session_state
    if ss.get("floor_box") is not None:
        ss["floor"] = fr.clamp_floor(ss["floor_box"] / 100, bool(ss.get("relative")))


def floor_controls(
    base_acc: float | None, what: tuple[str, str], can_relative: bool = True
) -> tuple[float, bool]:
    """The floor: a slider around the baseline (or its full range), a box for an exact value
    and the absolute / % of baseline toggle. The rules are :mod:`optim.frontier`'s; Trade-offs
    and Compare share them and the floor. ``what``: the label for (absolute, relative)."""
    ss = st.session_state
    if not can_relative:
        ss["relative"] = False
    relative = bool(ss.get("relative"))
    if ss.get("floor") is None:
        ss["floor"] = fr.default_floor(base_acc, relative)
    ss["floor"] = fr.clamp_floor(ss["floor"], relative)
    ss["floor_full"] = bool(ss.get("floor_full"))  # kept across pages, like the floor
    lo, hi = fr.floor_range(base_acc, relative, ss["floor"], full=ss["floor_full"])
    slider_col, box_col = st.columns([4, 1.3], vertical_alignment="bottom")
    slider_col.slider(
        f"Accuracy floor ({what[relative]})",
        lo,
        hi,
        step=0.001,
        format="percent",
        key="floor",
        help=tip("accuracy floor"),
    )
    ss["floor_box"] = round(100 * ss["floor"], 3)
    box_col.number_input(
        "Exact floor (%)",
        step=0.1,
        format="%.2f",
        key="floor_box",
        on_change=_typed_floor,
        help="Type the floor as a percentage, e.g. 97.25",
    )
    if common.present():  # presentation mode: the floor, without the developer's switches
        return float(ss["floor"]), relative
    relative_col, full_col = st.columns([1.35, 1])  # room for the longer label
    relative_col.toggle(
        "Floor as % of baseline",
        key="relative",
        disabled=not can_relative,
        on_change=_convert_floor,
        args=(base_acc,),
        help="Express the floor relative to the unoptimized model",
    )
    reach = f"{100 * fr.FLOOR_REACH:.0f} points"
    full_col.toggle(
        "Full range",
        key="floor_full",
        help=f"Let the slider reach 0 %; by default it spans {reach} below the baseline to "
        "100 % accuracy",
    )
    return float(ss["floor"]), bool(ss["relative"])


def _typed_size(unit: str) -> None:
    """A size budget typed in KB or GB, kept in MB (the URL's unit)."""
    ss = st.session_state
    value = ss.get(f"max_size_{unit.lower()}")
    ss["max_size_mb"] = None if value is None else value * SIZE_UNITS[unit] / 1e6


def _budget_rule(col, value: float | None, name: str, unit: str) -> bool:
    """Whether a budget applies; an entry that cannot (0, negative) says the rule instead."""
    if value is None:
        return False
    if value > 0:
        return True
    col.error(f"`{name} > 0` must hold, but got {value:g} {unit}: no {name} applies.")
    return False


def budget_controls(size, latency) -> dict:
    """The size budget (KB / MB / GB) and the p50 budget; returns the budgets in force, in the
    view state's units (``max_size_mb``, ``max_latency_ms``; None where there is none)."""
    ss = st.session_state
    ss["size_unit"] = ss.get("size_unit") or "MB"
    unit = ss["size_unit"]
    value_col, unit_col = size.columns([1.6, 1], vertical_alignment="bottom")
    key = f"max_size_{unit.lower()}"  # "max_size_mb" is the view state itself
    if unit != "MB":
        mb = ss.get("max_size_mb")
        ss[key] = None if mb is None else float(f"{mb * 1e6 / SIZE_UNITS[unit]:.12g}")
    typed = value_col.number_input(
        f"Size budget ({unit})",
        value=None,
        step=SIZE_STEP[unit],
        format="%g",
        key=key,
        placeholder="none",
        on_change=None if unit == "MB" else _typed_size,
        args=None if unit == "MB" else (unit,),
        help="The largest .onnx file you would ship; empty for none",
    )
    unit_col.selectbox("Unit", list(SIZE_UNITS), key="size_unit")
    lat = latency.number_input(
        "p50 budget (ms)",
        value=None,
        step=0.01,
        format="%g",
        key="max_latency_ms",
        placeholder="none",
        help="The slowest p50 latency you would ship; empty for none",
    )
    return {
        "max_size_mb": ss.get("max_size_mb") if _budget_rule(size, typed, "size budget", unit)
        else None,
        "max_latency_ms": lat if _budget_rule(latency, lat, "p50 budget", "ms") else None,
    }  # fmt: skip


def constraint_controls(ok: pd.DataFrame) -> fr.Recommendation:
    """Floor slider, absolute / % of baseline, preference and budgets; returns the pick."""
    ss = st.session_state
    base = tables.baseline(ok)
    floor_col, prefer, size, latency = st.columns([3.0, 1.5, 1.8, 1.1], gap="medium")
    with floor_col:
        floor_controls(
            fr.floor_reference(ok),
            ("accuracy on held-out data", "share of baseline accuracy"),
            can_relative=base is not None,
        )
    if not common.present():
        floor_col.toggle(
            "Floor on the worst class",
            key="worst",
            disabled="worst_class_acc" not in ok or ok["worst_class_acc"].isna().all(),
            help="Apply the floor to each config's worst class instead of the mean accuracy "
            "(e.g. a screening model's recall on the rare positive class)",
        )
    prefer.segmented_control(
        "Ship the",
        list(view_state.PREFER),
        format_func=view_state.PREFER.get,
        key="prefer",
        required=True,
    )
    budgets = budget_controls(size, latency)
    state = {name: ss.get(name) for name in ("floor", "relative", "worst", "prefer")} | budgets
    return fr.recommend(ok, view_state.constraints(state, ok))


# ------------------------------------------------------------------ headline


def _ratio(col, ratio: str | None, label: str, value: str, help: str) -> None:
    """ "9.0× smaller" as the metric "Smaller than baseline: 9.0×"; without a ratio, the figure."""
    if ratio and ratio.startswith("same "):  # "same speed": within noise of the baseline
        value, label = "same", f"{ratio.split(' ', 1)[1].capitalize()} as baseline"
    elif ratio:
        value, word = ratio.split(" ", 1)
        label = f"{word.capitalize()} than baseline"
    col.metric(label, value, help=help)


def headline_card(rec: fr.Recommendation, ok: pd.DataFrame) -> None:
    """The answer for the product manager: which config ships and what it buys."""
    head = rec.headline
    with st.container(border=True, key="headline"):
        if head.config is None:
            st.warning(head.text, icon=":material/block:")
            return
        st.container(key="headline-text").markdown(head.text)
        row, base = ok[ok["key"] == rec.key].iloc[0], tables.baseline(ok)
        delta, color, arrow = None, "normal", "auto"
        if base is not None and not row["is_baseline"]:
            delta = fr.accuracy_text(row)
            if row.get("acc_verdict") not in ("better", "worse"):
                color, arrow = "off", "off"  # no arrow for a difference within noise
        ship, size, speed, acc = st.columns([2.2, 1, 1, 1.2])
        ship.container(key="ship").metric("Ship", head.config)
        size_text = fr.fmt_bytes(row["size_bytes"])
        timed = math.isfinite(row["latency_p50_ms"])
        p50_text = fr.fmt_ms(row["latency_p50_ms"]) if timed else "timing…"
        _ratio(size, head.smaller, "Size", size_text, f"{size_text} on disk")
        where = row.get("scenario", "batch 1")  # the latency scenario the page answers for
        _ratio(speed, head.faster, "Latency p50", p50_text, f"{p50_text} p50, {where}")
        acc.metric("Accuracy", head.accuracy, delta=delta, delta_color=color, delta_arrow=arrow,
                   help=head.ci)  # fmt: skip
        st.caption(head.detail)
        warning = fr.floor_warning(
            float(row["accuracy"]),
            float(base["accuracy"]) if base is not None else None,
            fr.chance_accuracy(ok),
        )
        if warning:
            st.warning(warning, icon=":material/warning:")


# ------------------------------------------------------------------ latency scenarios


def latency_scenario(ok: pd.DataFrame) -> pd.DataFrame:
    """ "Latency measured at": a select box of the run's scenarios when it timed more than one;
    returns the rows with the chosen scenario's latency (charts, table and pick follow it)."""
    names = scenario_runs.labels(ok)
    if len(names) < 2:
        st.session_state.pop("scenario", None)  # another run's: not for this one's link
        return ok
    if st.session_state.get("scenario") not in names:  # another run's, or none yet
        st.session_state["scenario"] = names[0]
    choice = st.columns([1, 2])[0].selectbox(
        "Latency measured at", names, key="scenario",
        help="Every file was built once and timed in each scenario (intra-op threads, batch "
        "size, ORT graph optimizations), interleaved with the baseline; the first is the run's "
        "own timing phase",
    )  # fmt: skip
    return scenario_runs.for_scenario(ok, choice)


def scenario_flips(ok: pd.DataFrame, rec: fr.Recommendation) -> None:
    """An expander saying, in plain words, whether the pick at these constraints depends on
    the scenario, and which configs' speed verdict changes between the run's scenarios (none
    for a run with one scenario)."""
    names = scenario_runs.labels(ok)
    if len(names) < 2:
        return
    lines = scenario_runs.flip_lines(ok)
    box = st.expander(
        f"Where the scenario changes the verdict: {len(lines)} config{'s' * (len(lines) != 1)}",
        key="scenario_flips",
        on_change="rerun",
        icon=":material/swap_horiz:",
    )
    if not box.open:  # the pick in every scenario is one recommendation each: only when asked
        return
    constraints = rec.constraints or fr.Constraints(rec.floor_value)
    with box:
        st.markdown(md.plain(scenario_runs.picks_line(scenario_runs.picks(ok, constraints))))
        if lines:
            st.markdown("\n".join(f"- {md.plain(line)}" for line in lines))
        else:
            st.caption(f"No config is faster in one scenario and not in another ({len(names)} "
                       "scenarios).")  # fmt: skip
        for name, error in scenario_runs.errors(ok).items():
            st.caption(f"{md.plain(name)}: not timed ({md.plain(error)})")


# ------------------------------------------------------------------ charts and selection


def restore_selection(ok: pd.DataFrame) -> list[str]:
    """The selected keys: from a shared link once, then from the charts / multiselect."""
    ss = st.session_state
    if ids := ss.pop("_selected_ids", None):
        ss["selected"] = view_state.keys_for(ids, ok["key"])
    keys = set(ok["key"])
    ss["selected"] = [k for k in ss.get("selected") or [] if k in keys]
    return ss["selected"]


def _chart_selected(chart_key: str, keys: tuple[str, ...]) -> None:
    st.session_state["selected"] = tables.selection_keys(st.session_state.get(chart_key), keys)


def _baseline_label(ok: pd.DataFrame) -> str:
    base = tables.baseline(ok)
    return str(base["label"]) if base is not None else ""


def tradeoff_charts(
    ok: pd.DataFrame, rec: fr.Recommendation, selected: list, model: str = ""
) -> None:
    """Accuracy vs size | accuracy vs p50, side by side: click or box-select points to inspect
    them; PNG on demand. Both figures are built together (they share the per-row work)."""
    figures = charts.tradeoff_figures(ok, rec, selected)
    for column, (x, fig) in zip(st.columns(2, gap="large"), figures.items(), strict=True):
        fig.update_layout(height=fit_height(fig), legend=dict(orientation="h", y=-0.22, x=0))
        if common.present():  # bigger text, the legend above the plot where it stays in view
            fig.update_layout(font=dict(size=16), legend=dict(y=1.02, yanchor="bottom"))
            fig.update_layout(height=fit_height(fig) + 60, margin=dict(t=40))
        key = f"chart_{x}"
        column.plotly_chart(
            fig,
            key=key,
            on_select=functools.partial(_chart_selected, key, tuple(ok["key"])),
            selection_mode=("points", "box"),
            config={"displaylogo": False},
        )
        name = "accuracy-vs-size" if x == "size_bytes" else "accuracy-vs-latency"
        what = "size" if x == "size_bytes" else "p50 latency"
        title = f"{model}: accuracy vs {what}, floor {fr.fmt_pct(rec.floor_value)}"
        marks = {"recommended": rec.headline.config or "", "baseline": _baseline_label(ok)}
        if not common.present():  # presentation mode hides the developer widgets
            with column:
                deck = functools.partial(charts.deck_figure, fig, title, marks)  # when clicked
                png_button(deck, f"{name}.png", key=f"png_{x}")


def fit_height(fig: go.Figure, plot: int = 300, width: int = 480) -> int:
    """A height that keeps ~``plot`` px for the plot area under a legend that wraps into rows
    (ten families and the overlays take five or six rows in a half-width column)."""
    rows, used = 1, 0
    for t in fig.data:
        if t.showlegend is not False and t.name:
            entry = 45 + 6.5 * len(t.name)  # symbol + text at the 12 px legend font
            rows, used = (rows + 1, entry) if used + entry > width else (rows, used + entry)
    return plot + 125 + 28 * rows  # + title margin, ticks, axis title, legend title


def png_button(fig: go.Figure | Callable[[], go.Figure], file_name: str, key: str) -> None:
    """Download the figure as a PNG; kaleido renders it only when clicked (~2 s). ``fig`` may
    be a function that builds the figure then (a deck figure copies every point: ~80 ms for
    10,000 rows, too much for every floor move)."""

    def render() -> bytes:
        import plotly.io as pio

        pio.defaults.mathjax = None  # kaleido must not reach for a CDN (imports kaleido: here)
        figure = fig() if callable(fig) else fig
        return figure.to_image(format="png", width=1200, height=650, scale=2)

    st.download_button(
        "Download PNG",
        render,
        file_name=file_name,
        mime="image/png",
        key=key,
        icon=":material/image:",
        type="tertiary",
        on_click="ignore",
    )


LISTED = 1000  # above this many configs, Inspect lists the picked and the frontiers' configs


def selection_details(ok: pd.DataFrame) -> None:
    """The picked configs side by side with the baseline. A run of more than :data:`LISTED`
    configs lists those on either chart's frontier and the picked ones (a list of 10,000 is
    unusable, and sending it costs every floor move ~30 ms); points are picked on the charts."""
    shown, note = ok, ""
    if len(ok) > LISTED:
        on = fr.frontier(ok, ("accuracy", "size_bytes")) | fr.frontier(
            ok, ("accuracy", "latency_p50_ms")
        )
        shown = ok[on | ok["key"].isin(st.session_state.get("selected") or [])]
        note = f" (the list holds the {int(on.sum())} on a frontier)"
    labels = dict(zip(shown["key"], shown["label"], strict=True))
    picked = st.multiselect(
        "Inspect configs",
        list(labels),
        format_func=labels.get,
        key="selected",
        placeholder="Click or box-select points on a chart" + note,
    )
    if picked:
        st.dataframe(
            tables.versus_baseline(ok, picked),
            hide_index=True,
            width="stretch",
            column_config=COLUMNS
            | {
                "× smaller": COLUMNS["smaller"],
                "p50_ms": COLUMNS["p50_ms"],
                "worst class Δ (points)": st.column_config.NumberColumn(
                    format="%+.1f", help="Against the baseline's accuracy on the same class"
                ),
            },
        )


def measurement_note(run: dict, ok: pd.DataFrame) -> None:
    """How far the figures can be trusted: test-split size, where latency was measured."""
    if note := run_view.measurement_note(run, ok):
        st.caption(note)


def flag_summary(ok: pd.DataFrame) -> None:
    flags = tables.flags(ok)
    slower, bigger = int(flags["slower"].sum()), int(flags["not_smaller"].sum())
    if slower or bigger:
        parts = [
            f"{slower} slower than the baseline" if slower else "",
            f"{bigger} not smaller than it" if bigger else "",
        ]
        st.caption(
            f"⚠ {' and '.join(p for p in parts if p)} (marked ✕ on the charts). Low-bit "
            "weights are dequantized to fp32 at run time by ONNX Runtime, and unstructured "
            "sparsity runs on dense kernels: they shrink the file, not the latency."
        )


def all_configs(ok: pd.DataFrame, rec: fr.Recommendation, run_id: int) -> None:
    """Every config in an expander that renders its table only once opened: the table widget's
    code costs a cold Trade-offs page about a second in the browser (bench/bench_ui.py)."""
    table = st.expander(
        f"All {len(ok)} config{'s' * (len(ok) != 1)}: table and CSV",
        key="all_configs",
        on_change="rerun",
        icon=":material/table:",
    )
    if table.open:
        with table:
            config_table(ok, rec, run_id)


def config_table(ok: pd.DataFrame, rec: fr.Recommendation, run_id: int) -> None:
    """Every config, sortable, with a CSV download of the full rows."""
    table = tables.config_table(ok, rec)
    order = [c for c in table.columns if c != "key"]
    st.dataframe(
        table, hide_index=True, width="stretch", column_order=order, column_config=COLUMNS
    )
    st.download_button(
        "Download CSV",
        tables.csv_table(ok, rec).to_csv(index=False),
        file_name=f"run-{run_id}.csv",
        mime="text/csv",
        icon=":material/table:",
        on_click="ignore",
    )


def is_finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


RUNS_COLUMNS = {
    "run": st.column_config.TextColumn("Run", pinned=True),
    "measures": st.column_config.TextColumn("Measures", width="large"),
    "notes": st.column_config.TextColumn("Notes", width="medium"),
}

MODEL_COLUMNS = {
    "model": st.column_config.TextColumn("Model", pinned=True),
    "description": st.column_config.TextColumn("Description", width="large"),
    "input": st.column_config.TextColumn("Input"),
    "accuracy": st.column_config.NumberColumn("Baseline accuracy", format="percent"),
    "size_bytes": st.column_config.NumberColumn("Size", format="bytes"),
    "p50_ms": st.column_config.NumberColumn("p50", format="%.3f ms", help=tip("p50")),
    "params": st.column_config.NumberColumn("Params", format="compact"),
    "flops": st.column_config.NumberColumn("FLOPs", format="compact"),
    "weights": st.column_config.TextColumn("Weights"),
}
LAYER_COLUMNS = {
    "layer": st.column_config.TextColumn("Layer"),
    "type": st.column_config.TextColumn("Type"),
    "params": st.column_config.NumberColumn("Params", format="localized"),
    "flops": st.column_config.NumberColumn("FLOPs", format="compact"),
    "latency_share": st.column_config.ProgressColumn(
        "Share of latency", format="percent", min_value=0.0, max_value=1.0
    ),
}


COMPARE_COLUMNS = {
    "run": st.column_config.TextColumn("Run", pinned=True),
    "configs": st.column_config.NumberColumn("Configs"),
    "baseline accuracy": st.column_config.NumberColumn("Baseline accuracy", format="percent"),
    "best size": st.column_config.NumberColumn("Smallest at floor", format="bytes"),
    "best size config": st.column_config.TextColumn("… config"),
    "best p50 ms": st.column_config.NumberColumn("Fastest at floor", format="%.3f ms"),
    "best p50 ms config": st.column_config.TextColumn("… config"),
    "frontier size": st.column_config.NumberColumn(
        "Frontier size", help="Configs on the accuracy / size / latency Pareto frontier"
    ),
}


def compare_floor(base_acc: float | None) -> tuple[float, bool]:
    """The floor the comparison applies: the Trade-offs floor, under the same rules
    (``base_acc``: the current run's baseline, which the % toggle converts against)."""
    return floor_controls(base_acc, ("accuracy on held-out data", "of each run's baseline"))


def floor_line(fig: go.Figure, floor: float) -> None:
    """Draw an absolute accuracy floor on a comparison figure, widening the axis to show it."""
    lo, hi = fig.layout.yaxis.range or (floor, floor)
    fig.update_yaxes(range=[min(lo, floor - 0.005), max(hi, floor + 0.005)])
    fig.add_hline(
        y=floor,
        line=dict(color="#B22222", width=1.5),
        annotation_text=f"floor {floor:.1%}",
        annotation_position="top right",
        annotation_font_color="#B22222",
    )
