"""The floor's rules (optim.frontier, hand-computed) and the dashboard controls built on them:
the floor slider and its exact box, Compare sharing the floor, the budgets and the Sweep form's
fields. AppTest runs against tests/test_app.py's real digits_cnn sweep (its fixtures, reused)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import tests.test_app as ta
from optim import frontier as fr
from optim import plan as plans
from optim.tables import split_rows
from optim.view_state import default_floor

store, run_id, rows = ta.store, ta.run_id, ta.rows  # module fixtures: one sweep for this file
app, healthy, param, figure, shape, headline = (
    ta.app, ta.healthy, ta.param, ta.figure, ta.shape, ta.headline)  # fmt: skip


# ------------------------------------------------------------------ the rules, by hand


def test_default_floor_is_a_point_under_the_baseline_or_99_percent_of_it():
    assert fr.default_floor(0.9731, relative=False) == 0.963
    assert fr.default_floor(0.005, relative=False) == 0.0  # never below 0
    assert fr.default_floor(0.9731, relative=True) == 0.99
    assert fr.default_floor(None, relative=False) == 0.99  # no rows to go by


def test_floor_range_spans_ten_points_under_the_baseline_to_100_percent():
    assert fr.floor_range(0.9725, relative=False) == (0.87, 1.0)  # floor(87.25) %
    # relative: the same accuracies, as shares of 0.9725: 0.8725 / 0.9725 = 0.897..; 1 / 0.9725
    assert fr.floor_range(0.9725, relative=True) == (0.89, 1.03)
    assert fr.floor_range(0.05, relative=False) == (0.0, 1.0)  # clipped at the limit
    assert fr.floor_range(0.9725, relative=False, full=True) == (0.0, 1.0)
    assert fr.floor_range(0.9725, relative=True, full=True) == (0.01, 1.03)
    assert fr.floor_range(None, relative=False) == fr.FLOOR_LIMITS[False]
    assert fr.floor_range(0.9725, relative=False, current=0.29) == (0.29, 1.0)  # kept in range
    assert fr.floor_range(0.9725, relative=False, current=1.7) == (0.87, 1.0)  # clamped first


def test_clamp_floor_keeps_what_constraints_accept():
    assert fr.clamp_floor(1.2, relative=False) == 1.0
    assert fr.clamp_floor(-0.1, relative=False) == 0.0
    assert fr.clamp_floor(0.0, relative=True) == 0.01
    assert fr.clamp_floor(2.0, relative=True) == 1.5
    assert fr.clamp_floor(0.3, relative=False) == 0.3  # a low floor stays low
    for relative in (False, True):
        for value in (-1.0, 0.0, 0.3, 1.0, 1.6):
            fr.Constraints(fr.clamp_floor(value, relative), relative)  # never raises


def test_convert_floor_switches_units_without_moving_the_floor():
    assert fr.convert_floor(0.96, 0.96, to_relative=True) == 1.0
    assert fr.convert_floor(0.5, 0.8, to_relative=True) == 0.625
    assert fr.convert_floor(0.9, 0.96, to_relative=False) == 0.864
    assert fr.convert_floor(0.3, 0.5, to_relative=True) == 0.6  # below 50 %: converted, kept
    assert fr.convert_floor(0.3, None, to_relative=True) == 0.99  # nothing to convert against


def test_class_shares_are_recovered_from_rows_on_the_same_examples():
    # shares (0.7, 0.3): accuracy = 0.7 * acc_0 + 0.3 * acc_1
    got = fr.class_shares(np.array([[1.0, 0.0], [0.5, 1.0]]), np.array([0.7, 0.65]))
    assert got == pytest.approx([0.7, 0.3])
    assert fr.class_shares(np.array([[0.5, 0.5]]), np.array([0.5])) is None  # one equation
    assert fr.class_shares(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.9, 0.9])) is None


def test_chance_is_guessing_or_always_answering_the_commonest_class():
    df = pd.DataFrame({"accuracy": [0.5, 0.3, 0.2],
                       "class_acc": [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]})  # fmt: skip
    assert fr.chance_accuracy(df) == (pytest.approx(0.5), "always answering class 0")
    flat = pd.DataFrame({"accuracy": [0.4], "class_acc": [[0.4, 0.4, 0.4]]})
    assert fr.chance_accuracy(flat) == (pytest.approx(1 / 3), "guessing among 3 classes")
    assert fr.chance_accuracy(pd.DataFrame({"accuracy": [0.9]})) is None


def test_floor_warning_near_chance_or_far_below_the_baseline():
    near = fr.floor_warning(0.347, 0.97, (1 / 3, "guessing among 3 classes"))
    assert "34.7 %" in near and "33.3 % of guessing among 3 classes" in near
    far = fr.floor_warning(0.80, 0.97, (0.1, "guessing among 10 classes"))
    assert "17.0 points below the baseline's 97.0 %" in far
    assert fr.floor_warning(0.96, 0.97, (0.1, "guessing among 10 classes")) is None
    assert fr.floor_warning(0.96, None) is None


# ------------------------------------------------------------------ Trade-offs: the floor


def base_acc(rows) -> float:
    return float(rows.loc[rows["is_baseline"], "accuracy"].iloc[0])


def test_the_slider_spans_the_baseline_minus_ten_points_unless_widened(store, run_id, rows):
    at = healthy(app(run=run_id))
    slider = at.slider(key="floor")
    assert slider.min == pytest.approx(math.floor(100 * (base_acc(rows) - 0.1)) / 100)
    assert slider.max == pytest.approx(1.0)
    assert slider.value == pytest.approx(default_floor(rows, relative=False))
    at.toggle(key="floor_full").set_value(True).run()
    assert healthy(at).slider(key="floor").min == pytest.approx(0.0)


def test_the_exact_box_moves_the_floor_and_follows_the_slider(store, run_id, rows):
    at = healthy(app(run=run_id))
    at.number_input(key="floor_box").set_value(97.25).run()
    healthy(at)
    assert at.slider(key="floor").value == pytest.approx(0.9725)
    assert shape(figure(at), "floor")["y0"] == pytest.approx(0.9725)
    want = fr.recommend(rows, fr.Constraints(0.9725))
    assert (f"ship **{ta.label_of(rows, want.key)}**" in headline(at)) if want.key else True
    assert param(at, "floor") == "0.9725"
    at.slider(key="floor").set_value(0.95).run()
    assert healthy(at).number_input(key="floor_box").value == pytest.approx(95.0)


def test_a_near_chance_recommendation_is_flagged(store, run_id):
    """A copy of the run with one config that scores 12 % on ten classes (its per-class
    accuracies say so too) and is the smallest: at a 11 % floor it is what ships."""
    run = store.run(run_id)
    new = store.create_run(run["model"], run["spec"], run["env"])
    stored = store.rows(run_id)
    smallest = min(r.size_bytes for r in stored)
    for row in stored:
        if not row.is_baseline and row.size_bytes == smallest:
            row = replace(row, accuracy=0.12, acc_low=0.1, acc_high=0.14, size_bytes=smallest - 1,
                          class_acc=[0.12] * 10, worst_class_acc=0.12)  # fmt: skip
        plan = next(p for p in run["spec"]["plans"] if plans.key(plans.from_json(p)) == row.key)
        store.add_result(new, plan, row)
    store.set_status(new, "done")
    try:
        at = healthy(app(run=new, floor=0.11))
        assert at.slider(key="floor").value == pytest.approx(0.11)  # kept, below the range
        warnings = [w.value for w in at.warning]
        assert any("12.0 %" in w and "learned next to nothing" in w for w in warnings), warnings
        at.slider(key="floor").set_value(round(base_acc(split_rows(store.results(new))[0])
                                                - 0.01, 3)).run()  # fmt: skip
        assert not any("next to nothing" in w.value for w in healthy(at).warning)
    finally:
        store.delete_run(new)


def test_compare_keeps_a_floor_below_50_percent_and_converts_it(store, run_id, rows):
    at = healthy(app(run=run_id, floor=0.3))
    at.switch_page("pages/compare.py").run()
    healthy(at)
    assert at.slider(key="floor").value == pytest.approx(0.3)
    assert at.session_state["floor"] == pytest.approx(0.3)
    at.switch_page("pages/tradeoffs.py").run()
    assert healthy(at).slider(key="floor").value == pytest.approx(0.3)
    at.switch_page("pages/compare.py").run()
    at.toggle(key="relative").set_value(True).run()  # converts, as on Trade-offs
    assert healthy(at).session_state["floor"] == pytest.approx(round(0.3 / base_acc(rows), 3))


# ------------------------------------------------------------------ Trade-offs: budgets


def test_a_cleared_budget_shows_none_and_small_budgets_show_their_digits(store, run_id):
    at = healthy(app(run=run_id, max_size_mb=0.5))
    box = at.number_input(key="max_size_mb")
    assert box.value == pytest.approx(0.5)
    assert box.proto.format % 0.0001 == "0.0001"  # noqa: UP031 - the browser applies printf
    box.set_value(None).run()
    box = healthy(at).number_input(key="max_size_mb")
    assert box.value is None and box.proto.placeholder == "none"
    assert param(at, "max_size_mb") is None
    assert not [s for s in figure(at)["layout"].get("shapes", []) if s.get("name") == "budget"]


def test_a_size_budget_in_kb_enforces_kilobytes(store, run_id, rows):
    sizes = sorted(rows["size_bytes"])
    kb = (sizes[0] + sizes[1]) / 2 / 1000  # between the two smallest configs
    at = healthy(app(run=run_id, floor=0.5))
    at.selectbox(key="size_unit").set_value("KB").run()
    at.number_input(key="max_size_kb").set_value(round(kb, 3)).run()
    healthy(at)
    assert at.number_input(key="max_size_kb").proto.label == "Size budget (KB)"
    assert shape(figure(at), "budget")["x0"] == pytest.approx(round(kb, 3) * 1000)
    want = fr.recommend(rows, fr.Constraints(0.5, max_size_bytes=round(kb, 3) * 1000))
    assert f"ship **{ta.label_of(rows, want.key)}**" in headline(at)
    assert float(param(at, "max_size_mb")) == pytest.approx(round(kb, 3) / 1000)
    at.selectbox(key="size_unit").set_value("MB").run()  # the same budget, in MB
    assert healthy(at).number_input(key="max_size_mb").value == pytest.approx(kb / 1000, 1e-3)


def test_a_negative_budget_states_the_rule_and_applies_none(store, run_id):
    at = healthy(app(run=run_id, floor=0.5))
    at.number_input(key="max_size_mb").set_value(-1.0).run()
    healthy(at)
    assert any("`size budget > 0` must hold, but got -1 MB" in e.value for e in at.error)
    assert "ship **" in headline(at) and "budget" not in headline(at)


# ------------------------------------------------------------------ Sweep: form fields


def run_button(at, label: str = "Run sweep"):
    return next(b for b in at.button if b.label == label)


@pytest.mark.parametrize(
    "key, value, rule, button",
    [
        ("sweep_threads", 99, "`1 <= threads <= ", "Run sweep"),
        ("sweep_rounds", 0, "`2 <= rounds <= 200` must hold, but got rounds=0", "Run sweep"),
        ("search_trials", 9999, "`4 <= trials <= 500` must hold, but got trials=9999",
         "Run search"),
        ("search_seed", -5, "`0 <= seed <= 10000` must hold, but got seed=-5", "Run search"),
    ],
)  # fmt: skip
def test_an_invalid_field_turns_run_off_and_states_the_rule(store, key, value, rule, button):
    at = healthy(app(page="sweep", model="digits_cnn"))
    assert not run_button(at, button).disabled
    at.number_input(key=key).set_value(value).run()
    healthy(at)
    assert run_button(at, button).disabled
    assert any(rule in e.value for e in at.error), [e.value for e in at.error]
    at.number_input(key=key).set_value(4 if "trials" in key else 1 if "seed" in key else 2).run()
    assert not run_button(healthy(at), button).disabled and not at.error


def test_emptying_scales_says_a_scale_is_missing(store):
    at = healthy(app(page="sweep", model="digits_cnn"))
    at.multiselect(key="sweep_granularity").set_value([]).run()
    healthy(at)
    texts = [w.value for w in at.warning]
    assert any("Pick a scale (channel or tensor)" in t for t in texts), texts
    assert not any("bit-width" in t or "sparsity" in t for t in texts)
    assert run_button(at).disabled and at.metric[0].value == "0"
