"""The result tables the dashboard shows and downloads, as plain functions of result rows.

``Store.results()`` rows split into measured and failed (:func:`split_rows`), then: every config
against the baseline (:func:`config_table`), the picked configs side by side
(:func:`versus_baseline`), runs compared at one floor (:func:`compare_rows`) and the CSV
(:func:`csv_table`). No streamlit import and no torch: the Trade-offs page loads it.

Example:
    >>> ok, failed = split_rows(store.results(3))  # doctest: +SKIP
    >>> config_table(ok, frontier.recommend(ok, Constraints(0.97)))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from optim import frontier as fr
from optim.charts import regressions, short_id
from optim.frontier import accuracy_text, speed_text

NUMERIC = (
    "accuracy", "acc_low", "acc_high", "size_bytes", "latency_p50_ms", "latency_p90_ms",
    "p50_low", "p50_high", "speedup", "speedup_low", "speedup_high", "acc_delta", "delta_low",
    "delta_high", "acc_p", "worst_class_acc", "download_bytes", "peak_rss_bytes", "latency_cv",
)  # fmt: skip
NOISY_CV = 0.2  # a config whose single calls vary more than this gets a visible warning


def split_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(measured rows with float figures, failed rows) of ``Store.results()``.

    A failed config has an ``error`` and no accuracy; charts and the recommendation only see
    the measured rows. A measured row may still wait for its latency (NaN until the run's
    timing phase).
    """
    if not len(df):
        return df.copy(), df.copy()
    ok = df["accuracy"].notna() & df["size_bytes"].notna()
    good = df[ok].reset_index(drop=True)
    good = good.astype({c: float for c in NUMERIC if c in good.columns})
    good["is_baseline"] = good["is_baseline"].fillna(False).astype(bool)
    # plain Python strings: pandas' Arrow strings cost ~7 µs each to iterate, and a page walks
    # the keys and labels of every row several times a rerun (30 ms at 10,000 rows)
    good = good.astype({c: object for c in ("key", "label", "family") if c in good.columns})
    return good, df[~ok].reset_index(drop=True)


def failed_table(failed: pd.DataFrame) -> pd.DataFrame:
    """Config label and its error, for the "failed configs" expander."""
    error = failed["error"] if "error" in failed.columns else pd.Series("", index=failed.index)
    return pd.DataFrame({"config": failed["label"], "error": error.fillna("not measured")})


def baseline(ok: pd.DataFrame) -> pd.Series | None:
    """The baseline row of the measured rows ``ok`` (:func:`split_rows`), None if they lack one."""
    i = fr.baseline_index(ok)
    return None if i is None else ok.iloc[i]


def flags(ok: pd.DataFrame) -> pd.DataFrame:
    """Per row: slower than the baseline beyond timing noise (p50), not smaller than it (bytes);
    as the charts mark them (:func:`~optim.charts.regressions`)."""
    slower, not_smaller = regressions(ok)
    return pd.DataFrame({"slower": slower, "not_smaller": not_smaller}, index=ok.index)


def config_table(ok: pd.DataFrame, rec: fr.Recommendation | None) -> pd.DataFrame:
    """Every measured config with ratios to the baseline, flags, frontier and feasibility."""
    base = baseline(ok)
    b_size = float(base["size_bytes"]) if base is not None else math.nan
    flag = flags(ok)
    slower = np.where(flag["slower"], "slower than baseline", "")
    bigger = np.where(flag["not_smaller"], "not smaller", "")
    cv = ok["latency_cv"] if "latency_cv" in ok.columns else pd.Series(np.nan, ok.index)
    noisy = np.where(cv.astype(float) > NOISY_CV, "noisy timing", "")
    notes = [", ".join(t for t in trio if t) for trio in zip(slower, bigger, noisy, strict=True)]
    records = ok.to_dict("records")
    feasible = (
        rec.feasible
        if rec is not None and len(rec.feasible) == len(ok)
        else np.zeros(len(ok), bool)
    )
    table = pd.DataFrame(
        {
            "config": ok["label"],
            "family": ok["family"],
            "accuracy": ok["accuracy"],
            "ci_low": ok["acc_low"],
            "ci_high": ok["acc_high"],
            "vs baseline": [accuracy_text(r) for r in records],
            "worst class": _col(ok, "worst_class_acc"),
            "agreement": ok["agreement"].astype(float),
            "size_bytes": ok["size_bytes"],
            "smaller": b_size / ok["size_bytes"],
            "download_bytes": _col(ok, "download_bytes"),
            "peak_rss_bytes": _col(ok, "peak_rss_bytes"),
            "p50_ms": ok["latency_p50_ms"],
            "p50 95 % CI": [_interval(r.get("p50_low"), r.get("p50_high")) for r in records],
            "speed": [speed_text(r) for r in records],
            "p90_ms": ok["latency_p90_ms"].astype(float),
            "executed": ok["precision"],
            "stored": ok["stored"],
            "pareto": fr.frontier(ok) if len(ok) else [],
            "qualifies": feasible,
            "flags": notes,
            "key": ok["key"],
        }
    )
    if "batch" in ok and (ok["batch"] > 1).any():  # a batched scenario: throughput too
        table.insert(table.columns.get_loc("speed") + 1, "items/s", _col(ok, "items_per_s"))
    timed_by = ok["session"] if "session" in ok else pd.Series(dtype=object)
    if timed_by.notna().any():  # what timed it: ORT's graph optimization level and threads
        table.insert(table.columns.get_loc("executed") + 1, "session", timed_by)
    return table


def _worst_change(row: Mapping[str, Any], base: Mapping[str, Any] | None) -> float:
    """Points the config's worst class lost (or gained) against the baseline on that class."""
    k, per = row.get("worst_class"), base.get("class_acc") if base is not None else None
    if k is None or k != k or not isinstance(per, list) or int(k) >= len(per):
        return math.nan
    return 100 * (float(row["worst_class_acc"]) - float(per[int(k)]))


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name].astype(float) if name in df.columns else pd.Series(np.nan, df.index)


def _interval(lo: Any, hi: Any) -> str:
    ok = lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi)
    return f"{lo:.3f}–{hi:.3f}" if ok else ""


def compare_rows(
    results: Mapping[str, pd.DataFrame], floor: float, relative: bool
) -> pd.DataFrame:
    """Per run: baseline accuracy, smallest and fastest config at the floor, frontier size."""
    rows = []
    for name, ok in results.items():
        base = baseline(ok)
        row: dict[str, Any] = {"run": name, "configs": len(ok)}
        row["baseline accuracy"] = float(base["accuracy"]) if base is not None else math.nan
        for prefer, col, label in (
            ("size", "size_bytes", "best size"),
            ("latency", "latency_p50_ms", "best p50 ms"),
        ):
            value, config = math.nan, ""
            if len(ok) and (base is not None or not relative):
                rec = fr.recommend(ok, fr.Constraints(floor, relative, prefer=prefer))
                if rec.key is not None:
                    hit = ok[ok["key"] == rec.key].iloc[0]
                    value, config = float(hit[col]), str(hit["label"])
            row[label], row[f"{label} config"] = value, config
        row["frontier size"] = int(fr.frontier(ok).sum()) if len(ok) else 0
        rows.append(row)
    return pd.DataFrame(rows)


def selection_keys(selection: Any, keys: Sequence[str]) -> list[str]:
    """The ``keys`` picked in a plotly selection event, in ``keys`` order.

    A trade-off chart's point carries the :func:`~optim.charts.short_id` of its key in ``ids``
    (the event's ``id``); a point of another chart may carry the key in ``customdata[0]``.
    Overlay traces repeat points: each key counts once.
    """
    points = (selection or {}).get("selection", selection or {}).get("points", []) or []
    picked = set()
    for p in points:
        cd = p.get("customdata")
        picked.add(p.get("id") or (cd[0] if isinstance(cd, (list, tuple)) and cd else cd))
    return [k for k in keys if k in picked or short_id(k) in picked]


def versus_baseline(ok: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The baseline and the ``keys`` rows side by side with the change against the baseline."""
    base = baseline(ok)
    picked = ok[ok["key"].isin(keys) & ~ok["is_baseline"]]
    rows = ok[ok["is_baseline"]] if base is not None else ok.iloc[:0]
    out = pd.concat([rows, picked])
    table = pd.DataFrame(
        {
            "config": out["label"],
            "accuracy": out["accuracy"],
            "vs baseline": [accuracy_text(r) for r in out.to_dict("records")],
            "worst class": _col(out, "worst_class_acc"),
            "worst class Δ (points)": [_worst_change(r, base) for r in out.to_dict("records")],
            "size_bytes": out["size_bytes"],
            "× smaller": (base["size_bytes"] if base is not None else np.nan) / out["size_bytes"],
            "peak_rss_bytes": _col(out, "peak_rss_bytes"),
            "p50_ms": out["latency_p50_ms"],
            "speed": [speed_text(r) for r in out.to_dict("records")],
            "agreement": out["agreement"].astype(float),
            "executed": out["precision"],
        }
    )
    return table.reset_index(drop=True)


CSV_COLUMNS = {  # the CSV's columns in words: no server paths, no raw JSON keys
    "label": "config", "family": "family", "technique": "technique", "bits": "weight bits",
    "sparsity": "sparsity", "metric": "metric", "n_test": "test examples",
    "accuracy": "accuracy", "acc_low": "accuracy 95% CI low", "acc_high": "accuracy 95% CI high",
    "acc_delta": "accuracy change vs baseline", "acc_p": "p vs baseline (McNemar)",
    "acc_verdict": "accuracy vs baseline", "agreement": "agreement with baseline",
    "worst_class_acc": "worst-class accuracy", "size_bytes": "size (bytes)",
    "download_bytes": "download (bytes, zstd)", "peak_rss_bytes": "peak memory (bytes)",
    "latency_p50_ms": "p50 (ms)", "p50_low": "p50 95% CI low (ms)",
    "p50_high": "p50 95% CI high (ms)", "latency_p90_ms": "p90 (ms)",
    "speedup": "speed-up vs baseline", "speedup_low": "speed-up 95% CI low",
    "speedup_high": "speed-up 95% CI high", "speed_verdict": "speed vs baseline",
    "backend": "backend", "precision": "executed as", "stored": "stored as",
    "threads": "threads", "session": "ORT session", "scenario": "latency scenario",
    "batch": "batch", "items_per_s": "items/s", "params": "parameters", "flops": "FLOPs",
    "seconds": "build and measure (s)",
}  # fmt: skip


def csv_table(ok: pd.DataFrame, rec: fr.Recommendation) -> pd.DataFrame:
    """Every measured config for the CSV download: readable columns, whether it is on the
    frontier and qualifies, and the floor and budgets that ``qualifies`` used (every row)."""
    table = config_table(ok, rec)
    c = rec.constraints or fr.Constraints(rec.floor_value)
    out = ok[[k for k in CSV_COLUMNS if k in ok.columns]].rename(columns=CSV_COLUMNS)
    rule = f"{100 * c.floor:g} % of baseline" if c.relative else "absolute"
    return out.assign(**{
        "baseline": ok["is_baseline"].fillna(False).astype(bool).to_numpy(),
        "pareto": table["pareto"].to_numpy(), "qualifies": table["qualifies"].to_numpy(),
        "recommended": (ok["key"] == rec.key).to_numpy(),
        "floor (accuracy)": rec.floor_value, "floor rule": rule,
        "floor applies to": fr.FLOOR_ON[c.on],
        "size budget (bytes)": c.max_size_bytes, "latency budget (p50 ms)": c.max_latency_ms,
    })  # fmt: skip
