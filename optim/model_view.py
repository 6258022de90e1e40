"""How the dashboard describes a model: whether its weights are ready and the models table
(no streamlit import; ``sample_models`` is imported only when asked).

Example:
    >>> model_note("digits_cnn")  # doctest: +SKIP
    ('ready', 'weights ready')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

WEIGHTS = {"ready": "ready", "train": "trained on use", "missing": "missing"}


def model_note(name: str) -> tuple[str, str]:
    """(``"ready"`` | ``"train"`` | ``"missing"``, a sentence) for a model's weights (a
    registered or uploaded model is ready: its own weights come with it)."""
    import sample_models

    if name not in sample_models.SAMPLES:
        return "ready", "weights ready"
    if sample_models.weights_path(name).is_file():
        return "ready", "weights ready"
    if not sample_models.SAMPLES[name].committed:
        return "train", "trains on first use (about 3 minutes) before it can be measured"
    return "missing", f"weights missing: run `python -m sample_models.train {name}`"


def model_table(names: Sequence[str], figures: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model: description, input and its baseline figures where known."""
    import sample_models
    from optim.sources import describe, sample_source

    rows = []
    for name in names:
        fig = figures.get(name, {})
        shape = sample_source(name).input_shape if name in sample_models.SAMPLES else ()
        rows.append(
            {
                "model": name,
                "description": describe(name),
                "input": " × ".join(str(d) for d in shape) or fig.get("input", "—"),
                "accuracy": fig.get("accuracy", math.nan),
                "size_bytes": fig.get("size_bytes", math.nan),
                "p50_ms": fig.get("latency_p50_ms", math.nan),
                "params": fig.get("params", math.nan),
                "flops": fig.get("flops", math.nan),
                "weights": WEIGHTS[model_note(name)[0]],
            }
        )
    return pd.DataFrame(rows)
