"""Dashboard benchmarks: what a floor-slider move costs the server, and how fast Trade-offs opens.

Prints one table:

(a) The server-side work of one floor-slider move on 10,000 synthetic result rows
    (``bench_frontier.synthetic_rows``): ``recommend`` + ``frontier`` + both trade-off figures
    (``tradeoff_figures``, as the page builds them) + their serialization the way
    ``st.plotly_chart`` does it (``fig.to_dict()``, ``plotly.io.to_json(validate=False)`` and
    the md5 of the spec for the element id); median and p90 wall time, and median CPU time,
    over ``--repeats`` runs after a warm-up. Then the whole Trade-offs script rerun after a
    floor move, in AppTest, over a real SQLite store holding those rows (every widget, both
    charts, the headline: what the server does for one move). Target <= 200 ms (median wall
    time of the whole rerun).
(b) Cold load of the Trade-offs page in headless Chromium against a freshly started server with
    a real small digits_cnn run in its store: from ``page.goto`` to both charts drawn
    (``stPlotlyChart`` x2 with plotly's svg inside) and the script state ``notRunning``. The
    first load after the server starts, then the median of ``--loads`` loads, each in a fresh
    browser context (an empty HTTP cache: a first visit, which downloads and compiles
    Streamlit's bundle and plotly.js, 4.7 MB); the median of ``--loads`` new sessions in one
    context whose cache holds those files (a returning user opening a link); and the first
    load after a start whose readiness probe hit
    ``/_stcore/script-health-check`` (enabled in .streamlit/config.toml), which runs the app
    once and so imports what the first visitor would wait for. Target <= 3 s. A control page
    (two trivial plotly charts in a bare streamlit app) is timed the same way: the floor that
    streamlit and plotly.js set on this machine, whatever the app does.

It also reports whether the modules on the Trade-offs path import torch (they must not: the
first page after a restart would pay ~6 s for it).

Usage: python bench/bench_ui.py [--rows 10000] [--repeats 20] [--loads 5] [--home DIR]
                                [--no-browser]
  --home reuses a store (``DIR/runs.db``) that already holds a run instead of sweeping anew.
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.io as pio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_frontier import synthetic_rows, timed  # noqa: E402

from optim.charts import tradeoff_figures  # noqa: E402
from optim.frontier import Constraints, frontier, recommend  # noqa: E402

SLIDER_TARGET_MS = 200.0
LOAD_TARGET_S = 3.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HEAVY = ("torch", "onnx", "onnxruntime", "optim.sweep", "optim.sources", "optim.profile")


# ------------------------------------------------------------------ (a) server side


def serialize(fig) -> str:
    """What ``st.plotly_chart`` does with a figure on every rerun."""
    spec = pio.to_json(fig.to_dict(), validate=False)
    hashlib.md5(spec.encode()).hexdigest()  # the element id hashes the spec
    return spec


def slider_rows(n: int, repeats: int) -> list[tuple[str, float, float, float]]:
    df = synthetic_rows(n)
    floors = iter(np.tile(np.linspace(0.95, 1.0, 50), 1000))  # the slider keeps moving
    state: dict = {}

    def constraints() -> Constraints:
        return Constraints(floor=next(floors), relative=True, max_size_bytes=8e6)

    def figures() -> dict:
        """What ``views.tradeoff_charts`` builds: both figures at once, sized for the page."""
        figs = tradeoff_figures(df, rec=state["rec"], selected=["cfg-00003"])
        for fig in figs.values():
            fig.update_layout(height=560, legend=dict(orientation="h", y=-0.22, x=0))
        return figs

    def move() -> None:
        state["rec"] = recommend(df, constraints())
        frontier(df)  # the config table's 3-D frontier
        for fig in figures().values():
            serialize(fig)

    state["rec"] = recommend(df, constraints())
    size_fig = figures()["size_bytes"]
    cases = [
        ("recommend", lambda: recommend(df, constraints())),
        ("frontier (3-D)", lambda: frontier(df)),
        ("tradeoff_figures (size + latency)", figures),
        ("serialize one figure (st.plotly_chart)", lambda: serialize(size_fig)),
        ("floor slider moved: all of the above", move),
    ]
    out = [(name, *timed(fn, repeats)) for name, fn in cases]
    kb = len(serialize(size_fig)) / 1e3
    return out + [(f"  (one figure's JSON: {kb:,.0f} KB)", math.nan, math.nan, math.nan)]


def page_rows(n: int, repeats: int) -> list[tuple[str, float, float, float]]:
    """The whole Trade-offs script rerun after a floor move, in Streamlit's AppTest, on a real
    SQLite store holding ``n`` synthetic rows: every widget, both charts serialized into their
    protobuf messages, the headline. What the server does for one slider move, end to end."""
    from sqlalchemy.orm import Session
    from streamlit.testing.v1 import AppTest

    from optim.rows import Row
    from optim.store import Result, Store, _jsonable

    home = Path(tempfile.mkdtemp(prefix="bench-ui-page-"))
    url = f"sqlite:///{home / 'runs.db'}"
    os.environ |= {"OPTIM_HOME": str(home), "OPTIM_DB_URL": url}
    try:
        store = Store(url)
        run_id = store.create_run("digits_cnn", {"summary": f"{n} synthetic rows"})
        df = synthetic_rows(n).assign(metric="top1", n_test=2000, speed_verdict="same")
        rows = [Row.from_dict(r) for r in df.to_dict("records")]
        with Session(store.engine) as s:  # one transaction: 10,000 single inserts take minutes
            s.add_all([Result(run_id=run_id, key=r.key, plan=[], row=_jsonable(r.to_dict()),
                              accuracy=r.accuracy, size_bytes=r.size_bytes,
                              latency_p50_ms=r.latency_p50_ms) for r in rows])  # fmt: skip
            s.commit()
        store.set_status(run_id, "done")
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.query_params["run"] = str(run_id)
        at.run()
        assert not at.exception, at.exception
        floors = iter(np.tile(np.linspace(95.0, 99.0, 9), 1000))

        def move() -> None:
            at.number_input(key="floor_box").set_value(float(next(floors))).run()
            assert not at.exception and at.get("plotly_chart"), at.exception

        return [(f"whole page rerun after a floor move (AppTest, {n:,} stored rows)",
                 *timed(move, repeats))]  # fmt: skip
    finally:
        shutil.rmtree(home, ignore_errors=True)


# ------------------------------------------------------------------ (b) browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_run(home: Path) -> int:
    """A real small sweep (digits_cnn, bits 4/8/32 x sparsity 0/50 %) in ``home/runs.db``."""
    url = f"sqlite:///{home / 'runs.db'}"
    code = (
        "import optim.sweep as sw\n"
        "from optim.store import Store\n"
        "if __name__ == '__main__':\n"
        f"    s = Store({url!r})\n"
        "    grid = sw.grid(bits=(4, 8, 32), sparsity=(0.0, 0.5))\n"
        "    print(sw.sweep('digits_cnn', grid, sw.Settings(min_seconds=0.05), store=s))\n"
    )
    script = home / "make_run.py"
    script.write_text(code)
    env = {**os.environ, "OPTIM_HOME": str(home), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(script)], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True)  # fmt: skip
    return int(out.stdout.split()[-1])


CONTROL = """
import plotly.graph_objects as go
import streamlit as st

st.set_page_config(layout="wide")
for i, column in enumerate(st.columns(2)):
    column.plotly_chart(go.Figure(go.Scatter(x=[1, 2, 3], y=[1, 3, 2])), key=f"chart{i}")
"""  # the floor: two trivial plotly charts in a bare streamlit page


def start_server(
    home: Path, port: int, app: Path = ROOT / "app.py"
) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "OPTIM_HOME": str(home), "OPTIM_DB_URL": f"sqlite:///{home / 'runs.db'}"}
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless=true"]
    cmd += [f"--server.port={port}", "--server.address=127.0.0.1"]
    cmd += ["--browser.gatherUsageStats=false", "--server.fileWatcherType=none"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                if r.read().strip() == b"ok":
                    return proc, time.perf_counter() - t0
        except OSError:
            if proc.poll() is not None or time.perf_counter() - t0 > 60:
                raise RuntimeError("streamlit did not start") from None
            time.sleep(0.05)


def load_seconds(browser, url: str, context=None) -> float:
    """``page.goto`` -> both charts drawn and the script idle, in a fresh context (an empty
    HTTP cache: a first visit), or in ``context`` (a new page and a new session in a browser
    that has loaded the app before: its static files cached, as for a returning user)."""
    own = context is None
    context = context or browser.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(url)
    charts = page.locator("[data-testid='stPlotlyChart']")
    charts.nth(1).wait_for(state="attached", timeout=30_000)
    for i in range(2):
        charts.nth(i).locator(".main-svg, canvas").first.wait_for(state="attached")
    page.wait_for_selector(
        "[data-testid='stApp'][data-test-script-state='notRunning']", state="attached"
    )
    seconds = time.perf_counter() - t0
    assert charts.count() == 2 and not page.locator("[data-testid='stException']").count()
    page.close()
    if own:
        context.close()
    return seconds


def tradeoffs_imports() -> tuple[float, list[str]]:
    """Seconds to import the Trade-offs page's modules in a fresh interpreter, and which heavy
    modules that pulls in."""
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "import pages._ui.common, pages._ui.views\n"
        "print(time.perf_counter() - t)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    seconds, heavy = out.stdout.splitlines()[-2:]
    return float(seconds), [m for m in heavy.split(",") if m]


def browser_rows(loads: int, home: Path | None) -> tuple[list, float, float]:
    """The load rows, and the Trade-offs page's first and median load in seconds."""
    from playwright.sync_api import sync_playwright

    tmp = None
    if home is None:
        home = tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
        t0 = time.perf_counter()
        run_id = make_run(home)
        print(f"made run #{run_id} (digits_cnn, 6 configs) in {time.perf_counter() - t0:.0f} s")
    else:
        from optim.store import Store

        run_id = int(Store(f"sqlite:///{home / 'runs.db'}").runs()["id"].max())
    control = Path(tempfile.mkdtemp(prefix="bench-ui-control-")) / "control.py"
    control.write_text(CONTROL)
    out, seconds = [], {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for name, app, query in (
                ("Trade-offs", ROOT / "app.py", f"?run={run_id}"),
                ("control page (2 trivial charts)", control, ""),
            ):
                port = free_port()
                proc, started = start_server(home, port, app)
                try:
                    url = f"http://127.0.0.1:{port}/{query}"
                    first = load_seconds(browser, url)
                    warm = [load_seconds(browser, url) for _ in range(loads)]
                    returning = browser.new_context(viewport={"width": 1400, "height": 1600})
                    load_seconds(browser, url, returning)  # fills its HTTP cache
                    cached = [load_seconds(browser, url, returning) for _ in range(loads)]
                    returning.close()
                finally:
                    proc.terminate()
                    proc.wait(10)
                seconds[name] = (first, float(np.median(warm)))
                out += [
                    (f"{name}: server start -> health ok", started * 1e3, math.nan, math.nan),
                    (f"{name}: first load after start", first * 1e3, math.nan, math.nan),
                    (f"{name}: {loads} fresh-context loads", float(np.median(warm)) * 1e3,
                     float(np.percentile(warm, 90)) * 1e3, math.nan),
                    (f"{name}: {loads} new sessions, static files cached",
                     float(np.median(cached)) * 1e3, float(np.percentile(cached, 90)) * 1e3,
                     math.nan),
                ]  # fmt: skip
            # a deployment's readiness probe on /_stcore/script-health-check runs the app once
            proc, _ = start_server(home, port := free_port())
            try:
                t0 = time.perf_counter()
                probe = f"http://127.0.0.1:{port}/_stcore/script-health-check"
                with urllib.request.urlopen(probe, timeout=60) as r:
                    assert r.status == 200, r.status
                probed = time.perf_counter() - t0
                first = load_seconds(browser, f"http://127.0.0.1:{port}/?run={run_id}")
            finally:
                proc.terminate()
                proc.wait(10)
            out += [
                ("Trade-offs: script health check (warm-up)", probed * 1e3, math.nan, math.nan),
                ("Trade-offs: first load after it", first * 1e3, math.nan, math.nan),
            ]
            browser.close()
    finally:
        shutil.rmtree(control.parent, ignore_errors=True)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return out, *seconds["Trade-offs"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--no-browser", action="store_true", help="only the server-side rows")
    args = parser.parse_args()

    rows = slider_rows(args.rows, args.repeats) + page_rows(args.rows, args.repeats)
    seconds, heavy = tradeoffs_imports()
    have_browser = Path(CHROMIUM).is_file() and not args.no_browser
    if have_browser:
        more, cold, warm = browser_rows(args.loads, args.home)
        rows += more
    table = pd.DataFrame(rows, columns=["step", "median_ms", "p90_ms", "cpu_median_ms"])
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{args.rows} synthetic rows, {args.repeats} repeats; cores={os.cpu_count()}, "
          f"load average {load} (other work on the machine slows every row)")  # fmt: skip
    print(table.to_string(index=False, float_format=lambda v: f"{v:9.1f}", na_rep=""))
    print(
        f"Trade-offs modules import in {seconds:.2f} s; heavy modules pulled in: "
        f"{', '.join(heavy) or 'none'}"
    )
    slider = table.loc[table.step.str.startswith("whole page"), "median_ms"].iloc[0]
    verdicts = [f"slider {slider:.0f} ms (<= {SLIDER_TARGET_MS:.0f})", slider <= SLIDER_TARGET_MS]
    if have_browser:
        ok = max(cold, warm) <= LOAD_TARGET_S
        verdicts += [f"load {cold:.2f} s first, {warm:.2f} s median (<= {LOAD_TARGET_S:.0f})", ok]
    else:
        why = "--no-browser" if args.no_browser else f"{CHROMIUM} is missing"
        print(f"browser rows skipped ({why})")
    passed = all(verdicts[1::2]) and not heavy
    print("; ".join(verdicts[0::2]) + f": {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
