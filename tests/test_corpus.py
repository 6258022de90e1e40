"""Every technique over a corpus of third-party-style ONNX models (tests/corpus.py): each either
yields honest rows measured on its shipped file, or is refused up front with a reason. No error
row for anything knowable up front, and no "quantized" row that changed no weight.

The model x technique table is written to ``$OPTIM_HOME/corpus.md`` (printed with ``-s``)."""

from __future__ import annotations

import dataclasses
import os
from urllib.parse import urlencode

import numpy as np
import onnx
import pytest

from optim import applicable
from optim import plan as plans
from optim.build import Settings
from optim.sources import get_source
from optim.sweep import sweep
from optim.techniques import Int8Auto, Int8Fallback
from tests.corpus import CORPUS

pytestmark = pytest.mark.slow

# the placement search's logic only (tests/test_placement.py follows a search to its end)
QUICK = {"Int8Auto": Int8Auto(rounds=2, seconds=0.02, passes=1),
         "Int8Fallback": Int8Fallback(rounds=2, seconds=0.02, passes=1)}  # fmt: skip
TECHNIQUES = [QUICK.get(n) or plans.REGISTRY[n].config() for n in sorted(plans.REGISTRY)]
TABLE: dict[str, dict[str, str]] = {}


def _spec(tmp_path_factory, name: str) -> str:
    builder, options = CORPUS[name]
    d = tmp_path_factory.mktemp("corpus")
    np.savez(d / "data.npz", **builder(d))
    return f"{d}/model.onnx:{d}/data.npz" + (f"?{urlencode(options)}" if options else "")


@pytest.mark.parametrize("name", list(CORPUS))
def test_every_technique_rows_or_reason(name, tmp_path_factory, fresh_store):
    source = get_source(_spec(tmp_path_factory, name))
    reasons = {type(c).__name__: applicable.reason((c,), source) for c in TECHNIQUES}
    runnable = [(c,) for c in TECHNIQUES if reasons[type(c).__name__] is None]
    for n, why in reasons.items():  # a torch-stage step needs the torch model: a reason, always
        if plans.REGISTRY[n].stage == "torch":
            assert why and "torch model" in why, (n, why)
    assert runnable, f"no technique applies to {name}"
    settings = Settings(min_seconds=0.02, jobs=min(2, os.cpu_count() or 1), rounds=2)
    run_id = sweep(source.meta["spec"], runnable, settings, fresh_store)
    rows = {r.key: r for r in fresh_store.rows(run_id)}
    base = rows[plans.key(())]
    assert base.error is None and base.metric == source.metric
    data = fresh_store.run(run_id)["spec"]["data"]  # the run records its data and its split
    assert data["splits"]["test"] == base.n_test and data["split"]["kind"] == "given"
    cells = {}
    for plan in runnable:
        row = rows[plans.key(plan)]
        assert row.error is None, f"{name} / {row.label}: {row.error}"  # nothing knowable failed
        assert row.metric == base.metric and row.n_test == base.n_test
        assert row.accuracy is not None and row.acc_low <= row.accuracy <= row.acc_high
        assert row.rel_l2 is not None and (row.cosine is not None or row.metric == "fidelity")
        assert row.latency_p50_ms and row.speed_verdict in (
            "faster",
            "slower",
            "same",
            "same graph",
        )
        shipped = onnx.load(f"{row.artifact}/model.onnx")
        try:  # a standard file (sparse initializers: no full check)
            onnx.checker.check_model(shipped)
        except onnx.checker.ValidationError as e:
            raise AssertionError(f"{name} / {row.label}: {str(e).splitlines()[0]}") from None
        assert row.size_bytes == os.path.getsize(f"{row.artifact}/model.onnx")
        # the config changed a weight: what is stored differs from the baseline's fp32
        assert row.storage != base.storage or row.precision != base.precision, row.label
        # int8 auto keeps fp32 where int8 measured no faster on this machine, and says so:
        # whether it does depends on the CPU and its load, so both outcomes must be honest
        all_fp32 = "no int8 placement was faster than fp32" in (row.precision or "")
        if row.bits and row.bits < 32 and not all_fp32:
            assert any(w["container"] != "fp32" for w in row.storage["widths"]), (
                row.label,
                row.stored,
            )
        cells[type(plan[0]).__name__] = (
            f"{row.metric} {row.accuracy:.3f} ({row.acc_delta:+.3f}), {row.size_bytes / 1e3:.0f} KB"
            f" vs {base.size_bytes / 1e3:.0f}, {row.speedup:.2f}x {row.speed_verdict}"
        )
    cells |= {n: f"refused: {why.split(': it needs ')[-1]}" for n, why in reasons.items() if why}
    TABLE[name] = cells
    _write_table()


def _write_table() -> None:
    names = sorted({n for cells in TABLE.values() for n in cells})
    lines = ["| model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for model, cells in TABLE.items():
        lines.append(f"| {model} | " + " | ".join(cells.get(n, "") for n in names) + " |")
    path = os.path.join(os.environ["OPTIM_HOME"], "corpus.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"\ncorpus table: {path}")


def test_the_corpus_covers_what_users_bring():
    """The kinds the issue names are all in the corpus (a guard against it shrinking)."""
    kinds = " ".join(CORPUS)
    for word in ("opset 11", "opset 13", "Constant", "BN unfolded", "shared", "external data",
                 "dynamic", "two inputs", "token", "skl2onnx", "no labels", "two outputs", "Silero", "If nodes"):  # fmt: skip
        assert word in kinds, word
    assert len(CORPUS) >= 10 and dataclasses.is_dataclass(TECHNIQUES[0])
