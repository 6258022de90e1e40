"""Latency scenarios of a run, end to end: one real digits_cnn run timed in three scenarios
(each file built once), stored per row, kept by a resume, read back for a chosen scenario by
the frontier CLI, the report and the Trade-offs page; the sweep form sets the axes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from optim import md, runs, scenario_runs
from optim import scenarios as sc
from optim.build import Settings
from optim.cli import main
from optim.frontier import Constraints
from optim.report import build_report
from optim.store import Store
from optim.tables import split_rows
from optim.techniques import Quantize

APP = Path(__file__).resolve().parents[1] / "app.py"
AXES = ((1, 1), (0, 8), (1, 4, "basic"))  # the run's own timing, all cores x 8, basic opts
LABELS = [sc.Scenario.of(a).label for a in AXES]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("scenario-home")
    url = f"sqlite:///{home / 'runs.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPTIM_HOME", str(home))
        mp.setenv("OPTIM_DB_URL", url)
        store = Store(url)
        settings = Settings(min_seconds=0.02, rounds=2, jobs=1, scenarios=AXES)
        run_id = runs.create(store, "digits_cnn", [(Quantize(4),)], settings)
        runs.execute(store, run_id)
        yield store, run_id


def scenarios_of(store: Store, run_id: int) -> dict[str, dict]:
    return {r.key: r.extra["scenarios"] for r in store.rows(run_id)}


def test_each_scenario_times_every_built_file_and_a_resume_keeps_what_it_has(env):
    store, run_id = env
    rows = store.rows(run_id)
    assert store.run(run_id)["spec"]["settings"]["scenarios"] == [list(a) for a in AXES]
    assert store.run(run_id)["spec"]["summary"].endswith("; latency in 3 scenarios")
    for row in rows:
        per = row.extra["scenarios"]
        assert list(per) == LABELS  # the run's own timing first
        assert per[LABELS[0]]["p50_ms"] == row.latency_p50_ms  # that one is the timing phase
        for f in per.values():
            assert f["items_per_s"] == pytest.approx(1000 * f["batch"] / f["p50_ms"])
            assert f["p50_low"] <= f["p50_ms"] <= f["p50_high"]
        assert per[LABELS[2]]["level"] == "basic"
        assert (
            row.session
            == "ORT graph optimizations: all; 1 intra-op thread, 1 inter-op, sequential"
        )
    files = {r.key: Path(r.artifact) / "model.onnx" for r in rows}
    stamps = {k: f.stat().st_mtime_ns for k, f in files.items()}
    # a run killed during its last scenario: one row lacks it; the resume times only that one
    cut = replace(rows[1], extra={**rows[1].extra, "scenarios": {
        k: v for k, v in rows[1].extra["scenarios"].items() if k != LABELS[2]}})  # fmt: skip
    store.update_rows(run_id, [cut])
    before = scenarios_of(store, run_id)
    runs.execute(store, run_id)
    after = scenarios_of(store, run_id)
    assert {k: f.stat().st_mtime_ns for k, f in files.items()} == stamps  # built once
    for key in after:
        assert after[key][LABELS[1]] == before[key][LABELS[1]]  # kept, not timed again
        assert list(after[key]) == LABELS
    base_key = next(r.key for r in rows if r.is_baseline)
    assert after[base_key][LABELS[2]] != before[base_key][LABELS[2]]  # timed again, together


def test_the_frontier_cli_answers_for_a_scenario_and_lists_flips(env, capsys):
    store, run_id = env
    assert main(["frontier", str(run_id), "--floor", "0", "--scenario", "0x8"]) == 0
    out = capsys.readouterr().out
    assert f"latency measured at {LABELS[1]}" in out and "items/s" in out
    assert f"scenarios: {'; '.join(LABELS)}" in out
    assert "verdict flips between scenarios" in out  # "no verdict flips ..." or the list
    assert "The pick " in out  # "is X in every scenario" or "depends on the scenario: ..."
    assert main(["frontier", str(run_id), "--floor", "0", "--scenario", "3x3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "`--scenario` must be one of" in err, err
    assert "but got '3x3'" in err


def test_the_report_names_its_scenario(env):
    store, run_id = env
    ok = split_rows(store.results(run_id))[0]
    rep = build_report(store.run(run_id), scenario_runs.for_scenario(ok, LABELS[2]),
                       Constraints(0.0))  # fmt: skip
    facts = rep.facts["Latency measured at"]
    assert facts.startswith(f"{LABELS[2]}; the run also timed") and LABELS[1] in facts
    assert "ORT graph optimizations: basic; 1 intra-op thread" in rep.facts["Runtime"]
    assert "batch 1" in build_report(store.run(run_id), ok, Constraints(0.0)).facts[
        "Latency measured at"]  # fmt: skip


def staged(store: Store, run_id: int) -> int:
    """A copy of the run whose scenario figures are set by hand: int4 slower at batch 1 and
    faster at batch 8 (no assertion rests on which config happened to time faster)."""
    run = store.run(run_id)
    new = store.create_run(run["model"], run["spec"], run["env"])
    for row in store.rows(run_id):
        per = {}
        for label, f in row.extra["scenarios"].items():
            p50 = 1.0 if row.is_baseline else (2.0 if f["batch"] == 1 else 0.25)
            verdict = "baseline" if row.is_baseline else ("slower" if p50 > 1 else "faster")
            per[label] = {**f, "p50_ms": p50, "p50_low": 0.99 * p50, "p50_high": 1.01 * p50,
                          "speed_verdict": verdict, "speedup": 1 / p50, "speedup_low": 0.98 / p50,
                          "speedup_high": 1.02 / p50, "items_per_s": 1000 * f["batch"] / p50}  # fmt: skip
        main_ = per[LABELS[0]]
        row = replace(row, latency_p50_ms=main_["p50_ms"], p50_low=main_["p50_low"],
                      p50_high=main_["p50_high"], speed_verdict=main_["speed_verdict"],
                      speedup=main_["speedup"], speedup_low=main_["speedup_low"],
                      speedup_high=main_["speedup_high"],
                      extra={**row.extra, "scenarios": per})  # fmt: skip
        store.add_result(new, json.loads(row.key), row)
    store.set_status(new, "done")
    return new


def test_the_tradeoffs_page_follows_the_chosen_scenario_and_lists_flips(env):
    store, run_id = env
    new = staged(store, run_id)
    ok = split_rows(store.results(new))[0]
    int4 = ok.loc[~ok["is_baseline"], "label"].iloc[0]
    assert scenario_runs.flip_lines(ok) == [
        f"{int4}: faster at {LABELS[1]} and at {LABELS[2]}; slower at {LABELS[0]}"
    ]
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.session_state["model"] = "digits_cnn"
    at.query_params["page"], at.query_params["run"] = "tradeoffs", str(new)
    at.run()
    assert not at.exception, at.exception
    box = at.selectbox(key="scenario")
    assert box.label == "Latency measured at" and box.options == LABELS
    at.session_state["scenario_flips"] = True  # open the expander
    at.run()
    flips = next(
        e for e in at.expander if e.label == "Where the scenario changes the verdict: 1 config"
    )
    assert int4 in flips.markdown[1].value and "faster at" in flips.markdown[1].value
    at.session_state["prefer"] = "latency"
    at.session_state["floor"] = 0.0
    at.run()
    flips = next(e for e in at.expander if e.label.startswith("Where the scenario changes"))
    assert flips.markdown[0].value == md.plain(
        f"The pick depends on the scenario: {ok.loc[ok['is_baseline'], 'label'].iloc[0]} at "
        f"{LABELS[0]}; {int4} at {LABELS[1]} and at {LABELS[2]}"
    )  # at batch 1 the baseline is fastest, at batch 4 and 8 int4
    first = [m.value for m in at.metric]
    box.set_value(LABELS[1]).run()
    assert not at.exception, at.exception
    assert [m.value for m in at.metric] != first  # the pick and its figures follow
    at.session_state["all_configs"] = True
    at.run()
    (table,) = at.dataframe
    assert "items/s" in table.value.columns and (table.value["items/s"] > 0).all()
    assert set(table.value["p50_ms"]) == {1.0, 0.25}
    assert at.query_params["scenario"] in (LABELS[1], [LABELS[1]])  # in the link
    linked = AppTest.from_file(str(APP), default_timeout=90)
    linked.query_params.update(page="tradeoffs", run=str(new), scenario=LABELS[1])
    assert linked.run().selectbox(key="scenario").value == LABELS[1]


def test_the_sweep_form_sets_the_scenario_axes(env):
    store, _ = env
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.session_state["model"] = "digits_cnn"
    at.query_params["page"] = "sweep"
    at.run()
    at.multiselect(key="sweep_bits").set_value([4])
    at.multiselect(key="sweep_sparsity").set_value([0.0])
    at.multiselect(key="sweep_scenario_threads").set_value([1, 0])
    at.multiselect(key="sweep_scenario_batches").set_value([8]).run()
    before = set(store.runs()["id"])
    at.button[[b.label for b in at.button].index("Run sweep")].click().run()
    assert not at.exception, at.exception
    (new,) = set(store.runs()["id"]) - before
    assert store.run(int(new))["spec"]["settings"]["scenarios"] == [[1, 8], [0, 8]]
    runs.cancel(store, int(new))
    store.delete_run(int(new))


def test_settings_store_scenarios_and_old_runs_still_load():
    old = {"threads": 1, "seed": 0, "jobs": 0, "min_seconds": 0.5, "rounds": 20}
    assert Settings.from_json(old).scenarios == ()
    s = Settings.from_json({**old, "scenarios": [[1, 8], [0, 32, "basic"]]})
    assert s.scenarios == ((1, 8), (0, 32, "basic"))
    assert json.loads(json.dumps(s.__dict__))["scenarios"] == [[1, 8], [0, 32, "basic"]]
    assert sc.parse("1x1, 2x8,0x32:disabled") == ((1, 1), (2, 8), (0, 32, "disabled"))
    with pytest.raises(ValueError, match=r"a scenario must read THREADSxBATCH.*but got '2y8'"):
        sc.parse("1x1,2y8")
    with pytest.raises(ValueError, match=r"`batch >= 1` must hold, but got batch=0"):
        Settings(scenarios=[[1, 0]])
    with pytest.raises(ValueError, match=r"`level` must be one of .* but got level='fast'"):
        sc.parse("1x1:fast")
    assert sc.cross([], [8]) == ()
