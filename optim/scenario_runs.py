"""A run's latency scenarios (:mod:`optim.scenarios`): timed after its main timing phase, stored
per row in ``row.extra["scenarios"]`` (label -> figures), and read back for a chosen scenario.

The run's own timing phase (its ``threads``, batch 1, full graph optimizations) is the first
scenario; each other scenario times every built file again, interleaved with the baseline, and
is stored as soon as it is done, so a resumed run keeps the scenarios that already cover all of
its timed rows and times only the rest.

Example:
    >>> ok = store.results(run_id)  # doctest: +SKIP
    >>> labels(ok)  # doctest: +SKIP
    ['1 thread, batch 1', '2 threads, batch 8']
    >>> recommend(for_scenario(ok, "2x8"), constraints)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from optim import session

if TYPE_CHECKING:  # the timing code imports onnxruntime: only when it runs
    from optim import measure
from optim import scenarios as sc
from optim.rows import Row


def of_settings(settings) -> list[sc.Scenario]:
    """The scenarios a run with :class:`optim.build.Settings` ``settings`` measures: none
    beyond its timing phase when ``settings.scenarios`` is empty, else that phase's scenario
    first, then the others (duplicates, e.g. threads 0 on a 1-core machine, dropped)."""
    if not settings.scenarios:
        return []
    main = sc.Scenario(settings.threads, 1)
    return list(dict.fromkeys([main, *(sc.Scenario.of(a) for a in settings.scenarios)]))


def _main_figures(row: Row, s: sc.Scenario) -> dict:
    p50 = row.latency_p50_ms
    return {
        "threads": s.threads, "batch": 1, "level": "all", "p50_ms": p50,
        "p90_ms": row.latency_p90_ms, "p50_low": row.p50_low, "p50_high": row.p50_high,
        "cv": row.latency_cv, "speedup": row.speedup, "speedup_low": row.speedup_low,
        "speedup_high": row.speedup_high, "speed_verdict": row.speed_verdict,
        "items_per_s": 1000.0 / p50 if p50 else None,
    }  # fmt: skip


def _with(row: Row, label: str, figures: dict) -> Row:
    return replace(row, extra={**row.extra, "scenarios": {**row.extra.get("scenarios", {}),
                                                          label: figures}})  # fmt: skip


def time_run(
    rows: Sequence[Row],
    settings,
    x: measure.Inputs,
    save: Callable[[list[Row]], None],
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """Time ``rows``' files (the run's timed rows, after its timing phase) in every scenario of
    ``settings`` (:func:`of_settings`) on batches from ``x``, calling ``save(rows)`` after each
    scenario; a scenario every timed row already holds is kept, not timed again. A scenario
    that cannot run (a batch the model refuses) is stored as ``{"error": ...}`` on each row.
    Returns the rows."""
    rows = list(rows)
    todo = of_settings(settings)
    timed = [r for r in rows if r.error is None and r.latency_p50_ms is not None and r.artifact]
    timed = [r for r in timed if (Path(r.artifact) / "model.onnx").is_file()]
    base = next((r for r in timed if r.is_baseline), None)
    if not todo or base is None:
        return rows
    keys = {r.key for r in timed}
    for n, s in enumerate(todo):
        if n == 0:  # the timing phase itself
            rows = [_with(r, s.label, _main_figures(r, s)) if r.key in keys else r for r in rows]
            save(rows)
            continue
        if all(s.label in r.extra.get("scenarios", {}) for r in rows if r.key in keys):
            continue  # a resume: timed before, with every row it has now
        if progress:
            progress(s.label)
        try:
            df = sc.time_scenarios(
                {r.key: Path(r.artifact) / "model.onnx" for r in timed}, x, base.key, [s],
                rounds=settings.rounds, min_seconds=settings.min_seconds, seed=settings.seed,
                graph_ids={r.key: r.graph_id for r in timed if r.graph_id},
            )  # fmt: skip
        except Exception as e:  # noqa: BLE001 - the scenario says why it has no figures
            error = f"{type(e).__name__}: {e}".splitlines()[0]
            rows = [_with(r, s.label, {"error": error}) if r.key in keys else r for r in rows]
        else:
            figures = {k: {f: v[f] for f in sc.FIGURES} for k, v in df.set_index("key").iterrows()}
            rows = [_with(r, s.label, figures[r.key]) if r.key in figures else r for r in rows]
        save(rows)
    return rows


def timings_of(ok: pd.DataFrame) -> pd.DataFrame:
    """The stored per-scenario figures of result rows ``ok`` (a ``scenarios`` column, as
    :meth:`optim.store.Store.results` gives it), long: one row per (scenario, key), in the
    run's scenario order (configs in row order within each), as
    :func:`optim.scenarios.time_scenarios` returns them."""
    out = []
    if "scenarios" in ok.columns:
        for key, per in zip(ok["key"], ok["scenarios"], strict=True):
            if not isinstance(per, dict):
                continue
            for label, f in per.items():
                if "error" not in f:
                    out.append(
                        {"scenario": label, "key": key, **{k: f.get(k) for k in sc.FIGURES}}
                    )
    df = pd.DataFrame(out, columns=["scenario", "key", *sc.FIGURES])
    order = {name: i for i, name in enumerate(dict.fromkeys(df["scenario"]))}
    return df.sort_values("scenario", key=lambda s: s.map(order), kind="stable", ignore_index=True)


def labels(ok: pd.DataFrame) -> list[str]:
    """The run's scenarios with figures, in its order (empty for a run without scenarios)."""
    return list(dict.fromkeys(timings_of(ok)["scenario"]))


def errors(ok: pd.DataFrame) -> dict[str, str]:
    """Scenario -> why it has no figures (e.g. a model that only runs batch 1)."""
    out = {}
    for per in ok["scenarios"] if "scenarios" in ok.columns else []:
        for label, f in (per if isinstance(per, dict) else {}).items():
            if "error" in f:
                out[label] = f["error"]
    return out


def resolve(ok: pd.DataFrame, text: str) -> str:
    """The label of the scenario ``text`` names: a label (``"2 threads, batch 8"``) or
    ``THREADSxBATCH[:LEVEL]`` (``"2x8"``, threads 0 = all cores)."""
    known = labels(ok)
    if text in known:
        return text
    try:
        (axes,) = sc.parse(text)
    except ValueError:
        axes = None
    label = sc.Scenario.of(axes).label if axes else None
    if label not in known:
        raise ValueError(f"`--scenario` must be one of {known or 'none (the run has none)'} "
                         f"or name one as {sc.SYNTAX}, but got {text!r}")  # fmt: skip
    return label


def for_scenario(ok: pd.DataFrame, text: str) -> pd.DataFrame:
    """``ok`` with its latency columns from the scenario ``text`` names (:func:`resolve`)."""
    return sc.in_scenario(ok, timings_of(ok), resolve(ok, text))


def like(rows: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """``rows`` in the scenario ``other`` answers for (:func:`for_scenario`), or as they are
    when ``other`` is the run's own timing."""
    if "scenario" not in other or not len(other):
        return rows
    return for_scenario(rows, str(other["scenario"].iloc[0]))


def flip_lines(ok: pd.DataFrame) -> list[str]:
    """Configs whose verdict flips between the run's scenarios, in plain words."""
    return sc.flip_lines(sc.flips(timings_of(ok)), dict(zip(ok["key"], ok["label"], strict=True)))


def timed_at(ok: pd.DataFrame, threads: int) -> tuple[str, str]:
    """Where the latencies of ``ok`` were measured: its scenario (:func:`for_scenario`), else
    the timing phase's (``threads``, batch 1), and the ORT session settings that timed it.

    Example:
        >>> timed_at(pd.DataFrame({"key": []}), 1)[0]
        '1 thread, batch 1'
    """
    if "scenario" in ok and len(ok):
        return str(ok["scenario"].iloc[0]), str(ok["session"].iloc[0])
    found = ok["session"].dropna() if "session" in ok else pd.Series(dtype=object)
    text = str(found.iloc[0]) if len(found) else session.session_text(threads)
    return sc.label(threads, 1), text


def picks(ok: pd.DataFrame, constraints) -> dict[str, str | None]:
    """Scenario -> the label of the config :func:`optim.frontier.recommend` ships there under
    ``constraints`` (None: nothing qualifies), in the run's scenario order."""
    from optim.frontier import recommend

    out = {}
    for name in labels(ok):
        rec = recommend(for_scenario(ok, name), constraints)
        out[name] = None if rec.key is None else str(ok.loc[ok["key"] == rec.key, "label"].iloc[0])
    return out


def picks_line(picked: dict[str, str | None]) -> str:
    """:func:`picks` in words: whether the scenario changes the pick.

    Example:
        >>> picks_line({"1 thread, batch 1": "fp32", "2 threads, batch 8": "int8 auto"})
        'The pick depends on the scenario: fp32 at 1 thread, batch 1; int8 auto at 2 threads, batch 8'
    """
    by: dict[str, list[str]] = {}
    for name, label in picked.items():
        by.setdefault(label or "nothing qualifies", []).append(name)
    if len(by) == 1:
        return f"The pick is {next(iter(by))} in every scenario"
    parts = [f"{label} at {' and at '.join(names)}" for label, names in by.items()]
    return f"The pick depends on the scenario: {'; '.join(parts)}"


def throughput_text(row) -> str:
    """``"2,340 items/s"`` for a batched scenario's row, else ``""``."""
    v, batch = row.get("items_per_s"), row.get("batch")
    ok = v is not None and isinstance(v, float | int) and math.isfinite(v)
    return f"{v:,.0f} items/s" if ok and batch and batch > 1 else ""
