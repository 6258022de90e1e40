"""The Sensitivity page (AppTest) and its figure."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from optim.sensitivity import sensitivity
from optim.sensitivity_chart import sensitivity_figure

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_sensitivity_figure_has_one_cell_per_layer_and_setting():
    df = sensitivity("digits_cnn", bits=(2, 8), sparsities=(0.5,))
    fig = sensitivity_figure(df)
    heat = fig.data[0]
    assert heat.type == "heatmap"
    assert list(heat.x) == ["int8", "int2", "prune 50%"]
    assert len(heat.y) == df["layer"].nunique() == len(heat.z)
    assert sensitivity_figure(df.iloc[:0]).data == ()


def test_sensitivity_page_renders_the_heatmap(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIM_DB_URL", f"sqlite:///{tmp_path / 'runs.db'}")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/sensitivity.py").run()
    assert not at.exception
    at.multiselect(key="sens_bits").set_value([2, 8]).run()
    at.multiselect(key="sens_sparsity").set_value([0.5]).run()
    assert not at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["data"][0]["type"] == "heatmap"
    assert any("Most sensitive" in m.value for m in at.markdown)


def test_sweep_page_starts_a_background_search(tmp_path, monkeypatch):
    """The Sweep page's search form creates a search run and launches its worker."""
    import time

    from optim.store import Store

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    monkeypatch.setenv("OPTIM_DB_URL", url)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/sweep.py").run()
    at.number_input(key="search_trials").set_value(4).run()
    next(b for b in at.button if b.label == "Run search").click().run()
    assert not at.exception
    store = Store(url)
    run = store.run(int(store.runs().iloc[0]["id"]))
    assert run["spec"]["search"]["trials"] == 4
    deadline = time.time() + 240
    while time.time() < deadline and store.run(run["id"])["status"] in ("pending", "running"):
        time.sleep(1)
    assert store.run(run["id"])["status"] == "done", store.run(run["id"])["error"]
    assert len(store.results(run["id"])) >= 2


def test_layers_are_named_by_kind_and_shape_not_by_initializer():
    from optim.build import build
    from optim.sensitivity import layer_names
    from optim.sources import get_source

    graph, _ = build(get_source("digits_cnn"), ())
    names = layer_names(graph.model)
    assert names["0.weight"] == "conv 1 (1→32, 3×3)"
    assert names["2.weight"] == "conv 2 (32→64, 3×3)"
    assert names["9.weight"] == "linear 1 (256→10)"
