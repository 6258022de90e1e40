"""The one-page decision report (optim.report): its facts on a real run, the binding constraint
on hand-built rows, the PDF that the CLI prints (one page, looked at as PNG), the one-line
refusals, and the Trade-offs page's download buttons.

One small cancer_mlp sweep (6 configs) is measured once for the module, in a store and artifact
home of its own (``fresh_store`` is per test: a sweep per test would cost a minute each).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import optim.sweep as sw
from optim import cli, report
from optim import frontier as fr
from optim.store import Store
from optim.tables import split_rows

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    home = tmp_path_factory.mktemp("report-home")
    url = f"sqlite:///{home / 'runs.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPTIM_HOME", str(home))
        mp.setenv("OPTIM_DB_URL", url)
        store = Store(url)
        grid = sw.grid(bits=(4, 8, 32), sparsity=(0.0, 0.5))
        sw.sweep("cancer_mlp", grid, sw.Settings(min_seconds=0.02, rounds=2, jobs=1), store)
        yield store


@pytest.fixture(scope="module")
def run_id(store) -> int:
    return int(store.runs()["id"].max())


@pytest.fixture(scope="module")
def ok(store, run_id) -> pd.DataFrame:
    return split_rows(store.results(run_id))[0]


def rows(acc, size, p50) -> pd.DataFrame:
    """Hand-built rows: the first is the baseline; speed-ups are exact (no noise)."""
    n = len(acc)
    return pd.DataFrame({
        "key": [f"k{i}" for i in range(n)], "label": [f"c{i}" for i in range(n)],
        "is_baseline": [i == 0 for i in range(n)], "accuracy": acc, "acc_low": np.subtract(acc, 0.01),
        "acc_high": np.add(acc, 0.01), "size_bytes": size, "latency_p50_ms": p50,
        "speed_verdict": ["baseline"] + ["faster"] * (n - 1), "speedup": p50[0] / np.array(p50),
    })  # fmt: skip


# ------------------------------------------------------------------ what binds, by hand


def test_a_lower_floor_buys_the_next_frontier_point():
    df = rows([0.98, 0.975, 0.965, 0.95], [8e6, 4e6, 2e6, 1e6], [4.0, 3.0, 2.0, 1.0])
    rep = fr.recommend(df, fr.Constraints(0.97))
    assert rep.key == "k1"
    relax, tighten = report.relax_steps(df, rep)
    assert (relax.constraint, relax.key, tighten.key) == ("floor", "k2", "k0")
    # the floor drops to c2's 96.5 %, 0.5 points; c2 is 2x smaller and 1.5× faster than c1
    assert relax.change == "0.5 points lower floor (96.5 %)"
    assert relax.outcome == "ship `c2`: 2.0× smaller, 1.5× faster, accuracy 96.5 %"
    assert tighten.change == "1.0 points higher floor (98.0 %)"
    assert tighten.outcome.startswith("ship `c0`: 2.0× larger, 1.3× slower")


def test_a_budget_that_binds_says_what_it_would_buy():
    df = rows([0.98, 0.975, 0.975, 0.97], [8e6, 4e6, 2e6, 1e6], [1.0, 2.0, 3.0, 4.0])
    rec = fr.recommend(df, fr.Constraints(0.97, max_latency_ms=2.5))
    steps = report.relax_steps(df, rec)
    assert rec.key == "k1" and [s.constraint for s in steps if s.relax] == ["latency"]
    assert steps[0].change == "p50 budget 3.0 ms instead of 2.5 ms"
    assert steps[0].key == "k2" and "2.0× smaller" in steps[0].outcome
    nothing = fr.recommend(df, fr.Constraints(0.99))
    (step,) = report.relax_steps(df, nothing)
    assert nothing.key is None and step.key == "k0"  # 1 point lower: the baseline qualifies
    assert step.change == "1.0 points lower floor (98.0 %)"


# ------------------------------------------------------------------ a real run


@pytest.mark.slow
def test_the_html_states_the_recommendation_and_how_it_was_measured(store, run_id, ok):
    cons = fr.Constraints(0.9, max_size_bytes=10_000)
    rep = report.build_report(store.run(run_id), ok, cons)
    page = report.render_html(rep)
    rec = fr.recommend(ok, cons)
    pick = ok.loc[ok["key"] == rec.key, "label"].iloc[0]
    text = re.sub(r"<[^>]+>", "", page)
    assert f"At a floor of 90.0 % within the 10.0 KB size budget, ship {pick}:" in text
    assert len(re.findall(r"data:image/svg\+xml;base64,", page)) == 2  # both charts, inlined
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    table = rep.candidates
    assert table["config"].iloc[0] == pick and table[""].iloc[0] == "★"
    assert "fp32 baseline" in set(table["config"]) and len(table) <= report.TOP
    assert set(table["accuracy vs baseline"]) <= {"baseline", "same as baseline (within noise)"}
    b = ok[ok["is_baseline"]].iloc[0]
    ci = f"{100 * b['acc_low']:.1f}–{100 * b['acc_high']:.1f}"
    assert f"{100 * b['accuracy']:.1f} % ({ci})" in page
    facts = rep.facts
    assert b["backend"] in facts["Runtime"] and "1 intra-op thread" in facts["Runtime"]
    assert facts["Latency measured at"] == "1 thread, batch 1"  # the run's own timing
    assert facts["CPU"].startswith(store.run(run_id)["env"]["cpu"]["model"])
    assert f"top-1 accuracy on {int(b['n_test'])} held-out test examples" in facts["Metric"]
    assert re.fullmatch(r"\d+ examples \(quantization calibration\)", facts["Calibration split"])
    assert f"sha256:{report.recipe_hash(store.run(run_id)['spec'])}" in page
    assert re.fullmatch(r"[0-9a-f]{64}", rep.recipe_hash)
    assert "What binds:" in page and report.binding_text(rep) in text


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian chromium")
def test_the_cli_prints_a_one_page_pdf(store, run_id, tmp_path):
    out = tmp_path / "report.pdf"
    args = [sys.executable, "-m", "optim", "report", str(run_id), "--floor", "0.95",
            "--max-size-mb", "0.01", "--out", str(out)]  # fmt: skip
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=os.environ)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out}") and "ship" in done.stdout
    data = out.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data)) == 1
    if shutil.which("pdftoppm"):  # Debian poppler-utils: look at the page
        SHOTS.mkdir(parents=True, exist_ok=True)
        for old in SHOTS.glob("report-*.png"):
            old.unlink()
        subprocess.run(["pdftoppm", "-png", "-r", "80", str(out), str(SHOTS / "report")],
                       check=True)  # fmt: skip
        assert [p.name for p in SHOTS.glob("report-*.png")] == ["report-1.png"]
        print(f"report page: {SHOTS / 'report-1.png'}")


# ------------------------------------------------------------------ one-line refusals


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["999", "--floor", "0.97", "--out", "{d}/r.html"], r"run 999 does not exist"),
        (["{run}", "--floor", "1.2", "--out", "{d}/r.html"], r"`0 <= floor <= 1` must hold"),
        (["{run}", "--floor", "-0.1", "--out", "{d}/r.pdf"], r"`0 <= floor <= 1` must hold"),
        (["{run}", "--floor", "0.9", "--out", "{d}/r.docx"], r"must end in \.html or \.pdf"),
        (["{run}", "--floor", "0.9", "--out", "{d}/dir.html"], r"a file in an existing folder"),
        (["{run}", "--floor", "0.9", "--out", "{d}/no/r.html"], r"a file in an existing folder"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(store, run_id, tmp_path, capsys, argv, message):
    (tmp_path / "dir.html").mkdir()
    argv = [a.format(d=tmp_path, run=run_id) for a in argv]
    assert cli.main(["report", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("optim: error: ")
    assert re.search(message, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.html"]


# ------------------------------------------------------------------ the Trade-offs page


@pytest.mark.slow
def test_the_tradeoffs_page_offers_the_report(store, run_id):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.session_state["model"] = "cancer_mlp"
    at.query_params["page"], at.query_params["run"] = "tradeoffs", str(run_id)
    at.run()
    assert not at.exception, at.exception
    (box,) = [e for e in at.expander if e.label.startswith("Decision report")]
    assert not at.get("download_button") or all(
        "report" not in b.proto.label for b in at.get("download_button")
    )  # rendered only once opened: a cold page stays fast
    at.session_state["report"] = True
    at.run()
    assert not at.exception, at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download report (PDF)" in labels and "Download report (HTML)" in labels
