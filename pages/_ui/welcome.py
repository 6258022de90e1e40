"""The first screen of an empty store: what the tool does, in one glance, and a one-click start."""

from __future__ import annotations

import streamlit as st

QUICK_MODEL = "digits_cnn"  # committed weights, ~60k params: the whole sweep takes about a minute
QUICK_GRID = {"bits": (4, 8, 32), "sparsity": (0.0, 0.5)}

STEPS = (
    (
        ":material/memory:",
        "1. Bring a model",
        "A sample, your own ONNX file with its data, or a PyTorch model registered in code.",
    ),
    (
        ":material/play_arrow:",
        "2. Sweep optimizations",
        "Quantization (2–8-bit weights, int8), pruning, distillation… Every config is built "
        "into the .onnx file that would ship and measured from that file alone.",
    ),
    (
        ":material/insights:",
        "3. Set an accuracy floor",
        "Say how much accuracy you can give up; the chart shows the trade-offs and names the "
        "smallest or fastest model that keeps it, with its measured size and speed.",
    ),
)


def _quick_start() -> None:
    """Start the quick sweep (a callback: the page reruns on the new run's progress)."""
    from optim import sweep
    from pages._ui import forms

    forms._start(QUICK_MODEL, sweep.grid(**QUICK_GRID), sweep.Settings())


def welcome() -> None:
    """What the tool does and how to start, for a store with no runs yet."""
    with st.container(key="welcome"):
        st.markdown(
            "### See what each optimization of your model buys and costs — measured\n"
            "Make a trained network smaller or faster and see, for every option, the accuracy "
            "it keeps (on held-out data), the bytes of the file that ships and its latency on "
            "this machine. No runs yet: start with one click."
        )
        for col, (icon, title, text) in zip(st.columns(3), STEPS, strict=True):
            with col.container(border=True):
                st.markdown(f"{icon} **{title}**")
                st.caption(text)
        bits = ", ".join(f"{b}-bit" if b < 32 else "fp32" for b in QUICK_GRID["bits"])
        quick, own = st.columns(2)
        quick.button(
            f"Run a quick sweep on {QUICK_MODEL}",
            key="quick_start",
            type="primary",
            icon=":material/bolt:",
            on_click=_quick_start,
            width="stretch",
            help=f"A small CNN on 8×8 digits: {bits} weights × 0 and 50 % pruning, 6 configs, "
            "about a minute; the results stream in here",
        )
        own.page_link(
            "pages/models.py",
            label="Bring your own model",
            icon=":material/upload:",
            help="Upload an ONNX file and its data, or see how to register a PyTorch model",
        )
        st.page_link("pages/glossary.py", label="What the terms mean", icon=":material/menu_book:")
