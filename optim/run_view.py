"""How the dashboard names and describes a run: labels, titles, its grid summary, progress,
time estimates and what its figures rest on (no streamlit import).

Example:
    >>> run_title({"id": 3, "name": "int4 pilot", "model": "digits_cnn"})
    '#3 int4 pilot'
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pandas as pd

from optim.scenario_runs import timed_at
from optim.store import run_state
from optim.tables import baseline


def run_label(run: Mapping[str, Any], state: str | None = None) -> str:
    """``"#3 int4 pilot · digits_cnn — done, 12 rows, Dec 01 15:40"`` for a row of
    ``Store.runs()`` (the name only when it has one)."""
    n = int(run.get("results") or 0)
    name = run.get("name")
    named = f"{name} · " if isinstance(name, str) and name else ""
    when = run.get("created")
    at = f", {when:%b %d %H:%M} UTC" if isinstance(when, dt.datetime) else ""
    text = f"#{run['id']} {named}{run['model']} — {state or run['status']}"
    return text + f", {n} row{'s' * (n != 1)}{at}"


def run_summary(run: Mapping[str, Any]) -> str:
    """The run's one-line grid summary ("bits 4,8,32 x sparsity 0,0.5, structured"), stored
    at creation (:func:`optim.runs.create`); older runs say how many plans they hold."""
    spec = run.get("spec") or {}
    if text := spec.get("summary"):
        return str(text)
    if "plans" in spec:
        return f"{len(spec['plans'])} configs"
    return "search" if "search" in spec else "tuning" if "tune" in spec else ""


def run_title(run: Mapping[str, Any]) -> str:
    """A run's short name in legends: ``"#3 int4 pilot"``, else ``"#3 digits_cnn"``."""
    name = run.get("name")
    return f"#{run['id']} {name if isinstance(name, str) and name else run['model']}"


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs side by side: name, model, when, what they measure, notes (``Store.runs()`` rows)."""
    records = runs.to_dict("records")
    return pd.DataFrame({
        "run": [run_title(r) for r in records],
        "model": [r["model"] for r in records],
        "created": [f"{r['created']:%Y-%m-%d %H:%M} UTC" for r in records],
        "measures": [run_summary(r) for r in records],
        "rows": [int(r.get("results") or 0) for r in records],
        "state": [run_state(r) for r in records],
        "notes": [r.get("notes") or "" for r in records],
    })  # fmt: skip


def progress(run: Mapping[str, Any], n_rows: int) -> tuple[int, int]:
    """(rows stored, configs planned) of a run; a search plans its baseline plus its trials
    (a trial that repeats a stored config adds no row, so a finished search may stop short)."""
    spec = run["spec"]
    planned = (
        1 + spec["search"].get("trials", 0) if "search" in spec else len(spec.get("plans", []))
    )
    return n_rows, max(planned, n_rows)


def fmt_duration(seconds: float) -> str:
    """``"about 45 s"``, ``"about 3 min"``."""
    if seconds < 90:
        return f"about {max(5, 5 * round(seconds / 5)):.0f} s"
    return f"about {seconds / 60:.0f} min" if seconds < 5400 else f"about {seconds / 3600:.1f} h"


def measurement_note(run: Mapping[str, Any], ok: pd.DataFrame) -> str:
    """What the figures rest on: how many test examples (and the smallest accuracy difference
    they can resolve), and where and how latency was measured."""
    base = baseline(ok)
    parts = []
    spec = run.get("spec") or {}
    n = base.get("n_test") if base is not None else None
    if n is not None and n == n and n > 0:
        res = 100 * measure_resolution(int(n), float(base["accuracy"]))
        parts.append(
            f"With {int(n):,} test examples, accuracy differences under {res:.1f} points cannot "
            "be told apart from noise; each config is compared with the baseline on the same "
            "examples (McNemar's exact test) before it is called better or worse."
        )
    env = run.get("env") or {}
    cpu = env.get("cpu") or {}
    settings = spec.get("settings") or {}
    if "rounds" not in settings:  # stored before the shipped file and the timing phase
        return (
            f"Run #{run.get('id')} was measured by an earlier version: its sizes are packed "
            ".optim files, not the .onnx that ships, and its configs were timed one after "
            "another, not together. Run the grid again to compare them honestly."
        )
    if cpu:
        flags = ", ".join(cpu.get("flags") or []) or "no AVX2/AVX-512/VNNI"
        where, session = timed_at(ok, int(settings.get("threads", 1)))
        parts.append(
            f"Latency: ONNX Runtime {env.get('onnxruntime', '?')} on {cpu.get('model', 'CPU')} "
            f"({flags}), {where} ({session}), every config timed in "
            f"{settings.get('rounds', 20)} interleaved rounds with the baseline in each; faster "
            "or slower only when the speed-up's 95 % interval excludes 1."
        )
    return " ".join(parts)


def timed_with(row: Mapping[str, Any]) -> str:
    """The ORT session settings that timed ``row`` (its ``threads`` for a row stored before
    they were recorded).

    Example:
        >>> timed_with({"session": None, "threads": 2})
        '2 thread(s)'
    """
    text = row.get("session")
    return text if isinstance(text, str) and text else f"{int(row['threads'])} thread(s)"


def measure_resolution(n: int, accuracy: float) -> float:
    from optim.measure import resolution

    return resolution(n, accuracy)
