"""Latency scenarios: each built file timed once per (threads, batch) scenario, throughput next
to latency, verdict flips listed, and rows re-read for one scenario."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from optim import scenarios as sc
from optim.artifact import write_artifact
from optim.build import build
from optim.frontier import frontier
from optim.sources import sample_source
from optim.techniques import Quantize


def test_scenario_axes_time_one_artifact_per_scenario(tmp_path):
    source = sample_source("digits_cnn")
    files = {}
    for key, plan in (("fp32", ()), ("int4", (Quantize(4),))):
        write_artifact(build(source, plan)[0], tmp_path / key)
        files[key] = tmp_path / key / "model.onnx"
    stamps = {k: (p.stat().st_mtime_ns, p.stat().st_size) for k, p in files.items()}
    grid = sc.grid(threads=(1, 0), batches=(1, 8))
    assert len(grid) == (2 if (os.cpu_count() or 1) > 1 else 1) * 2
    df = sc.time_scenarios(files, source.splits["test"].x, "fp32", grid, rounds=2,
                           min_seconds=0.01)  # fmt: skip
    assert stamps == {k: (p.stat().st_mtime_ns, p.stat().st_size) for k, p in files.items()}
    assert len(df) == len(grid) * len(files)  # every file, once per scenario
    assert set(df["scenario"]) == {s.label for s in grid}
    np.testing.assert_allclose(df["items_per_s"], 1000 * df["batch"] / df["p50_ms"])
    assert (df.loc[df["key"] == "fp32", "speed_verdict"] == "baseline").all()
    assert sc.batch_of(source.splits["test"].x[:3], 8).shape[0] == 8
    rows = pd.DataFrame({"key": ["fp32", "int4"], "is_baseline": [True, False],
                         "accuracy": [0.9, 0.89], "size_bytes": [4e5, 1e5]})  # fmt: skip
    picked = sc.in_scenario(rows, df, grid[-1].label)
    assert picked["threads"].iloc[0] == grid[-1].threads and picked["latency_p50_ms"].notna().all()
    assert frontier(picked).any()
    with pytest.raises(ValueError, match=r"`scenario` must be one of .* but got 'batch 3'"):
        sc.in_scenario(rows, df, "batch 3")


def test_flips_lists_configs_whose_verdict_changes():
    df = pd.DataFrame({
        "key": ["a", "a", "b", "b", "c", "c"], "scenario": ["s1", "s32"] * 3,
        "speed_verdict": ["slower", "faster", "faster", "faster", "same", "slower"],
    })  # fmt: skip
    assert sc.flips(df) == {"a": {"s1": "slower", "s32": "faster"}}
    with pytest.raises(ValueError, match=r"`batch >= 1` must hold, but got batch=0"):
        sc.Scenario(1, 0)
