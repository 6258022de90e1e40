"""Shared links and chart clicks in a real browser: every screen's address opens that screen.

A copied link, a reload, a typed path and the first deep link after a server restart must open
their screen with no "Page not found" dialog; clicking one point of a Trade-offs chart selects
its config. A tiny cancer_mlp sweep (three configs, ~20 s) is stored before the server starts.
Screenshots: ``test-artifacts/screenshots/links-*.png``.
"""

from __future__ import annotations

import urllib.parse
import urllib.request

import pytest

from optim.charts import short_id
from optim.store import Store
from optim.tables import split_rows
from tests.browser import (
    SHOTS,
    Server,
    require_chromium,
    settle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VIEWPORT = {"width": 1400, "height": 1800}
TITLES = {  # url path -> the screen's sidebar entry and its h1
    "models": ("Models", "Models"),
    "sweep": ("Sweep", "Sweep"),
    "tradeoffs": ("Trade-offs", "Trade-offs"),
    "sensitivity": ("Sensitivity", "Sensitivity"),
    "compare": ("Compare runs", "Compare"),
    "export": ("Export", "Export"),
    "glossary": ("Glossary", "Glossary"),
}

sync_api = require_chromium()


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server over a store that holds one finished three-config cancer_mlp run."""
    import optim.sweep as sw

    home = tmp_path_factory.mktemp("links-home")
    srv = Server(home)
    with pytest.MonkeyPatch.context() as mp:  # artifacts under this server's home
        mp.setenv("OPTIM_HOME", str(home))
        mp.setenv("OPTIM_DB_URL", srv.url)
        grid = sw.grid(bits=(4, 8, 32), sparsity=(0.0,))
        sw.sweep("cancer_mlp", grid, sw.Settings(min_seconds=0.05, jobs=1), store=Store(srv.url))
    SHOTS.mkdir(parents=True, exist_ok=True)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


# ------------------------------------------------------------------ helpers


def on_screen(page, name: str, shot: str) -> None:
    """The page shows screen ``name`` in the frame, at its own address, with no dialog."""
    _, h1 = TITLES[name]
    page.wait_for_selector(f"h1:has-text('{h1}')", timeout=60_000)
    settle(page)
    page.wait_for_function(  # every element drawn (a fresh session shows skeletons first)
        "() => !document.querySelector(\"[data-testid^='stSkeleton']\")", timeout=30_000
    )
    page.wait_for_timeout(400)  # the "Page not found" dialog comes with the script's first run
    page.screenshot(path=str(SHOTS / f"links-{shot}.png"), full_page=True)
    assert page.get_by_text("Page not found").count() == 0, (shot, page.url)
    assert page.get_by_role("dialog").count() == 0, (shot, page.url)
    assert urllib.parse.urlsplit(page.url).path == f"/{name}", (shot, page.url)
    assert page.locator("[data-testid='stSidebarNavLink']").count() == len(TITLES), shot
    assert page.locator("[data-testid='stSidebar']").get_by_text("Run", exact=True).count()
    assert page.locator("[data-testid='stException']").count() == 0, shot
    assert page.get_by_text("Something went wrong").count() == 0, shot


def fresh_visit(browser, url: str, name: str, shot: str) -> str:
    """Open ``url`` in a browser context that has never seen this app; returns its URL."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(url)
        on_screen(page, name, shot)
        return page.url
    finally:
        context.close()


# ------------------------------------------------------------------ tests


RELOADED = ("tradeoffs", "export")  # the screens whose reload is checked as well


def test_every_screens_link_reopens_it_without_page_not_found(server, browser):
    """Visit each screen from the sidebar, copy ``page.url``, open it in a fresh browser and
    reload it; ``/`` and a legacy ``/?page=`` link forward to the screen's own address."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(server.base)
    on_screen(page, "tradeoffs", "root")  # "/" opens Trade-offs, at /tradeoffs
    for name, (nav, _) in TITLES.items():
        page.locator("[data-testid='stSidebarNavLink']", has_text=nav).click()
        on_screen(page, name, f"{name}-visited")
        copied = page.url
        assert "page=" not in copied  # the path names the screen
        assert fresh_visit(browser, copied, name, f"{name}-shared") == copied
        if name in RELOADED:  # a reload is a fresh session at the same address, like a link
            page.reload()
            on_screen(page, name, f"{name}-reloaded")
            assert page.url == copied
    context.close()
    run = int(Store(server.url).runs()["id"].max())
    fresh_visit(browser, f"{server.base}/tradeoffs", "tradeoffs", "typed")
    got = fresh_visit(browser, f"{server.base}/?page=export&run={run}", "export", "legacy")
    assert got == f"{server.base}/export?run={run}"


def test_a_deep_link_is_the_first_request_after_a_restart(server, browser):
    """A fresh server process has not called ``st.navigation`` yet: the first request, a deep
    link, still opens its screen in the frame with the link's state."""
    run = int(Store(server.url).runs()["id"].max())
    server.stop()
    server.start()
    link = f"{server.base}/export?run={run}&prefer=latency"
    assert fresh_visit(browser, link, "export", "restart-export") == link
    fresh_visit(browser, f"{server.base}/sweep", "sweep", "restart-then-sweep")


def test_clicking_a_chart_point_selects_its_config(server, browser):
    """One click on a Trade-offs point: the config lands in "Inspect configs", its details
    table appears and the selection is in the URL (the chart's box-select is in its toolbar)."""
    store = Store(server.url)
    run = int(store.runs()["id"].max())
    rows = split_rows(store.results(run))[0]
    target = rows.loc[rows["label"].str.startswith("int8")].iloc[0]
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(f"{server.base}/tradeoffs?run={run}")
    on_screen(page, "tradeoffs", "click-before")
    chart = page.locator("[data-testid='stPlotlyChart']").first
    chart.locator(".main-svg").first.wait_for(state="attached", timeout=30_000)
    tables = page.locator("[data-testid='stDataFrame']")
    before = tables.count()  # the details table comes with a selection

    # the point of the target config in the size chart, found by its hover label
    xy = page.evaluate(
        """(id) => {
            const gd = document.querySelector("[data-testid='stPlotlyChart'] .js-plotly-plot");
            const l = gd._fullLayout;
            for (const t of gd._fullData) {
                const i = (t.ids || []).indexOf(id);
                if (i < 0 || t.hoverinfo === "skip") continue;
                const r = gd.getBoundingClientRect();
                return [r.left + l._size.l + l.xaxis.l2p(l.xaxis.d2l(t.x[i])),
                        r.top + l._size.t + l.yaxis.l2p(l.yaxis.d2l(t.y[i]))];
            }
            return null;
        }""",
        short_id(target["key"]),
    )
    assert xy, "the target config is not on the chart"
    page.mouse.move(*xy)
    page.wait_for_timeout(200)
    page.mouse.click(*xy)
    page.wait_for_function(
        "id => location.search.includes('selected=' + id)", arg=short_id(target["key"])
    )
    settle(page)
    tables.nth(before).wait_for(timeout=30_000)
    settle(page)
    picked = page.locator(".st-key-selected")
    page.screenshot(path=str(SHOTS / "links-click-selected.png"), full_page=True)
    assert target["label"] in picked.inner_text()
    assert page.locator("[data-testid='stException']").count() == 0
