"""Export: download what ships for a config (the .onnx file, its .zst download, the JSON recipe)
and the command that rebuilds it."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from optim import export, run_view, view_state
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
rec = fr.recommend(ok, view_state.constraints(st.session_state, ok))
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
accuracy.metric("Accuracy", fr.fmt_pct(row["accuracy"]), help=fr.accuracy_text(row))
size.metric("Size (.onnx)", fr.fmt_bytes(row["size_bytes"]))
timed = row["latency_p50_ms"] == row["latency_p50_ms"]
latency.metric(
    "Latency p50", fr.fmt_ms(row["latency_p50_ms"]) if timed else "timing…",
    help=fr.speed_text(row),
)  # fmt: skip
executed.metric("Executed as", str(row["precision"]))
st.caption(
    f"Stored as {row['stored']}; {row['backend']}, timed with "
    f"{run_view.timed_with(row)}. `model.onnx` is a standard ONNX file that ONNX Runtime loads as it is: its "
    "bytes are the size reported, and every figure was measured on it. `model.onnx.zst` is the "
    f"same file zstd-compressed ({fr.fmt_bytes(row.get('download_bytes'))}), for download."
)

artifact = Path(str(row.get("artifact") or ""))
missing = [n for n in ("model.onnx",) if not (artifact / n).is_file()]
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
        help="The file that ships: what ONNX Runtime loads, measured as it is",
    )
    zst = artifact / "model.onnx.zst"
    packed_col.download_button(
        "model.onnx.zst",
        zst.read_bytes if zst.is_file() else b"",
        file_name="model.onnx.zst",
        mime="application/zstd",
        icon=":material/download:",
        on_click="ignore",
        width="stretch",
        disabled=not zst.is_file(),
        help="The same file, zstd-compressed (`zstd -d model.onnx.zst`); absent when "
        "compression does not make it smaller",
    )
recipe = json.dumps(export.recipe(cur.run, row), indent=2, default=str)
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
    export.reproduce_command(spec["model"], row["plan"], spec["settings"]),
    language="bash",
    wrap_lines=True,
)
with st.expander("Recipe"):
    st.code(recipe, language="json")
