"""Models: every model with its baseline figures, bringing your own (an ONNX file and its data,
through the intake), and one model's per-layer profile."""

from __future__ import annotations

import streamlit as st

from optim import archive, charts, intake_view, md, model_view, uploads
from optim.frontier import fmt_bytes, fmt_ms, fmt_pct
from optim.intake import max_bytes
from optim.sources import model_names
from pages._ui import common, views

common.frame_guard()

st.title("Models")
st.caption(
    "Baseline figures come from each model's newest run, or from its profile once taken. "
    "A — means not measured on this machine yet: pick the model under **Profile** below and "
    "it is measured there (a few seconds; resnet18 first trains, about 3 minutes), or run "
    "a sweep on it."
)

table = st.container()  # filled after the profile below, so it includes it


def _remove(name: str) -> None:
    uploads.remove(name)
    for key in ("model", "_byo_added"):
        if st.session_state.get(key) == name:
            del st.session_state[key]


def _add(gen: int) -> None:
    """Take the uploaded pair through the intake (a callback: it may set the model picker)."""
    ss = st.session_state
    onnx_file, data_file = ss[f"byo_onnx_{gen}"], ss[f"byo_data_{gen}"]
    try:
        with st.spinner("Checking, normalizing and proving the model…"):
            added = uploads.add(
                onnx_file.getvalue(),
                data_file.getvalue(),
                data_file.name,
                ss[f"byo_name_{gen}"] or onnx_file.name.removesuffix(".onnx"),
                onnx_name=onnx_file.name,
                output=ss[f"byo_output_{gen}"],
                metric=ss[f"byo_metric_{gen}"],
            )
    except ValueError as e:
        ss["_byo_error"] = str(e)
    else:  # a new generation of widget keys empties the uploaders
        ss.update(_byo_added=added.name, _byo_gen=gen + 1, model=added.name)


st.subheader("Bring your own model")
st.caption(
    "An ONNX file and the data that judges it: an .npz (`x_calib`, `x_test`, optional "
    "`y_test`), a .zip of an image folder (one folder per class), or a .csv / .parquet. Each "
    "file is checked before it is parsed, normalized, and proven to reproduce your outputs; "
    "nothing is imported or unpickled. A refused file leaves nothing behind."
)
gen = st.session_state.setdefault("_byo_gen", 0)
onnx_col, data_col = st.columns(2)
onnx_file = onnx_col.file_uploader(
    "ONNX model",
    type=["onnx"],
    key=f"byo_onnx_{gen}",
    help=f"One self-contained .onnx file of at most {fmt_bytes(max_bytes())} (OPTIM_MAX_MODEL_MB)",
)
data_file = data_col.file_uploader(
    "Its data",
    type=[s.lstrip(".") for s in uploads.DATA_SUFFIXES],
    key=f"byo_data_{gen}",
    help=f"At most {fmt_bytes(archive.limit('OPTIM_MAX_DATA_MB'))} (OPTIM_MAX_DATA_MB), "
    f"{fmt_bytes(archive.limit('OPTIM_MAX_UNZIPPED_MB'))} once unpacked (OPTIM_MAX_UNZIPPED_MB)",
)
JUDGED_BY = {
    None: "auto",
    "top1": "top-1 accuracy (needs labels)",
    "agreement": "agreement with the baseline",
    "fidelity": "fidelity: cosine similarity to the baseline's outputs, for embeddings, "
    "regression, detection heads",
}
name_col, output_col, metric_col, add_col = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
name_col.text_input("Name", key=f"byo_name_{gen}", placeholder="the ONNX file's name, if empty")
output_col.text_input(
    "Prediction output",
    key=f"byo_output_{gen}",
    placeholder="the first output, if empty",
    help="The graph output that is the model's prediction, e.g. `probabilities` for a "
    "scikit-learn model (its first output is the label)",
)
metric_col.selectbox(
    "Judged by",
    list(JUDGED_BY),
    format_func=JUDGED_BY.get,
    key=f"byo_metric_{gen}",
    help="auto: top-1 accuracy when the data has labels, else agreement with the baseline for "
    "class scores (N, classes), else fidelity",
)
add_col.button(
    "Add model",
    key="byo_add",
    icon=":material/upload:",
    disabled=onnx_file is None or data_file is None,
    on_click=_add,
    args=(gen,),
    width="stretch",
)
if error := st.session_state.pop("_byo_error", None):
    st.error(md.plain(error), icon=":material/block:")  # a file's name is text, not Markdown

if (shown := st.session_state.get("_byo_added")) in uploads.names():
    with st.container(key="byo_report", border=True):
        st.success(
            f"Added **{md.plain(shown)}**: it is in every model picker now.",
            icon=":material/check_circle:",
        )
        report_col, tech_col = st.columns([1.3, 1])
        report_col.markdown("**Intake report**")
        report_col.table(
            intake_view.report_rows(uploads.info(shown)), border="horizontal", hide_index=True
        )
        tech_col.markdown("**Techniques that apply**")
        tech_col.table(
            intake_view.technique_rows(uploads.resolve(shown)),
            border="horizontal",
            hide_index=True,
        )

if mine := uploads.names():
    st.markdown("**Your uploaded models**")
    for upload in mine:
        text_col, remove_col = st.columns([5, 1], vertical_alignment="center")
        text_col.markdown(f"**{md.plain(upload)}** — {md.plain(uploads.describe(upload))}")
        remove_col.button(
            "Remove",
            key=f"byo_remove_{upload}",
            icon=":material/delete:",
            on_click=_remove,
            args=(upload,),
            width="stretch",
        )

st.subheader("Profile")
name = common.model_picker()
prof = common.model_profile(name)  # None (after saying why) until the weights exist
figures = common.baseline_figures() | st.session_state.get("_profiled", {})
table.dataframe(
    model_view.model_table(model_names(), figures),
    hide_index=True,
    width="stretch",
    column_config=views.MODEL_COLUMNS,
    placeholder="—",
)
if prof is None:
    st.stop()

s = prof.summary
params, flops, acc, size, latency = st.columns(5)
params.metric("Parameters", f"{s['params']:,}")
flops.metric("FLOPs / example", f"{s['flops'] / 1e6:,.2f} M" if s["flops"] else "n/a")
acc.metric(
    "Accuracy",
    fmt_pct(s["accuracy"]),
    help=f"95 % CI {fmt_pct(s['acc_low'])} – {fmt_pct(s['acc_high'])}",
)
size.metric(
    "Size (.onnx)",
    fmt_bytes(s["size_bytes"]),
    help=f"The fp32 .onnx file; download (.onnx.zst) {fmt_bytes(s.get('download_bytes'))}, "
    f"peak memory running it {fmt_bytes(s.get('peak_rss_bytes'))}",
)
timed = figures.get(name, {})  # the newest run's baseline, timed with that run's configs
if "measured_in" in timed and timed.get("latency_p50_ms") == timed.get("latency_p50_ms"):
    p50, lo, hi, where = (
        timed[k] for k in ("latency_p50_ms", "p50_low", "p50_high", "measured_in")
    )
else:
    p50, lo, hi, where = s["latency_p50_ms"], s["p50_low"], s["p50_high"], "this profile"
latency.metric(
    "Latency p50",
    fmt_ms(p50),
    help=f"95 % CI {fmt_ms(lo)}–{fmt_ms(hi)}; measured in {where}: {s['backend']}, "
    f"{s['threads']} thread(s), batch 1, interleaved rounds",
)

st.caption(
    f"Latency p50 {fmt_ms(p50)} (95 % CI {fmt_ms(lo)}–{fmt_ms(hi)}) measured in {where}; size is "
    "the fp32 .onnx file's bytes."
)
st.plotly_chart(charts.profile_figure(prof.layers), config={"displaylogo": False})
st.dataframe(prof.layers, hide_index=True, width="stretch", column_config=views.LAYER_COLUMNS)
