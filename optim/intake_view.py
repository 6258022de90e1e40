"""The intake report of an uploaded model as rows to show, and which techniques apply to it.

Pure formatting over :func:`optim.uploads.info` and :func:`optim.applicable.reason`; no
streamlit, so the dashboard and tests read the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optim.frontier import fmt_bytes
from optim.sources import ModelSource

METRIC_NAMES = {  # optim.metrics, as a sentence says it
    "top1": "top-1 accuracy",
    "agreement": "agreement with the baseline",
    "fidelity": "fidelity (cosine similarity to the baseline's outputs)",
}


def report_rows(info: Mapping[str, Any]) -> list[dict[str, str]]:
    """The intake report of an upload (:func:`optim.uploads.info`) as ``{"Check", "Result"}``
    rows: files, safety, opset, normalization, the proof, size, hashes (16 hex digits; the
    whole ones are in the upload's ``manifest.json``), the prediction output, data and metric.

    Example:
        >>> [r["Check"] for r in report_rows(uploads.info("mine"))][:3]  # doctest: +SKIP
        ['Files', 'Safety', 'Opset']
    """
    from optim.intake import TOLERANCE

    r, model, data = info["intake"], info["model"], info["data"]
    opset = (
        f"{r['opset_before']} → {r['opset_after']} (converted)"
        if r["opset_after"] != r["opset_before"]
        else f"{r['opset_after']} (kept)"
    )
    changes = [
        f"{r['constants_to_initializers']} Constant weights → initializers",
        f"{r['batchnorms_folded']} BatchNormalization folded",
        f"nodes {r['nodes_before']} → {r['nodes_after']}",
    ]
    rows = [
        ("Files", f"{model['original']} ({fmt_bytes(model['bytes'])}), "
                  f"{data['original']} ({fmt_bytes(data['bytes'])})"),
        ("Safety", "passed: size limits, external data, declared tensor sizes, ONNX checker"),
        ("Opset", opset),
        ("Normalized", "; ".join(changes)),
        ("Outputs match", f"max |diff| {r['max_abs_diff']:.2g}, relative {r['max_rel_diff']:.2g} "
                          f"(tolerance {TOLERANCE:g}), on the test split"),
        ("Parameters", f"{r['params']:,}"),
        ("FLOPs / example", f"{r['flops'] / 1e6:,.2f} M"),
        ("sha256", f"uploaded {r['original_sha256'][:16]}…, normalized "
                   f"{r['normalized_sha256'][:16]}…, data {data['sha256'][:16]}…"),
    ]  # fmt: skip
    output = info.get("output")
    rows.append(("Prediction", f"output {output!r}, as asked" if output else "the first output"))
    if s := info.get("data_summary"):
        shape = " × ".join(str(d) for d in s["input_shape"])
        asked = " (as asked)" if info.get("metric") else ""
        rows.append(("Data", f"{s['test']:,} test and {s['calib']:,} calibration examples of "
                             f"{shape}; judged by {METRIC_NAMES[s['metric']]}{asked}"))  # fmt: skip
    return [{"Check": k, "Result": v} for k, v in rows]


def technique_rows(source: ModelSource) -> list[dict[str, Any]]:
    """Each registered technique with its default config: ``{"Technique", "Applies"`` (``"yes"``
    or ``"no"``) ``, "Why not"}`` (:func:`optim.applicable.reason`), known before a run starts."""
    import optim.techniques  # noqa: F401 - registers every technique
    from optim import plan as plans
    from optim.applicable import reason

    rows = []
    for name, tech in plans.REGISTRY.items():
        cfg = tech.config()
        why = reason((cfg,), source)
        if why and ": it needs " in why:
            why = "needs " + why.split(": it needs ", 1)[1]
        rows.append({"Technique": f"{plans.label((cfg,))} ({name})",
                     "Applies": "no" if why else "yes", "Why not": why or ""})  # fmt: skip
    return sorted(rows, key=lambda r: (r["Applies"] == "no", r["Technique"]))
