"""The dashboard end to end: a real server, a real sweep, headless Chromium.

One journey, as a user would take it: run a small digits_cnn sweep from the Sweep page, read
the recommendation on Trade-offs, raise the floor with the keyboard, open the shared link in a
fresh browser, download the shipped .onnx from Export. Full-page screenshots of every page
land in ``test-artifacts/screenshots/`` (printed at the end of the run): look at them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from optim import frontier as fr
from optim.charts import short_id
from optim.store import Store
from optim.tables import split_rows
from optim.view_state import default_floor
from tests.browser import (
    SHOTS,
    Server,
    require_chromium,
    settle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VIEWPORT = {"width": 1400, "height": 2400}  # tall: streamlit scrolls inside its own container
SWEEP_SECONDS = 150  # six configs on two busy cores take ~30-60 s

sync_api = require_chromium()


class _ScreenshotReport:
    """Prints where the screenshots are, at the end of the run (with or without ``-s``)."""

    def pytest_terminal_summary(self, terminalreporter) -> None:
        terminalreporter.write_sep("-", "dashboard screenshots")
        terminalreporter.write_line(str(SHOTS))


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    """``streamlit run app.py`` on a free port with its own OPTIM_HOME and run store."""
    srv = Server(tmp_path_factory.mktemp("e2e-home"))
    srv.start()
    if not request.config.pluginmanager.has_plugin("e2e-screenshots"):
        request.config.pluginmanager.register(_ScreenshotReport(), "e2e-screenshots")
    global SERVER
    SERVER = srv  # the journey restarts it
    try:
        yield srv.base, Store(srv.url)
    finally:
        srv.stop()


SERVER: Server | None = None


# ------------------------------------------------------------------ helpers


def healthy(page, name: str) -> None:
    """No exception on the page, no fault caught by the page guard; then a screenshot."""
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert page.locator("[data-testid='stException']").count() == 0, name
    assert page.get_by_text("Something went wrong").count() == 0, name


def open_page(page, title: str, timeout: float = 60_000) -> None:
    """Click ``title`` in the sidebar and wait for its heading; on a timeout, say what the page
    showed instead (and keep a screenshot)."""
    from playwright.sync_api import TimeoutError as Timeout

    page.locator("[data-testid='stSidebarNavLink']", has_text=title).click()
    try:
        page.wait_for_selector(f"h1:has-text('{title}')", timeout=timeout)
    except Timeout:
        page.screenshot(path=str(SHOTS / f"failed-open-{title}.png"), full_page=True)
        shown = " ".join(page.locator("body").inner_text().split())[:600]
        raise AssertionError(f"{title!r} did not open in {timeout / 1000:.0f} s: {page.url} "
                             f"showed {shown!r}") from None  # fmt: skip
    settle(page)


def charts_rendered(page) -> None:
    """Both trade-off charts are on the page and plotly has drawn into them."""
    charts = page.locator("[data-testid='stPlotlyChart']")
    for i in range(2):
        charts.nth(i).locator(".main-svg").first.wait_for(state="attached", timeout=30_000)
    assert charts.count() == 2


def headline(page) -> str:
    """The recommendation card's text (the sentence, or why nothing qualifies, and figures)."""
    return page.locator(".st-key-headline").inner_text().strip()


def wait_for_text(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([sel, text]) => (document.querySelector(sel)?.innerText || '').includes(text)",
        arg=[selector, text],
    )


def floor_shown(page) -> str:
    return page.locator(".st-key-floor [data-testid='stSliderThumbValue']").inner_text()


def move_floor(page, target: float) -> None:
    """Move the floor slider to ``target`` with the keyboard, one rerun per key press (keys
    pressed during a rerun can be lost); End first when the top is nearer."""
    thumb = page.locator(".st-key-floor").get_by_role("slider")
    thumb.focus()
    if float(thumb.get_attribute("max")) - target < target - float(thumb.input_value()):
        thumb.press("End")
    for _ in range(200):
        settle(page)
        now = float(thumb.input_value())
        if abs(now - target) < 5e-4:
            page.wait_for_timeout(400)  # a rerun of an earlier key may still be on its way
            settle(page)
            if abs(float(thumb.input_value()) - target) < 5e-4:
                return
            continue
        thumb.press("ArrowRight" if now < target else "ArrowLeft")
    raise AssertionError(f"the floor slider did not reach {target}")


# ------------------------------------------------------------------ the journey


def test_sweep_tradeoffs_shared_link_and_export(server, browser, tmp_path):
    base, store = server
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.goto(base)
    settle(page)
    page.get_by_text("No runs yet").first.wait_for(timeout=60_000)  # an empty store: welcome
    healthy(page, "01-welcome")

    # one click: the quick sweep, digits_cnn, bits 4, 8, 32 x sparsity 0, 50 %
    page.get_by_role("button", name="Run a quick sweep on digits_cnn").click()
    settle(page)
    open_page(page, "Sweep")  # the running grid, read-only, with its progress
    page.get_by_text(re.compile(r"is measuring this grid: 6 configs")).wait_for()
    assert page.locator(".st-key-sweep_bits").count() == 0  # no form that pretends to be it
    healthy(page, "02-sweep-running-grid")
    done = page.get_by_text(re.compile(r"6 of 6 configs — done"))
    done.wait_for(timeout=SWEEP_SECONDS * 1000)
    settle(page)
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=30_000)  # the streamed rows
    healthy(page, "03-sweep-done")

    (run_id,) = store.runs()["id"]
    rows = split_rows(store.results(int(run_id)))[0]
    assert len(rows) == 6

    # Trade-offs: both charts, the recommendation at the default floor
    open_page(page, "Trade-offs")
    charts_rendered(page)
    before, floor = headline(page), default_floor(rows, relative=False)
    first = fr.recommend(rows, fr.Constraints(floor))
    assert floor_shown(page) == f"{100 * floor:.1f}%"
    assert f"ship {rows.set_index('key').loc[first.key, 'label']}" in before
    page.locator(".st-key-all_configs summary").click()  # the table renders once opened
    page.locator(".st-key-all_configs [data-testid='stDataFrame']").wait_for()
    settle(page)
    healthy(page, "04-tradeoffs")

    # raise the floor just past the recommended config's accuracy, with the keyboard
    picked = float(rows.set_index("key").loc[first.key, "accuracy"])
    target = round(math.floor(picked * 1000 + 1e-6) / 1000 + 0.001, 3)
    move_floor(page, target)
    assert floor_shown(page) == f"{100 * target:.1f}%"
    rec = fr.recommend(rows, fr.Constraints(target))
    label = rows.set_index("key").loc[rec.key, "label"] if rec.key else None
    wait_for_text(page, ".st-key-headline", f"ship {label}" if label else "No config reaches")
    page.wait_for_function("t => location.search.includes(t)", arg=f"floor={target:g}")
    settle(page)
    after = headline(page)
    assert after != before and f"run={run_id}" in page.url
    charts_rendered(page)

    # box-select every point of the size chart (the toolbar's Box Select, since a plain drag
    # zooms and a click selects one point): the picks land in "Inspect configs" and the URL
    chart = page.locator("[data-testid='stPlotlyChart']").first
    chart.hover()
    chart.locator(".modebar-btn[data-val='select']").first.click()
    area = chart.locator("rect.nsewdrag").first
    box = area.bounding_box()
    page.mouse.move(box["x"] + 3, box["y"] + 3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 3, box["y"] + box["height"] - 3, steps=8)
    page.mouse.up()
    every = ",".join(sorted(short_id(k) for k in rows["key"]))
    page.wait_for_function("() => location.search.includes('selected=')")
    settle(page)
    picked = re.search(r"selected=([^&]+)", page.url).group(1).replace("%2C", ",")
    assert ",".join(sorted(picked.split(","))) == every
    for label in rows.loc[~rows["is_baseline"], "label"]:
        assert label in page.locator(".st-key-selected").inner_text()
    healthy(page, "05-tradeoffs-floor-raised-selected")

    # the shared link, in a browser that has never seen this session
    shared = page.url
    other = browser.new_context(viewport=VIEWPORT)
    fresh = other.new_page()
    fresh.goto(shared)
    settle(fresh)
    charts_rendered(fresh)
    assert floor_shown(fresh) == f"{100 * target:.1f}%"
    sentence = ".st-key-headline-text"  # the card's figures may still be drawing
    wait_for_text(fresh, sentence, page.locator(sentence).inner_text().strip())
    picks = page.locator(".st-key-selected").inner_text()
    wait_for_text(fresh, ".st-key-selected", picks)  # the widget may still be drawing
    assert fresh.locator(".st-key-selected").inner_text() == picks
    healthy(fresh, "06-shared-link")
    other.close()

    # Export: the shipped .onnx of the recommended (or closest) config, byte for byte
    open_page(page, "Export")
    key = rec.key or rec.closest_key
    row = rows.set_index("key").loc[key]
    assert row["label"] in page.locator(".st-key-export_config input").input_value()
    button = page.get_by_role("button", name="model.onnx", exact=True)
    with page.expect_download() as download:
        button.click()
    got = Path(download.value.path()).read_bytes()
    assert got and got == (Path(row["artifact"]) / "model.onnx").read_bytes()
    assert download.value.suggested_filename == "model.onnx"
    settle(page)
    healthy(page, "07-export")

    # the other pages render too
    open_page(page, "Compare runs")
    charts = page.locator("[data-testid='stPlotlyChart']")
    charts.nth(1).locator(".main-svg").first.wait_for(state="attached")
    healthy(page, "08-compare")
    open_page(page, "Models")
    page.locator("[data-testid='stPlotlyChart']").first.wait_for(timeout=60_000)
    settle(page)
    healthy(page, "09-models")
    context.close()  # Sensitivity: test_sensitivity_page_in_the_browser


def test_sensitivity_page_in_the_browser(server, browser):
    """The Sensitivity heatmap renders in a real browser, with the most sensitive layers named."""
    base, _ = server
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(base)
    settle(page)
    open_page(page, "Sensitivity")
    page.locator("[data-testid='stPlotlyChart'] .main-svg").first.wait_for(
        state="attached", timeout=60_000
    )
    assert page.get_by_text("Most sensitive:").count() >= 1
    healthy(page, "11-sensitivity")


def test_a_distillation_sweep_in_the_browser(server, browser):
    """Pick a distilled student on the Sweep page, run it, and find the students on Trade-offs
    as families of their own, next to the quantized originals."""
    base, store = server
    before = set(store.runs()["id"])
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(base)
    settle(page)
    open_page(page, "Sweep")
    page.locator(".st-key-model button[aria-label='Open']").click()
    page.get_by_role("option", name=re.compile(r"^digits_cnn")).click()
    settle(page)
    # a small grid: int4 and fp32, no pruning, for the model and a half-width student
    for key, tag in (("sweep_bits", "8 (int8)"), ("sweep_sparsity", "50%")):
        page.locator(f".st-key-{key}").get_by_role("button", name=f"Remove {tag}").click()
        settle(page)
    page.locator(".st-key-sweep_students input").click()
    page.get_by_role("option", name="50% width").click()
    page.keyboard.press("Escape")
    settle(page)
    assert "50% width" in page.locator(".st-key-sweep_students").inner_text()
    wait_for_text(page, "[data-testid='stMetricValue']", "4")  # the rerun may still be drawing
    assert page.locator("[data-testid='stMetricValue']").first.inner_text() == "4"
    healthy(page, "12-distill-sweep-grid")
    page.get_by_role("button", name="Run sweep").click()
    page.get_by_text(re.compile(r"4 of 4 configs — done")).wait_for(timeout=SWEEP_SECONDS * 1000)
    settle(page)
    page.locator("[data-testid='stDataFrame']").first.wait_for()  # the streamed rows
    healthy(page, "13-distill-sweep-done")
    (new,) = set(store.runs()["id"]) - before
    labels = set(store.results(int(new))["label"])
    assert len(labels) == 4 and "distill 50% width + int4 w/channel" in labels

    open_page(page, "Trade-offs")
    charts_rendered(page)
    legend = page.locator("[data-testid='stPlotlyChart']").first.locator(".legendtext")
    names = set(legend.all_text_contents())
    assert {"distill", "distill + quantize", "quantize"} <= names, names
    healthy(page, "14-distill-tradeoffs")


def test_journey_after_a_restart(server, browser, tmp_path):
    """Issue 11's items after a server restart: a deep link opens its screen, an exact floor
    is typed, the run is renamed, invalid input turns Run off with the rule, presentation
    mode, the decision report's PDF (rendered to PNG beside the screenshots), the run deleted."""
    import subprocess

    base, store = server
    run_id = int(store.runs()["id"].min())  # the quick sweep
    SERVER.stop()
    SERVER.start()  # the first request after the restart is a deep link
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.goto(f"{base}/tradeoffs?run={run_id}")
    settle(page)
    assert page.get_by_text("Page not found").count() == 0
    charts_rendered(page)

    # an exact floor, typed
    box = page.locator(".st-key-floor_box input")
    box.fill("97.25")
    box.press("Enter")
    page.wait_for_function("() => location.search.includes('floor=0.9725')")
    settle(page)
    assert floor_shown(page) == "97.25%" and "At a floor of 97.2 %" in headline(page)

    # rename and annotate the run from the sidebar
    page.get_by_role("button", name="Name, notes, delete").click()
    name = page.locator(f".st-key-run_name_{run_id} input")
    name.fill("journey")
    name.press("Enter")  # committed before the next field takes the focus
    settle(page)
    notes = page.locator(f".st-key-run_notes_{run_id} textarea")
    notes.fill("shown to leadership")
    notes.press("Control+Enter")  # a text area commits on Ctrl+Enter
    settle(page)
    page.locator(f".st-key-run_save_{run_id} button").click()
    settle(page)
    page.keyboard.press("Escape")
    page.wait_for_timeout(500)
    assert store.run(run_id)["name"] == "journey"
    wait_for_text(page, "[data-testid='stSidebar']", "shown to leadership")  # the notes
    picker = page.locator("[data-testid='stSidebar'] .st-key-run input")
    assert "journey · digits_cnn" in (
        picker.input_value() or picker.get_attribute("aria-label") or ""
    )
    healthy(page, "14-renamed")

    # invalid input: Run turns off and the rule is said
    open_page(page, "Sweep")
    threads = page.locator(".st-key-sweep_threads input")
    threads.fill("99")
    threads.press("Enter")
    settle(page)
    page.get_by_text(re.compile(r"1 <= threads <= \d+")).wait_for()
    assert page.get_by_role("button", name="Run sweep").is_disabled()
    healthy(page, "15-invalid-threads")

    # presentation mode, and the decision report as leadership receives it
    open_page(page, "Trade-offs")
    page.locator("[data-testid='stSidebar'] label:has-text('Presentation mode')").click()
    page.wait_for_selector("h1:has-text('which optimized model can we ship?')")
    settle(page)
    assert page.get_by_text("Download PNG").count() == 0
    healthy(page, "16-presentation")
    page.locator(".st-key-report summary").click()
    settle(page)
    with page.expect_download(timeout=120_000) as download:
        page.get_by_role("button", name="Download report (PDF)").click()
    pdf = tmp_path / "report.pdf"
    download.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF")
    subprocess.run(["pdftoppm", "-png", "-r", "70", "-singlefile", str(pdf),
                    str(SHOTS / "17-report")], check=True)  # fmt: skip
    assert (SHOTS / "17-report.png").stat().st_size > 10_000
    page = context.new_page()  # a new session: out of presentation mode
    page.goto(f"{base}/tradeoffs?run={run_id}")
    settle(page)
    charts_rendered(page)

    # delete the run: its rows and its files go
    folder = Path(store.results(run_id)["artifact"].dropna().iloc[0]).parent
    page.get_by_role("button", name="Name, notes, delete").click()
    page.locator(f".st-key-run_sure_{run_id} label").click()
    settle(page)
    page.locator(f".st-key-run_delete_{run_id} button").click()
    settle(page)
    assert run_id not in set(store.runs()["id"]) and not folder.exists()
    healthy(page, "18-deleted")
    context.close()
