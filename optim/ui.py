"""What the dashboard shows, as plain functions of result rows (no streamlit import).

The pages only lay out what these return: the view state that a shared link carries, the rows
split into measured and failed, the slider range, the headline, flags, the comparison table and
the technique form fields.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from optim import frontier as fr
from optim.charts import regressions, short_id
from optim.frontier import accuracy_text, speed_text  # noqa: F401 - re-exported (optim.cli)
from optim.store import run_state  # noqa: F401 - re-exported: torch-free, asked on every page

PAGES = (
    "models",
    "sweep",
    "tradeoffs",
    "sensitivity",
    "compare",
    "export",
    "glossary",
)  # url paths
PREFER = {"size": "Smallest", "latency": "Fastest"}
DEFAULTS: dict[str, Any] = {
    "run": None,  # None: the newest run
    "floor": None,  # None: the default for the run's rows (optim.frontier.default_floor)
    "relative": False,
    "worst": False,  # the floor applies to the worst class's accuracy instead of the mean
    "max_size_mb": None,
    "max_latency_ms": None,
    "prefer": "size",
    "selected": (),  # short ids (see short_id) of the configs picked on the charts
    "page": "tradeoffs",
    "present": False,
}
NUMERIC = (
    "accuracy", "acc_low", "acc_high", "size_bytes", "latency_p50_ms", "latency_p90_ms",
    "p50_low", "p50_high", "speedup", "speedup_low", "speedup_high", "acc_delta", "delta_low",
    "delta_high", "acc_p", "worst_class_acc", "download_bytes", "peak_rss_bytes", "latency_cv",
)  # fmt: skip
NOISY_CV = 0.2  # a config whose single calls vary more than this gets a visible warning
_BOOL = {"1": True, "true": True, "0": False, "false": False}


# ------------------------------------------------------------------ view state <-> URL


def _number(text: str, kind: type = float, low: float = -math.inf) -> Any:
    if len(text) > 40:  # a 310-digit run id: not a number anyone meant
        raise ValueError(f"a number of at most 40 characters is expected, but got {len(text)}")
    value = kind(text)
    if not math.isfinite(float(value)) or value < low:
        raise ValueError(f"`{low} <= value < inf` must hold, but got value={text!r}")
    return value


def parse_params(params: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Parse URL query params into view state; returns (state, names of the bad params).

    Unknown params are ignored; a bad value is dropped (and reported) so the default applies.

    Example:
        >>> parse_params({"floor": "0.97", "relative": "1", "run": "x"})
        ({'floor': 0.97, 'relative': True}, ['run'])
    """
    parsers = {
        "run": lambda v: _number(v, int, 1),
        "floor": lambda v: _number(v, float, 0.0),
        "relative": lambda v: _BOOL[v.lower()],
        "worst": lambda v: _BOOL[v.lower()],
        "max_size_mb": lambda v: _number(v, float, 1e-9),
        "max_latency_ms": lambda v: _number(v, float, 1e-9),
        "prefer": lambda v: {p: p for p in PREFER}[v],
        "selected": lambda v: tuple(s for s in v.split(",") if s),
        "page": lambda v: {p: p for p in PAGES}[v],
        "present": lambda v: _BOOL[v.lower()],
    }
    state, bad = {}, []
    for name, parse in parsers.items():
        if name in params:
            try:
                state[name] = parse(str(params[name]))
            except (ValueError, KeyError):
                bad.append(name)
    return state, bad


def encode_params(state: Mapping[str, Any]) -> dict[str, str]:
    """The query params of ``state``: only values that differ from :data:`DEFAULTS`.

    Example:
        >>> encode_params({"run": 3, "floor": 0.975, "relative": False, "selected": ("ab12",)})
        {'run': '3', 'floor': '0.975', 'selected': 'ab12'}
    """
    out = {}
    for name, default in DEFAULTS.items():
        value = state.get(name, default)
        if value is None or value == default or (name == "selected" and not value):
            continue
        if isinstance(value, bool):
            out[name] = "1" if value else "0"
        elif isinstance(value, float):
            out[name] = f"{round(value, 6):g}"
        elif name == "selected":
            out[name] = ",".join(value)
        else:
            out[name] = str(value)
    return out


def keys_for(ids: Iterable[str], keys: Iterable[str]) -> list[str]:
    """The keys among ``keys`` whose :func:`~optim.charts.short_id` is in ``ids``, in ``keys``
    order (a URL and the trade-off charts carry short ids)."""
    ids = set(ids)
    return [k for k in keys if short_id(k) in ids]


# ------------------------------------------------------------------ runs and rows


def plain(text: str) -> str:
    """``text`` escaped for Markdown, so a model named ``[Docs](https://x)`` shows as typed.

    Example:
        >>> plain("[Docs](https://x) *b*")
        '\\[Docs\\]\\(https://x\\) \\*b\\*'
    """
    return "".join("\\" + c if c in "\\`*_{}[]()<>#+-.!|~$" else c for c in str(text))


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
    return good, df[~ok].reset_index(drop=True)


def failed_table(failed: pd.DataFrame) -> pd.DataFrame:
    """Config label and its error, for the "failed configs" expander."""
    error = failed["error"] if "error" in failed.columns else pd.Series("", index=failed.index)
    return pd.DataFrame({"config": failed["label"], "error": error.fillna("not measured")})


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


# ------------------------------------------------------------------ floor and constraints


def baseline(ok: pd.DataFrame) -> pd.Series | None:
    i = fr.baseline_index(ok)
    return None if i is None else ok.iloc[i]


def default_floor(ok: pd.DataFrame, relative: bool) -> float:
    """:func:`optim.frontier.default_floor` for the rows ``ok`` (against their baseline)."""
    return fr.default_floor(fr.floor_reference(ok), relative)


def constraints(state: Mapping[str, Any], ok: pd.DataFrame) -> fr.Constraints:
    """The :class:`~optim.frontier.Constraints` of the view state (MB -> bytes)."""
    relative = bool(state.get("relative")) and baseline(ok) is not None
    floor = state.get("floor")
    floor = default_floor(ok, relative) if floor is None else float(floor)
    size_mb, lat = state.get("max_size_mb"), state.get("max_latency_ms")
    return fr.Constraints(
        floor=fr.clamp_floor(floor, relative),
        relative=relative,
        max_size_bytes=size_mb * 1e6 if size_mb else None,
        max_latency_ms=lat or None,
        prefer=state.get("prefer") or "size",
        on="worst_class_acc" if state.get("worst") and "worst_class_acc" in ok else "accuracy",
    )


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
        parts.append(
            f"Latency: ONNX Runtime {env.get('onnxruntime', '?')} on {cpu.get('model', 'CPU')} "
            f"({flags}), batch 1, {settings.get('threads', 1)} thread(s), every config timed in "
            f"{settings.get('rounds', 20)} interleaved rounds with the baseline in each; faster "
            "or slower only when the speed-up's 95 % interval excludes 1."
        )
    return " ".join(parts)


def measure_resolution(n: int, accuracy: float) -> float:
    from optim.measure import resolution

    return resolution(n, accuracy)


# ------------------------------------------------------------------ what the page says


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
    return pd.DataFrame(
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


# ------------------------------------------------------------------ technique forms


@dataclass(frozen=True)
class FormField:
    """One input of a technique form, read from the config dataclass field."""

    name: str
    kind: str  # "choice", "bool", "int", "float"
    default: Any
    help: str = ""
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    optional: bool = False

    @property
    def step(self) -> float:
        """A step of about a tenth of the default's magnitude (0.05 for 0.5, 1e-4 for 1e-3)."""
        if self.kind != "float":
            return 1
        span = self.high - self.low if self.low is not None and self.high is not None else 0.1
        ref = abs(self.default) if self.default else span
        return 10.0 ** (math.floor(math.log10(ref)) - 1) * (5 if ref >= 0.1 else 1)

    @property
    def format(self) -> str:
        """printf format with enough decimals for :attr:`step`."""
        if self.kind != "float":
            return "%d"
        return f"%.{max(2, -math.floor(math.log10(self.step)))}f"


def form_fields(config: type) -> list[FormField]:
    """The form of a technique config, generically from its dataclass fields and metadata.

    Example:
        >>> [f.name for f in form_fields(Quantize)]  # doctest: +SKIP
        ['bits', 'granularity', 'symmetric']
    """
    out = []
    for f in dataclasses.fields(config):
        meta, default = f.metadata, f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        hint = str(f.type)
        if isinstance(default, (tuple, list, dict)) or hint.startswith(("tuple", "dict")):
            continue  # structured fields (per-layer bits, rankings) keep their defaults
        low, high = meta.get("range", (None, None))
        if "choices" in meta:
            kind = "choice"
        elif isinstance(default, bool) or hint == "bool":
            kind = "bool"
        elif isinstance(default, int) or hint.startswith("int"):
            kind = "int"
        else:
            kind = "float"
        out.append(
            FormField(
                f.name,
                kind,
                None if default is dataclasses.MISSING else default,
                meta.get("help", ""),
                tuple(meta.get("choices", ())),
                low,
                high,
                "None" in hint,
            )
        )
    return out


def filled_fields(config: type, values: dict) -> dict[str, str]:
    """Fields a form fills from a measurement of the model instead of asking for them, and
    which measurement (``"sensitivity"``: :func:`optim.sensitivity.rank` of the model); a
    field with ``fill_if`` only when that other field's value is set."""
    return {
        f.name: f.metadata["fill"]
        for f in dataclasses.fields(config)
        if "fill" in f.metadata and values.get(f.metadata.get("fill_if", f.name), True)
    }


# ------------------------------------------------------------------ models and plans


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
    "threads": "threads", "params": "parameters", "flops": "FLOPs",
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


def count_configs(plan_list: Iterable[Sequence[object]]) -> int:
    """How many configs a run of ``plan_list`` measures (the baseline included, once each)."""
    from optim import plan as plans

    return len({plans.key(()), *(plans.key(p) for p in plan_list)})
