"""The one-page decision report: which config ships, what binds, what relaxing it would buy.

:func:`build_report` gathers the facts (the recommendation of :func:`optim.frontier.recommend`
worded as the Trade-offs headline, the binding constraint and its next frontier point each way,
the top candidates, where and how they were measured, the recipe hash); :func:`render_html`
lays them out as one self-contained A4 page (charts inlined as SVG by Kaleido, nothing fetched);
:func:`print_pdf` prints that page with headless Chromium. No streamlit.

Example:
    >>> rep = build_report(store.run(3), tables.split_rows(store.results(3))[0], Constraints(0.97))
    >>> write_report("report.pdf", rep)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from optim import frontier as fr
from optim import run_view, scenario_runs
from optim.artifact import write_atomic

SUFFIXES = (".html", ".pdf")
TOP = 5  # candidate rows: the pick, its nearest alternatives and the baseline fit one page
CHART_PX = (440, 330)  # Kaleido's canvas per chart, shown at half the page's width
CHROMIUM_FLAGS = (  # TESTING.md: without the networking flags, root chromium floods the network
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--no-pdf-header-footer",
)  # fmt: skip
METRIC_NAMES = {"top1": "top-1 accuracy", "agreement": "agreement with the baseline",
                "fidelity": "cosine similarity to the baseline"}  # fmt: skip
NAMES = {"floor": "accuracy floor", "size": "size budget", "latency": "latency budget"}
NOWRAP = ("", "accuracy (95 % CI)", "p50")  # candidate columns that must not wrap


@dataclass(frozen=True)
class Step:
    """Moving one constraint to its next frontier point: ``change`` buys ``outcome``."""

    constraint: str  # "floor", "size" or "latency"
    change: str  # e.g. "0.5 points lower floor (96.5 %)"
    outcome: str  # e.g. "ship `int4`: 2.1x smaller, same speed, accuracy 96.6 %"
    key: str | None  # the config shipped then (None: nothing qualifies)
    relax: bool = True  # False: the floor raised one step (what more accuracy would cost)


@dataclass(frozen=True, eq=False)
class Report:
    """Everything the page says, as plain values (laid out by :func:`render_html`)."""

    run: dict
    rows: pd.DataFrame
    rec: fr.Recommendation
    sentence: str  # the recommendation, with the headline's **config** / `config` marks
    detail: str
    binds: tuple[str, ...]  # constraints whose relaxation alone ships something better
    steps: tuple[Step, ...]
    candidates: pd.DataFrame  # formatted strings, the pick first
    facts: dict[str, str]
    recipe_hash: str


def recipe_hash(spec: dict) -> str:
    """sha256 of a run's spec (model, plans, settings) as canonical JSON: same hash, same recipe."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def chromium() -> str | None:
    """The Chromium that prints PDFs (Debian's ``chromium``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def check_out(path: str | Path) -> Path:
    """Refuse an output path before anything is computed: a suffix other than ``SUFFIXES``, a
    directory, a missing folder, or a PDF without Chromium."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"`--out` must end in .html or .pdf, but got {str(path)!r}")
    if path.is_dir() or not path.parent.is_dir():
        raise ValueError(f"`--out` must be a file in an existing folder, but got {str(path)!r}")
    if path.suffix.lower() == ".pdf" and not chromium():
        raise ValueError("a PDF report needs `chromium` on PATH; write --out report.html instead")
    return path


def _times(a: float, b: float, more: str, less: str, same: str) -> str:
    """``a / b`` in words (:func:`optim.frontier.times`): "2.1× smaller"."""
    return fr.times(float(a), float(b), more, less, same)[1]


def _points(d: float) -> str:
    return f"{abs(d):.{2 if abs(d) < 0.1 else 1}f} points"


def relax_steps(ok: pd.DataFrame, rec: fr.Recommendation) -> tuple[Step, ...]:
    """Per constraint (floor, size, latency), the smallest relaxation that alone ships something
    better on the preferred objective, and what: the next frontier point. While a config ships,
    also the next floor step up (what more accuracy would cost). A constraint without a
    relaxing step does not bind.

    Example:
        >>> [s.change for s in relax_steps(df, recommend(df, Constraints(0.97)))]  # doctest: +SKIP
        ['0.5 points lower floor (96.5 %)', '0.3 points higher floor (97.3 %)']
    """
    c, n = rec.constraints or fr.Constraints(rec.floor_value), len(ok)
    acc, size, p50 = (ok[k].to_numpy(float) for k in (c.on, "size_bytes", "latency_p50_ms"))
    goal = size if c.prefer == "size" else fr.compared_latency(ok)
    meets = {"floor": acc >= rec.floor_value - 1e-12,
             "size": size <= c.max_size_bytes if c.max_size_bytes else np.ones(n, bool),
             "latency": p50 <= c.max_latency_ms if c.max_latency_ms else np.ones(n, bool)}  # fmt: skip
    i = ok["key"].astype(str).tolist().index(rec.key) if rec.key is not None else None
    better = goal < goal[i] if i is not None else np.ones(n, bool)
    steps = []
    for name, col in (("floor", acc), ("size", size), ("latency", p50)):
        others = np.logical_and.reduce([m for k, m in meets.items() if k != name])
        cand = others & ~meets[name] & better & np.isfinite(col)
        if not cand.any():
            continue
        if name == "floor":
            new = replace(c, floor=float(acc[cand].max()), relative=False)
            change = f"{_points(100 * (rec.floor_value - new.floor))} lower floor"
            change += f" ({fr.fmt_pct(new.floor)})"
        elif name == "size":
            new = replace(c, max_size_bytes=float(size[cand].min()))
            change = f"size budget {fr.fmt_bytes(new.max_size_bytes)} instead of "
            change += fr.fmt_bytes(c.max_size_bytes)
        else:
            new = replace(c, max_latency_ms=float(p50[cand].min()))
            change = f"p50 budget {fr.fmt_ms(new.max_latency_ms)} instead of "
            change += fr.fmt_ms(c.max_latency_ms)
        r = fr.recommend(ok, new)
        steps.append(Step(name, change, _outcome(ok, i, r, c.on), r.key))
    if i is None:
        return tuple(steps)
    if (up := meets["size"] & meets["latency"] & (acc > acc[i] + 1e-12)).any():
        r = fr.recommend(ok, replace(c, floor=float(acc[up].min()), relative=False))
        change = f"{_points(100 * (acc[up].min() - rec.floor_value))} higher floor"
        change += f" ({fr.fmt_pct(acc[up].min())})"
        steps.append(Step("floor", change, _outcome(ok, i, r, c.on), r.key, relax=False))
    else:  # the pick is already the most accurate config within the budgets
        why = "nothing qualifies (no config is more accurate)"
        steps.append(Step("floor", f"a floor above {fr.fmt_pct(acc[i])}", why, None, False))
    return tuple(steps)


def _outcome(ok: pd.DataFrame, i: int | None, r: fr.Recommendation, on: str) -> str:
    """What ``r`` ships, compared with row ``i`` (the current pick) or, without one, plainly."""
    if r.key is None:
        return "still nothing qualifies"
    j = int(np.flatnonzero(ok["key"].to_numpy() == r.key)[0])
    row, lat = ok.iloc[j], fr.compared_latency(ok)
    acc = f"{'worst-class ' if on != 'accuracy' else ''}accuracy {fr.fmt_pct(float(row[on]))}"
    if i is None:
        figs = [fr.fmt_bytes(row["size_bytes"]), f"{fr.fmt_ms(row['latency_p50_ms'])} p50", acc]
    else:
        figs = [_times(ok["size_bytes"].iloc[i], row["size_bytes"], "smaller", "larger", "same size"),
                _times(lat[i], lat[j], "faster", "slower", "same speed"), acc]  # fmt: skip
    return f"ship `{row['label']}`: " + ", ".join(f for f in figs if f)


def candidates(ok: pd.DataFrame, rec: fr.Recommendation, n: int = TOP) -> pd.DataFrame:
    """The pick (or the closest config) first, then qualifying configs by the preferred
    objective, then the frontier's others; the baseline always. Formatted, with the accuracy
    interval and whether accuracy and speed differ from the baseline beyond noise."""
    c = rec.constraints or fr.Constraints(rec.floor_value)
    goal = ok["size_bytes"].to_numpy(float) if c.prefer == "size" else fr.compared_latency(ok)
    front, feasible = fr.frontier(ok), rec.feasible
    pick = ok["key"].to_numpy() == (rec.key or rec.closest_key)
    order = sorted(range(len(ok)), key=lambda k: (~pick[k], ~feasible[k], ~front[k], goal[k]))
    b = fr.baseline_index(ok)
    shown = order[:n] if b is None else order[: n - 1] + [b] * (b not in order[: n - 1])
    base_size = float(ok["size_bytes"].iloc[b]) if b is not None else math.nan
    out = []
    for k in shown:
        r = ok.iloc[k].to_dict()
        lo, hi = r.get("acc_low", math.nan), r.get("acc_high", math.nan)
        ci = f" ({100 * lo:.1f}–{100 * hi:.1f})" if math.isfinite(lo + hi) else ""
        ratio = _times(base_size, r["size_bytes"], "smaller", "larger", "") if k != b else ""
        out.append({
            "": "★" if pick[k] else "",
            "config": str(r["label"]),
            "accuracy (95 % CI)": fr.fmt_pct(r["accuracy"]) + ci,
            "accuracy vs baseline": fr.accuracy_text(r),
            "size": fr.fmt_bytes(r["size_bytes"]) + (f" ({ratio})" if ratio else ""),
            "p50": fr.fmt_ms(r["latency_p50_ms"]) if math.isfinite(r["latency_p50_ms"]) else "not timed",
            "speed vs baseline": fr.speed_text(r),
            "qualifies": "yes" if feasible[k] else "no",
        })  # fmt: skip
    return pd.DataFrame(out)


def measurement_facts(run: dict, ok: pd.DataFrame) -> dict[str, str]:
    """Where and how the figures were measured: CPU and flags, threads, runtime, splits, metric.

    The CPU is the one the run recorded (``run["env"]``), else this machine's, said so."""
    from optim.measure import cpu_info

    env, spec = run.get("env") or {}, run.get("spec") or {}
    settings = spec.get("settings") or {}
    cpu = env.get("cpu") or {**cpu_info(), "model": f"{cpu_info()['model']} (this machine)"}
    base = ok.iloc[fr.baseline_index(ok) or 0].to_dict()
    n_test, metric = base.get("n_test"), str(base.get("metric"))
    tests = f"{int(n_test):,} held-out test examples" if n_test == n_test and n_test else "n/a"
    if tests != "n/a" and math.isfinite(base.get("accuracy", math.nan)):
        res = 100 * run_view.measure_resolution(int(n_test), float(base["accuracy"]))
        tests += f" (differences under {res:.1f} points are noise)"
    flags = ", ".join(cpu.get("flags") or []) or "no AVX2/AVX-512/VNNI"
    backend = base.get("backend") or f"onnxruntime {env.get('onnxruntime', '?')}"
    created = str(run.get("created", ""))[:19]
    scenario, session = scenario_runs.timed_at(ok, int(settings.get("threads", 1)))
    return {
        "Run": f"#{run.get('id')} · {run.get('model')} · {run.get('status')} · created {created}",
        "CPU": f"{cpu.get('model', 'CPU')}, {cpu.get('cores', '?')} cores; {flags}",
        "Runtime": f"{backend}; {session}",
        "Latency measured at": scenario + _other_scenarios(ok),
        "Timing": f"{settings.get('rounds', '?')} interleaved rounds, the baseline in each; "
        "faster or slower only when the speed-up's 95 % CI excludes 1",
        "Metric": f"{METRIC_NAMES.get(metric, metric)} on {tests}; better or worse only "
        "by McNemar's test (p < 0.05)",
        "Calibration split": _calib_size(str(spec.get("model") or run.get("model"))),
        "Configs": f"{len(ok)} measured",
    }


def _other_scenarios(ok: pd.DataFrame) -> str:
    """``"; the run also timed 2 threads, batch 8"`` when it has other scenarios."""
    here = ok["scenario"].iloc[0] if "scenario" in ok and len(ok) else None
    here = here or next(iter(scenario_runs.labels(ok)), None)
    others = [s for s in scenario_runs.labels(ok) if s != here]
    return f"; the run also timed {'; '.join(others)}" if others else ""


def _calib_size(model: str) -> str:
    """The calibration split's size (loads the model's data), or why it is unknown."""
    from optim.sources import get_source

    try:
        return f"{len(get_source(model).splits['calib']):,} examples (quantization calibration)"
    except (OSError, ValueError, KeyError, ImportError) as e:  # a model gone from this machine
        return f"n/a ({str(e).splitlines()[0][:80]})"


def build_report(run: dict, ok: pd.DataFrame, constraints: fr.Constraints) -> Report:
    """Gather the report of ``run``'s measured rows ``ok`` (``tables.split_rows``) under
    ``constraints``; ``ValueError`` when no row is measured."""
    if not len(ok):
        raise ValueError(f"run {run.get('id')} has no measured results")
    rec = fr.recommend(ok, constraints)
    head = rec.headline
    steps = relax_steps(ok, rec)
    return Report(
        run, ok, rec, head.text, head.detail,
        tuple(dict.fromkeys(s.constraint for s in steps if s.relax)), steps,
        candidates(ok, rec), measurement_facts(run, ok), recipe_hash(run.get("spec") or {}),
    )  # fmt: skip


def binding_text(rep: Report) -> str:
    """Which constraint binds, in words: "Accuracy floor binds"."""
    if rep.binds:
        names = " and ".join(NAMES[b] for b in rep.binds).capitalize()
        return names + (" binds" if len(rep.binds) == 1 else " bind")
    if rep.rec.key is None:
        return "no single constraint: relax more than one to get a recommendation"
    better = "smaller" if (rep.rec.constraints or fr.Constraints(0)).prefer == "size" else "faster"
    return f"nothing (no {better} config was measured)"


def plain(text: str) -> str:
    """The sentence without its **bold** and `code` marks, for a terminal."""
    return re.sub(r"\*\*|`", "", text)


def _md(text: str) -> str:
    """Escaped, then the headline's marks as HTML: **bold** and `code`."""
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def chart_svgs(rep: Report) -> list[str]:
    """Accuracy vs size and vs p50 (:func:`optim.charts.tradeoff_figures`) as SVG, one Kaleido
    session for both."""
    import plotly.io as pio

    from optim import charts

    pio.defaults.mathjax = None  # Kaleido must not reach for a CDN
    for name in ("kaleido", "choreographer"):  # they log every browser tab at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    figs = list(charts.tradeoff_figures(rep.rows, rep.rec).values())
    for f in figs:
        f.update_layout(font=dict(size=12), margin=dict(l=60, r=10, t=10, b=10),
                        legend=dict(orientation="h", y=-0.22, x=0, font=dict(size=10)))  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        paths = [Path(d) / f"{k}.svg" for k in range(len(figs))]
        pio.write_images(figs, paths, format="svg", width=CHART_PX[0], height=CHART_PX[1])
        return [p.read_text() for p in paths]


CSS = """@page { size: A4; margin: 11mm 12mm; }
body { font: 9pt/1.3 "DejaVu Sans", Arial, sans-serif; color: #222; margin: 0; }
h1 { font-size: 15pt; margin: 0 0 2mm; } h2 { font-size: 10.5pt; margin: 3mm 0 1mm; }
.head { display: flex; justify-content: space-between; align-items: baseline; }
.muted { color: #666; font-size: 8.5pt; } code { font: 8.5pt "DejaVu Sans Mono", monospace; }
.rec { border: 1.5px solid #2a6; border-radius: 2mm; padding: 2.5mm 3.5mm; background: #f3fbf5; }
.rec p { font-size: 12pt; margin: 0 0 1.5mm; } ul { margin: 0; padding-left: 5mm; }
.charts { display: flex; gap: 3mm; } figure { margin: 0; flex: 1; } img { width: 100%; }
figcaption { font-weight: bold; font-size: 9pt; }
table { border-collapse: collapse; width: 100%; font-size: 8pt; }
th, td { text-align: left; padding: 0.8mm 1.6mm; border-bottom: 0.5px solid #ccc; vertical-align: top; }
th { background: #f2f2f2; } td.nw { white-space: nowrap; } .facts th { width: 27mm; background: none; }
tr.pick td { font-weight: bold; background: #fffbe6; }"""


def render_html(rep: Report, charts: bool = True) -> str:
    """The report as one self-contained HTML page (A4); ``charts=False`` skips Kaleido."""
    e, run = html.escape, f"{rep.run.get('model')}, run #{rep.run.get('id')}"
    steps = "".join(f"<li>{e(s.change)} → {_md(s.outcome)}</li>" for s in rep.steps)
    figures = ""
    for name, svg in zip(("Accuracy vs size", "Accuracy vs latency (p50)"),
                         chart_svgs(rep) if charts else (), strict=False):  # fmt: skip
        src = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
        figures += (
            f'<figure><figcaption>{name}</figcaption><img alt="{name}" src="{src}"></figure>'
        )
    head = "".join(f"<th>{e(c)}</th>" for c in rep.candidates.columns)
    body = "".join(
        f"<tr{' class=pick' * bool(r[''])}>"
        + "".join(f"<td{' class=nw' * (k in NOWRAP)}>{e(str(v))}</td>" for k, v in r.items())
        + "</tr>"
        for r in rep.candidates.to_dict("records")
    )
    facts = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rep.facts.items())
    facts += f"<tr><th>Recipe hash</th><td><code>sha256:{rep.recipe_hash}</code> (of the run's spec)</td></tr>"  # fmt: skip
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Decision report: {e(run)}</title><style>{CSS}</style></head><body>
<div class="head"><h1>Decision report: {e(run)}</h1><span class="muted">{now}</span></div>
<div class="rec"><p>{_md(rep.sentence)}</p><div class="muted">{_md(rep.detail)}</div></div>
<h2>What binds: {e(binding_text(rep))}</h2><ul>{steps}</ul>
<div class="charts">{figures}</div>
<h2>Top candidates</h2><table class="cands"><tr>{head}</tr>{body}</table>
<h2>Where and how it was measured</h2><table class="facts">{facts}</table>
</body></html>"""


def print_pdf(page: str, timeout_s: float = 120) -> bytes:
    """Print an HTML page to PDF with headless Chromium (a local file; no network)."""
    if (exe := chromium()) is None:
        raise ValueError("a PDF report needs `chromium` on PATH; write --out report.html instead")
    with tempfile.TemporaryDirectory() as d:
        src, pdf = Path(d) / "report.html", Path(d) / "report.pdf"
        src.write_text(page, encoding="utf-8")
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={d}/profile", f"--print-to-pdf={pdf}"]
        try:
            done = subprocess.run([*cmd, src.as_uri()], capture_output=True, text=True,
                                  timeout=timeout_s, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"chromium printed no PDF within {timeout_s:g} s") from None
        if not pdf.is_file() or not pdf.read_bytes().startswith(b"%PDF"):
            tail = done.stderr.strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"chromium printed no PDF (exit {done.returncode}): {tail[0]}")
        return pdf.read_bytes()


def write_report(path: str | Path, rep: Report) -> int:
    """Write ``rep`` as HTML or PDF (by the suffix), atomically; returns the bytes written."""
    path = check_out(path)
    page = render_html(rep)
    n = write_atomic(path, print_pdf(page) if path.suffix.lower() == ".pdf" else page.encode())
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)  # a document to share, not mkstemp's private 0600 file
    return n
