"""Export: download what ships for a config (ONNX graph, packed artifact, JSON recipe) and the
command that rebuilds it."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from optim import cli, ui
from optim import frontier as fr
from pages._ui import common

common.frame_guard()

st.title("Export")
cur = common.current()
if cur is None:
    st.stop()
common.status_banner(cur)
if common.no_rows(cur):
    st.stop()

ok = cur.ok
rec = fr.recommend(ok, ui.constraints(st.session_state, ok))
labels = dict(zip(ok["key"], ok["label"], strict=True))
keys = list(labels)
default = rec.key or rec.closest_key or keys[0]
config = st.selectbox(
    "Config",
    keys,
    index=keys.index(default),
    key="export_config",
    format_func=lambda k: labels[k] + ("  ★ recommended" if k == rec.key else ""),
    help="Defaults to the Trade-offs recommendation",
)
row = ok[ok["key"] == config].iloc[0]

accuracy, size, latency, executed = st.columns([1, 1, 1, 2])
accuracy.metric("Accuracy", fr.fmt_pct(row["accuracy"]))
size.metric("Size on disk", fr.fmt_bytes(row["size_bytes"]))
latency.metric("Latency p50", fr.fmt_ms(row["latency_p50_ms"]))
executed.metric("Executed as", str(row["precision"]))
st.caption(
    f"Stored as {row['stored']}; {row['backend']}, measured with "
    f"{int(row['threads'])} thread(s). `model.onnx` is what ONNX Runtime loads; "
    "`model.optim` is the packed artifact whose size is reported."
)

artifact = Path(str(row.get("artifact") or ""))
missing = [n for n in ("model.onnx", "model.optim") if not (artifact / n).is_file()]
if missing:
    st.error(
        f"The artifact files of `{row['label']}` are gone from {artifact} "
        "(cleaned up or measured on another machine); re-run the sweep to rebuild them."
    )
else:
    onnx_col, packed_col, recipe_col = st.columns(3)
    onnx_col.download_button(
        "model.onnx",
        (artifact / "model.onnx").read_bytes,
        file_name="model.onnx",
        mime="application/octet-stream",
        icon=":material/download:",
        on_click="ignore",
        width="stretch",
        help="The executable graph, what ONNX Runtime loads",
    )
    packed_col.download_button(
        "model.optim",
        (artifact / "model.optim").read_bytes,
        file_name="model.optim",
        mime="application/octet-stream",
        icon=":material/download:",
        on_click="ignore",
        width="stretch",
        help="The packed artifact whose size is reported",
    )
recipe = json.dumps(cli.recipe(cur.run, row), indent=2, default=str)
recipe_col = st.columns(3)[2] if missing else recipe_col
recipe_col.download_button(
    "recipe.json",
    recipe,
    file_name="recipe.json",
    mime="application/json",
    icon=":material/description:",
    on_click="ignore",
    width="stretch",
    help="Plan, settings, measured figures and environment",
)

st.subheader("Rebuild it")
spec = cur.run["spec"]
st.code(
    cli.reproduce_command(spec["model"], row["plan"], spec["settings"]),
    language="bash",
    wrap_lines=True,
)
with st.expander("Recipe"):
    st.code(recipe, language="json")
