"""The dashboard, driven by streamlit's AppTest against a real run store and a real sweep.

One small digits_cnn sweep (6 configs) is measured once for the module; other runs are made
from its rows to stage faults (a failed run, a dead worker). No mocks.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import optim.sweep as sw
from optim import frontier as fr
from optim import plan as plans
from optim.charts import short_id
from optim.rows import Row
from optim.run_view import fmt_duration
from optim.store import Store, run_state
from optim.tables import csv_table, selection_keys, split_rows
from optim.technique_form import form_fields
from optim.view_state import DEFAULTS, PAGES, encode_params, parse_params

APP = Path(__file__).resolve().parents[1] / "app.py"
SCREENS = ("models", "sweep", "tradeoffs", "compare", "export")


# ------------------------------------------------------------------ fixtures and helpers


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A run store (and artifact home) of this module's own, holding one real digits_cnn sweep.

    Artifacts live under ``$OPTIM_HOME/runs/<run id>``: a home shared with another store would
    mix two runs #1."""
    home = tmp_path_factory.mktemp("app-home")
    url = f"sqlite:///{home / 'runs.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPTIM_HOME", str(home))
        mp.setenv("OPTIM_DB_URL", url)
        store = Store(url)
        grid = sw.grid(bits=(4, 8, 32), sparsity=(0.0, 0.5))
        sw.sweep("digits_cnn", grid, sw.Settings(min_seconds=0.05, jobs=1), store=store)
        yield store


@pytest.fixture(scope="module")
def run_id(store) -> int:
    return int(store.runs()["id"].max())


@pytest.fixture(scope="module")
def rows(store, run_id):
    return split_rows(store.results(run_id))[0]


@pytest.fixture
def empty_store(tmp_path, monkeypatch) -> Store:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    monkeypatch.setenv("OPTIM_DB_URL", url)
    return Store(url)


def app(model: str = "cancer_mlp", **params) -> AppTest:
    """Run the app once with URL query ``params`` (cancer_mlp profiles in under a second)."""
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.session_state["model"] = model
    for name, value in params.items():
        at.query_params[name] = str(value)
    return at.run()


def healthy(at: AppTest) -> AppTest:
    """No exception, and no unexpected fault caught by the page guard."""
    assert not at.exception, at.exception
    faults = [e.value for e in at.error if "went wrong" in e.value]
    assert not faults, faults
    return at


def param(at: AppTest, name: str) -> str | None:
    """The URL query parameter ``name`` after the run (AppTest may hold a list)."""
    value = at.query_params.get(name)
    return value[-1] if isinstance(value, list) else value


def figure(at: AppTest, i: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[i].proto.spec)


def shape(fig: dict, name: str) -> dict:
    return next(s for s in fig["layout"].get("shapes", []) if s.get("name") == name)


def headline(at: AppTest) -> str:
    texts = [m.value for m in at.markdown if m.value.startswith("At a floor of")]
    return texts[0] if texts else " | ".join(w.value for w in at.warning)


def label_of(rows, key: str) -> str:
    return rows.loc[rows["key"] == key, "label"].iloc[0]


def staged_run(store: Store, run_id: int, status: str, error: str | None = None) -> int:
    """A copy of the fixture run with only its baseline row stored, then ``status``."""
    run = store.run(run_id)
    new = store.create_run(run["model"], run["spec"], run["env"])
    store.add_result(new, [], store.rows(run_id)[0])
    dead = subprocess.Popen(["true"])
    dead.wait()  # a reaped pid: the worker "died"
    store.set_status(new, status, error=error, pid=dead.pid)
    return new


# ------------------------------------------------------------------ every page renders


@pytest.mark.parametrize("page", SCREENS)
def test_every_page_renders_with_an_empty_store(empty_store, page):
    at = healthy(app(page=page))
    assert at.title[0].value.lower().replace("-", "").startswith(page[:5])
    if page in ("tradeoffs", "export"):  # the welcome: what the tool does, how to start
        assert any("No runs yet" in m.value for m in at.markdown)
        assert at.button(key="quick_start").label.startswith("Run a quick sweep")
    if page == "compare":
        assert any("No runs yet" in i.value for i in at.info)


def test_the_welcome_starts_a_quick_sweep_in_one_click(empty_store, tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIM_HOME", str(tmp_path))
    from optim import runs as life

    at = healthy(app(page="tradeoffs"))
    at.button(key="quick_start").click().run()
    runs = empty_store.runs()
    assert len(runs) == 1 and runs["model"].iloc[0] == "digits_cnn"
    run_id = int(runs["id"].iloc[0])
    life.cancel(empty_store, run_id)  # the run itself is the sweep tests' to check
    assert at.session_state["run"] == run_id and not at.exception
    assert len(runs["spec"].iloc[0]["plans"]) == 6  # fp32, 8-bit, 4-bit x 0 and 50 % pruning


@pytest.mark.parametrize("page", SCREENS)
def test_every_page_renders_a_finished_run(store, run_id, page):
    at = healthy(app(page=page, run=run_id))
    assert param(at, "run") == str(run_id)
    if page == "tradeoffs":
        assert len(at.get("plotly_chart")) == 2
        assert not at.dataframe  # the config table renders once its expander is opened
        at.session_state["all_configs"] = True
        healthy(at.run())
        (table,) = at.dataframe
        assert len(table.value) == 6
        labels = [b.proto.label for b in at.get("download_button")]
        assert labels == ["Download PNG", "Download PNG", "Download CSV"]
    if page == "export":
        assert "python -m optim build --model digits_cnn" in at.code[0].value
        assert [b.proto.label for b in at.get("download_button")] == [
            "model.onnx",
            "model.onnx.zst",
            "recipe.json",
        ]


# ------------------------------------------------------------------ floor, budgets, links


def test_inspect_lists_the_frontiers_configs_of_a_big_run(store, run_id):
    """Above views.LISTED configs, Inspect offers those on a chart's frontier and the picked
    ones, and says so; a config picked on a chart is listed even when dominated."""
    from pages._ui.views import LISTED

    run, rows = store.run(run_id), store.rows(run_id)
    new = store.create_run(run["model"], run["spec"], run["env"])
    rng = np.random.default_rng(0)
    store.add_result(new, [], rows[0])
    for i in range(LISTED + 50):
        base = rows[1 + i % (len(rows) - 1)]
        store.add_result(new, [], replace(base, key=f"k{i}", label=f"config {i}",
                         accuracy=float(rng.uniform(0.5, 0.95))))  # fmt: skip
    store.set_status(new, "done")
    at = healthy(app(page="tradeoffs", run=new))
    box = at.multiselect(key="selected")
    assert "on a frontier" in box.placeholder and len(box.options) < LISTED
    dominated = next(f"config {i}" for i in range(LISTED) if f"config {i}" not in box.options)
    key = f"k{dominated.split()[-1]}"
    at = healthy(app(page="tradeoffs", run=new, selected=short_id(key)))
    assert at.multiselect(key="selected").value == [key]
    store.delete_run(new)  # the fixture run stays the newest


def test_a_finished_runs_rows_are_reread_when_they_change(store, run_id):
    """The page keeps a finished run's rows between reruns, and reads them again when a row
    is added or re-timed (a resume, another writer): never a stale figure."""

    def configs(at: AppTest) -> str:
        return next(e.label for e in at.expander if "config" in e.label and "All" in e.label)

    def latencies(at: AppTest) -> set[float]:
        xs = [t["x"] for t in figure(at, 1)["data"] if isinstance(t.get("x"), dict)]
        return {round(float(v), 3) for x in xs for v in np.frombuffer(
            base64.b64decode(x["bdata"]), dtype=x["dtype"])}  # fmt: skip

    new = staged_run(store, run_id, "done")
    assert configs(healthy(app(page="tradeoffs", run=new))).startswith("All 1 config")
    for row in store.rows(run_id)[1:3]:
        store.add_result(new, [], row)
    at = healthy(app(page="tradeoffs", run=new))
    assert configs(at).startswith("All 3 configs") and 123.0 not in latencies(at)
    store.update_rows(new, [replace(r, latency_p50_ms=123.0) for r in store.rows(new)])
    assert 123.0 in latencies(healthy(app(page="tradeoffs", run=new)))
    store.delete_run(new)  # the fixture run stays the newest


def test_floor_slider_moves_the_floor_line_and_the_recommendation(store, run_id, rows):
    at = healthy(app(run=run_id))
    low = 0.95
    at.slider(key="floor").set_value(low).run()
    assert shape(figure(at), "floor")["y0"] == pytest.approx(low)
    want_low = fr.recommend(rows, fr.Constraints(low)).key
    assert f"ship **{label_of(rows, want_low)}**" in headline(at)

    high = float(rows["accuracy"].max())  # only the best config(s) reach it
    at.slider(key="floor").set_value(round(high, 3) - 0.0005).run()
    healthy(at)
    assert shape(figure(at), "floor")["y0"] == pytest.approx(round(high, 3) - 0.0005)
    want_high = fr.recommend(rows, fr.Constraints(round(high, 3) - 0.0005)).key
    assert want_high != want_low
    assert f"ship **{label_of(rows, want_high)}**" in headline(at)
    assert param(at, "floor") == f"{round(high, 3) - 0.0005:g}"


def test_a_floor_above_every_config_says_nothing_qualifies(store, run_id):
    at = healthy(app(run=run_id, floor=1.0))
    assert "No config reaches" in headline(at)
    assert shape(figure(at), "floor")["y0"] == pytest.approx(1.0)
    assert len(at.get("plotly_chart")) == 2  # the rows are still charted


def timed_copy(store: Store, run_id: int) -> tuple[int, object]:
    """A copy of the fixture run whose latencies are set by hand (distinct, every one beyond
    noise), so that no assertion rests on which config happened to time faster."""
    run = store.run(run_id)
    new = store.create_run(run["model"], run["spec"], run["env"])
    for i, row in enumerate(store.rows(run_id)):
        p50 = 1.0 if row.is_baseline else 0.15 * (i + 1)
        verdict = "baseline" if row.is_baseline else ("faster" if p50 < 1 else "slower")
        row = replace(row, latency_p50_ms=p50, latency_p90_ms=1.1 * p50, p50_low=0.99 * p50,
                      p50_high=1.01 * p50, speedup=1 / p50, speedup_low=0.98 / p50,
                      speedup_high=1.02 / p50, speed_verdict=verdict)  # fmt: skip
        store.add_result(
            new,
            next(p for p in run["spec"]["plans"] if plans.key(plans.from_json(p)) == row.key),
            row,
        )
    store.set_status(new, "done")
    return new, split_rows(store.results(new))[0]


def test_budgets_filter_the_recommendation(store, run_id):
    new, rows = timed_copy(store, run_id)
    at = healthy(app(run=new, floor=0.5))
    smallest = rows.sort_values(["size_bytes", "accuracy"], ascending=[True, False]).iloc[0]
    assert f"ship **{smallest['label']}**" in headline(at)

    at.number_input(key="max_size_mb").set_value(smallest["size_bytes"] / 1e6 * 0.5).run()
    assert "over the size budget" in headline(at)  # nothing is that small
    assert shape(figure(at), "budget")["x0"] == pytest.approx(smallest["size_bytes"] * 0.5)

    at.number_input(key="max_size_mb").set_value(None)
    fastest = rows.loc[rows["latency_p50_ms"].idxmin()]
    at.number_input(key="max_latency_ms").set_value(float(fastest["latency_p50_ms"]) * 1.0001)
    at.run()
    assert f"ship **{fastest['label']}**" in headline(at)  # the only config within budget
    at.number_input(key="max_latency_ms").set_value(0.5)
    at.run()
    feasible = rows["latency_p50_ms"] <= 0.5
    want = rows[feasible].sort_values(["size_bytes", "accuracy"], ascending=[True, False]).iloc[0]
    assert f"ship **{want['label']}**" in headline(at)
    store.delete_run(new)


def test_query_params_restore_the_view(store, run_id, rows):
    picked = rows.loc[~rows["is_baseline"], "key"].iloc[0]
    at = healthy(
        app(
            run=run_id,
            floor=0.99,
            relative=1,
            max_size_mb=0.5,
            prefer="latency",
            selected=short_id(picked),
        )
    )
    assert at.slider(key="floor").value == pytest.approx(0.99)
    assert at.toggle(key="relative").value is True
    assert at.number_input(key="max_size_mb").value == pytest.approx(0.5)
    assert at.session_state["prefer"] == "latency"
    assert at.multiselect(key="selected").value == [picked]
    assert "selected" in [t.get("name") for t in figure(at)["data"]]
    base = rows.loc[rows["is_baseline"], "accuracy"].iloc[0]
    assert shape(figure(at), "floor")["y0"] == pytest.approx(0.99 * base)
    assert param(at, "selected") == short_id(picked)

    at = healthy(app(run=run_id, page="export"))
    assert at.title[0].value == "Export"


def test_a_deleted_run_in_the_url_shows_a_message(store, run_id):
    at = healthy(app(run=987654))
    assert any("#987654 does not exist" in w.value for w in at.warning)
    assert at.session_state["run"] == run_id  # falls back to the newest run
    at = healthy(app(run="not-a-number", floor="high"))
    assert any("Ignored invalid link parameter(s): run, floor" in w.value for w in at.warning)
    at = healthy(app(run="9" * 310))  # a 310-digit run id: a warning, not a traceback
    assert any("Ignored invalid link parameter(s): run" in w.value for w in at.warning)


def test_presentation_mode_hides_the_developer_menu(store, run_id):
    at = healthy(app(run=run_id, present=1))
    assert at.toggle(key="present").value is True
    css = " ".join(h.proto.body for h in at.get("html"))
    assert '[data-testid="stToolbar"]' in css and "display: none" in css
    assert param(at, "present") == "1"


# ------------------------------------------------------------------ faults and live runs


def test_an_interrupted_run_offers_resume_and_keeps_its_rows(store, run_id):
    new = staged_run(store, run_id, "running")
    bad = Row(key="bad", label="int2 w/tensor", family="quantize",
              error="ValueError: scales overflow")  # fmt: skip
    store.add_result(new, [], bad)  # a config that failed: listed, not charted
    at = healthy(app(run=new))
    assert any("stopped unexpectedly" in w.value for w in at.warning)
    assert at.button(key=f"resume-{new}")
    assert len(at.get("plotly_chart")) == 2  # the finished baseline row is still charted
    failed = next(e for e in at.expander if "failed" in e.label)
    assert "1 config(s) failed" in failed.label
    assert "scales overflow" in failed.dataframe[0].value["error"].iloc[0]
    store.delete_run(new)


def test_a_run_driven_from_another_machine_shows_by_its_lease(store, run_id):
    """A shared store's run driven elsewhere: running while its lease beats (no Resume, whatever
    this machine's pid of that number is doing), interrupted once it stopped beating."""
    from sqlalchemy import update

    from optim.store import Run

    new = staged_run(store, run_id, "running")

    def remote(**values) -> None:
        with store.engine.begin() as conn:
            conn.execute(update(Run).where(Run.id == new).values(**values))

    remote(host="gpu-node-7")
    assert store.claim(new, "gpu-node-7:4242:beefcafe", ttl_s=60)
    at = healthy(app(run=new))
    assert any(i.value.startswith(f"Run #{new} is still running on gpu-node-7: ") for i in at.info)
    assert f"resume-{new}" not in {b.key for b in at.button}
    remote(lease_until=datetime.datetime(2020, 1, 1))  # it stopped beating
    at = healthy(app(run=new))
    assert any("its driver on gpu-node-7 stopped beating" in w.value for w in at.warning)
    assert at.button(key=f"resume-{new}")
    store.delete_run(new)


def test_a_failed_run_shows_its_error(store, run_id):
    new = staged_run(store, run_id, "failed", error="ValueError: weights file is corrupted")
    at = healthy(app(run=new, page="export"))
    assert any("weights file is corrupted" in e.value for e in at.error)
    assert at.code  # the baseline can still be exported
    store.delete_run(new)


def test_a_run_without_rows_says_so(store, run_id):
    run = store.run(run_id)
    new = store.create_run(run["model"], run["spec"], run["env"])  # created, never launched
    for page in ("tradeoffs", "export"):
        at = healthy(app(run=new, page=page))
        assert any("never started" in w.value for w in at.warning)
        assert any("no measured results" in i.value for i in at.info)
        assert at.button(key=f"resume-{new}")
        assert not at.get("plotly_chart")
    store.delete_run(new)


def test_sweep_page_counts_configs_then_starts_and_cancels_a_background_run(store):
    at = healthy(app(page="sweep", model="digits_cnn"))
    at.multiselect(key="sweep_bits").set_value([4, 32])
    at.multiselect(key="sweep_sparsity").set_value([0.0, 0.5]).run()
    assert at.metric[0].value == "4"  # the baseline, int4, prune 50%, both
    before = set(store.runs()["id"])
    at.button[[b.label for b in at.button].index("Run sweep")].click().run()
    healthy(at)
    (new,) = set(store.runs()["id"]) - before
    assert at.session_state["run"] == new
    tab = healthy(app(page="sweep", model="cancer_mlp"))  # a second tab, or a reload:
    assert any(
        f"Run #{new} (digits_cnn) is measuring this grid: 4 configs" in i.value for i in tab.info
    )  # fmt: skip  (the running grid, read-only)
    assert not tab.multiselect  # no form that pretends to be the running grid
    tab.button[[b.label for b in tab.button].index("Plan the next sweep")].click().run()
    go = tab.button[[b.label for b in tab.button].index("Run sweep")]
    assert tab.multiselect and go.disabled  # a new grid, started only as a new run
    at.button(key=f"cancel-{new}").click().run()
    assert store.run(int(new))["status"] == "cancelled"
    store.delete_run(int(new))


def test_sweep_page_grid_axes_count_configs(store):
    at = healthy(app(page="sweep", model="digits_cnn"))
    at.multiselect(key="sweep_bits").set_value([4])
    at.multiselect(key="sweep_sparsity").set_value([0.5]).run()
    assert at.metric[0].value == "2"  # baseline, prune 50% + int4
    at.toggle(key="sweep_orders").set_value(True).run()
    assert at.metric[0].value == "3"  # ... and int4 + prune 50%
    at.multiselect(key="sweep_students").set_value([0.5, 0.25]).run()
    assert at.metric[0].value == "7"  # each student: fp32 is not in the grid, so 2 more each
    plan_list = sw.grid((4,), (0.5,), students=(0.5, 0.25), orders=sw.ORDERS)
    # two students never trained: their guessed training time is in the estimate
    timing = sw.Settings().min_seconds + 0.05 * sw.TIMING_BLOCKS  # the timing phase too
    from optim.estimate import estimate

    est = estimate(store, "digits_cnn", plan_list, timing_s=timing)  # calibrated by the store
    assert at.metric[1].value == fmt_duration(est.seconds)
    assert any(est.basis in c.value for c in at.caption)  # and it says on what basis
    assert sw.estimate_seconds(store, "digits_cnn", plan_list) > 2 * sw.TRAINING_GUESS_S / 2


def test_mixed_precision_plan_takes_the_models_sensitivity_ranking(store):
    """'Keep the k most sensitive layers at 8 bits' from the Sweep page: the form fills the
    ranking in from the model's measured sensitivity (the Sensitivity page's, cached)."""
    from optim.sensitivity import rank, sensitivity

    at = healthy(app(page="sweep", model="cancer_mlp"))
    at.multiselect(key="adv_steps").set_value(["MixedQuantize"]).run()
    at.number_input(key="adv_MixedQuantize_keep_8bit").set_value(1).run()
    healthy(at)
    add = [b for b in at.button if b.label.startswith("Add plan")]
    assert [b.label for b in add] == ["Add plan: mixed int4 w/channel, top-1 sensitive at int8"]
    add[0].click().run()
    (plan,) = at.session_state["extra_plans"]
    ranking = rank(sensitivity("cancer_mlp", (2, 3, 4, 8), (0.5, 0.75, 0.9)), bits=3)
    assert list(plan[0]["sensitivity"]) == ranking and plan[0]["keep_8bit"] == 1


@pytest.mark.slow
def test_a_distillation_sweep_started_from_the_sweep_page(store):
    """Students are a grid axis: pick one, run, and its rows reach Trade-offs as their own
    families (a distilled student, and that student quantized)."""
    at = healthy(app(page="sweep", model="digits_cnn"))
    at.multiselect(key="sweep_bits").set_value([4, 32])
    at.multiselect(key="sweep_sparsity").set_value([0.0])
    at.multiselect(key="sweep_students").set_value([0.5]).run()
    assert at.metric[0].value == "4"  # (model, student) x (int4, fp32)
    before = set(store.runs()["id"])
    at.button[[b.label for b in at.button].index("Run sweep")].click().run()
    (new,) = set(store.runs()["id"]) - before
    deadline = time.monotonic() + 240
    while sw.state(store.run(int(new))) not in ("done", "failed", "interrupted"):
        assert time.monotonic() < deadline, "the distillation sweep did not finish"
        time.sleep(0.5)
    df = store.results(int(new))
    assert sw.state(store.run(int(new))) == "done" and df["accuracy"].notna().all()
    assert "distill 50% width + int4 w/channel" in set(df["label"])
    at = healthy(app(page="sweep", model="digits_cnn", run=new))  # a reload shows it done
    assert "4 of 4 configs — done" in at.get("progress")[0].proto.text
    at = app(page="tradeoffs", run=new)
    names = {t.get("name") for t in figure(healthy(at))["data"]}
    assert {"distill", "distill + quantize", "quantize"} <= names
    store.delete_run(int(new))


# ------------------------------------------------------------------ the pure helpers


def test_view_state_round_trips_through_the_url():
    state = {
        "run": 3,
        "floor": 0.975,
        "relative": True,
        "max_size_mb": 1.5,
        "prefer": "latency",
        "selected": ("ab12cd34",),
        "page": "export",
        "present": True,
    }
    parsed, bad = parse_params(encode_params(state))
    assert parsed == state and bad == []
    assert encode_params(DEFAULTS) == {}


def test_every_screen_of_the_frame_can_be_linked():
    paths = re.findall(r'\("(\w+)", "pages/\w+\.py"', APP.read_text())
    assert paths and set(paths) == set(PAGES)  # a page=... link to each one is accepted
    for page in paths:
        assert parse_params({"page": page}) == ({"page": page}, [])


def test_selection_maps_chart_points_back_to_keys():
    keys = ["k0", "k1", "k2", "k3"]
    event = {
        "selection": {
            "points": [
                {"id": short_id("k2"), "customdata": [98.1, 97.0]},
                {"id": short_id("k2")},  # an overlay trace repeats the point
                {"id": short_id("k1")},
                {"customdata": ["k3", "a"]},  # a chart that carries the key itself
            ]
        }
    }
    assert selection_keys(event, keys) == ["k1", "k2", "k3"]
    assert selection_keys(None, keys) == []


def test_headline_claims_no_speed_change_within_timing_noise(rows):
    rec = fr.recommend(rows, fr.Constraints(0.5))  # the smallest config
    base = float(rows.loc[rows["is_baseline"], "latency_p50_ms"].iloc[0])
    cases = (  # (p50, paired speed-up, its interval, verdict) -> what the headline claims
        (base * 0.7, 1.4, (0.9, 1.8), "same", "same speed"),  # the interval includes 1
        (base * 0.97, 1.03, (1.0, 1.06), "same graph", "same speed"),
        (base / 2, 2.0, (1.9, 2.1), "faster", "2.0× faster"),
        (base * 2, 0.5, (0.45, 0.55), "slower", "2.0× slower"),
    )
    for p50, speedup, (lo, hi), verdict, claim in cases:
        noisy = rows.copy()
        at = noisy["key"] == rec.key
        noisy.loc[at, ["latency_p50_ms", "speedup", "speedup_low", "speedup_high"]] = (
            p50, speedup, lo, hi)  # fmt: skip
        noisy.loc[at, "speed_verdict"] = verdict
        head = fr.recommend(noisy, fr.Constraints(0.5)).headline
        assert head.faster == claim
        claims = "faster" in head.text.split("Accuracy vs")[0] or "slower" in head.text
        assert claims == (verdict in ("faster", "slower"))


def test_run_state_matches_the_sweep_module(store, run_id):
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        for status in ("pending", "running", "done", "failed", "cancelled"):
            for pid in (None, float("nan"), dead.pid, alive.pid):
                run = {"status": status, "pid": pid}
                assert run_state(run) == sw.state(run), run
        for row in store.runs().to_dict("records"):  # <NA> pids of Store.runs()
            assert run_state(row) == sw.state(row)
    finally:
        alive.kill()
        alive.wait()


def test_every_technique_has_a_form():
    for name, tech in plans.REGISTRY.items():
        for f in form_fields(tech.config):
            assert f.kind in ("choice", "bool", "int", "float"), (name, f)
            if f.kind == "choice":
                assert f.default in f.choices, (name, f)


def test_the_floor_can_apply_to_the_worst_class(store, run_id, rows):
    at = healthy(app(run=run_id, floor=0.9))
    assert "worst class" not in headline(at)
    at.toggle(key="worst").set_value(True).run()
    healthy(at)
    assert param(at, "worst") == "1"  # a shared link keeps it
    feasible = rows[rows["worst_class_acc"] >= 0.9]
    smallest = feasible[feasible["size_bytes"] == feasible["size_bytes"].min()]
    assert any(f"**{label}**" in headline(at) for label in smallest["label"])
    assert "worst class" in " ".join(c.value for c in at.caption)


def test_model_names_are_shown_as_text_not_markdown(store, run_id):
    run = store.run(run_id)
    new = store.create_run("[Docs](https://evil.example)", run["spec"], run["env"])
    try:
        at = healthy(app(run=new))
        caption = next(c for c in at.caption if c.value.startswith("Model:"))
        assert "\\[Docs\\]\\(https://evil\\.example\\)" in caption.value  # escaped: no link
    finally:
        store.delete_run(new)


def test_sweep_page_greys_out_what_an_onnx_model_cannot_run(store, tmp_path, monkeypatch):
    """An ONNX model (here from the project file) cannot be structurally pruned or distilled:
    the Sweep page disables those options and says why, before anything runs."""
    import numpy as np

    from tests.corpus import shared_weight_mlp

    np.savez(tmp_path / "data.npz", **shared_weight_mlp(tmp_path))
    (tmp_path / "optim.toml").write_text(
        '[models.tied]\nonnx = "model.onnx"\ndata = "data.npz"\ndescription = "tied MLP"\n'
    )
    monkeypatch.setenv("OPTIM_PROJECT", str(tmp_path / "optim.toml"))
    at = healthy(app(page="sweep", model="tied"))
    note = next(i.value for i in at.info if "Not available for tied" in i.value)
    assert "StructuredPrune" in note and "needs a torch model" in note and "Distill" in note
    assert at.toggle(key="sweep_structured").disabled
    assert at.multiselect(key="sweep_students").disabled
    assert "StructuredPrune" not in at.multiselect(key="adv_steps").options
    assert "Quantize" in at.multiselect(key="adv_steps").options


# ------------------------------------------------------------------ runs you can tell apart


def test_a_run_is_renamed_annotated_and_deleted_from_the_sidebar(store, run_id):
    new = staged_run(store, run_id, "done")
    folder = sw.run_dir(store.url, new)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(b"x")
    at = healthy(app(run=new))
    at.sidebar.text_input(key=f"run_name_{new}").input("int4 pilot")
    at.sidebar.text_area(key=f"run_notes_{new}").input("before the retraining")
    at.sidebar.button(key=f"run_save_{new}").click().run()
    run = store.run(new)
    assert (run["name"], run["notes"]) == ("int4 pilot", "before the retraining")
    picker = at.sidebar.selectbox(key="run")
    assert "int4 pilot · digits_cnn — done" in picker.format_func(
        new
    ) and "UTC" in picker.format_func(new)
    assert any("before the retraining" in c.value for c in at.sidebar.caption)
    assert at.sidebar.button(key=f"run_delete_{new}").disabled  # not before it is confirmed
    at.sidebar.checkbox(key=f"run_sure_{new}").check().run()
    at.sidebar.button(key=f"run_delete_{new}").click().run()
    assert new not in set(store.runs()["id"]) and not folder.exists()
    healthy(at)


def test_compare_shows_each_runs_name_and_grid_summary(store, run_id):
    at = healthy(app(page="compare", run=run_id))
    table = at.dataframe[0].value
    assert {"run", "created", "measures", "notes"} <= set(table.columns)
    assert "bits 4,8,32 x sparsity 0,0.5" in set(table["measures"])


def test_presentation_mode_asks_the_question_in_words(store, run_id):
    at = healthy(app(run=run_id, present=1))
    assert at.title[0].value == "digits_cnn: which optimized model can we ship?"
    labels = [b.label for b in at.get("download_button")]
    assert "Download PNG" not in labels and "Download CSV" not in labels  # developer widgets
    assert not at.multiselect  # no Inspect
    assert [e.label for e in at.expander] == [
        "Decision report: one page for the decision (PDF / HTML)"
    ]
    assert "w/channel" not in headline(at) and "weights" in headline(at)  # configs in words
    assert not [t for t in at.toggle if t.label == "Floor as % of baseline"]


def test_the_csv_has_readable_columns_and_the_constraints_it_used(rows):
    from optim import frontier as fr

    rec = fr.recommend(rows, fr.Constraints(0.99, relative=True, max_size_bytes=1e5))
    csv = csv_table(rows, rec)
    assert not {"artifact", "storage", "extra", "plan", "key"} & set(csv.columns)
    assert {"config", "size (bytes)", "qualifies", "floor (accuracy)", "floor rule"} <= set(csv)
    assert set(csv["floor rule"]) == {"99 % of baseline"}
    assert set(csv["size budget (bytes)"]) == {1e5}
    assert csv["recommended"].sum() == (rec.key is not None)


def test_deck_pngs_carry_title_and_labelled_points(rows):
    from optim import charts
    from optim import frontier as fr

    rec = fr.recommend(rows, fr.Constraints(0.9))
    fig = charts.tradeoff_figure(rows, "size_bytes", rec)
    deck = charts.deck_figure(fig, "digits_cnn: accuracy vs size, floor 90.0 %",
                              {"recommended": rec.headline.config, "baseline": "fp32"})  # fmt: skip
    assert deck.layout.title.text.startswith("digits_cnn: accuracy vs size")
    texts = [a.text for a in deck.layout.annotations]
    assert any(t.startswith("<b>baseline</b>: fp32") for t in texts)
    assert any(t.startswith("<b>recommended</b>") for t in texts)
    assert not any("Autoscale" in (t or "") for t in texts)
