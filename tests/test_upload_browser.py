"""Bringing a model in a real browser: upload an ONNX file with its data on the Models page,
read the intake report, sweep it, see its frontier on Trade-offs; and every hostile file of
:func:`test_uploads.hostile` refused in one line with nothing left behind.

A real server (its own OPTIM_HOME), headless Debian chromium. Full-page screenshots land in
``test-artifacts/screenshots/upload-*.png``: look at them.
"""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import numpy as np
import pytest

from tests.browser import (
    SHOTS,
    Server,
    require_chromium,
    settle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VIEWPORT = {"width": 1400, "height": 2000}
LIMITS = {"OPTIM_MAX_MODEL_MB": "1", "OPTIM_MAX_DATA_MB": "1", "OPTIM_MAX_UNZIPPED_MB": "8"}

sync_api = require_chromium()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``streamlit run app.py`` on 127.0.0.1 with its own home, store and low size limits."""
    from optim.store import Store

    srv = Server(tmp_path_factory.mktemp("upload-home"), env=LIMITS)
    srv.start()
    try:
        yield srv.base, srv.home, Store(srv.url)
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def digits() -> tuple[bytes, bytes]:
    from optim.artifact import export_onnx
    from optim.sources import sample_source

    src = sample_source("digits_cnn")
    s, buf = src.splits, io.BytesIO()
    np.savez(buf, x_test=s["test"].x, y_test=s["test"].y, x_calib=s["calib"].x)
    return export_onnx(src.build(), src.example).SerializeToString(), buf.getvalue()


@pytest.fixture(scope="module")
def digits_zip() -> bytes:
    """The digits of the test split as an image folder: one subfolder per class of 8x8
    grayscale PNGs, with its preprocessing declared in ``preprocess.json``."""
    import json
    import zipfile

    from PIL import Image

    from optim.sources import sample_source

    test = sample_source("digits_cnn").splits["test"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("preprocess.json", json.dumps({"channels": "L"}))
        for i, (x, y) in enumerate(zip(test.x, test.y, strict=True)):
            png = io.BytesIO()
            Image.fromarray(np.round(x[0] * 255).astype(np.uint8), "L").save(png, "PNG")
            z.writestr(f"{y}/{i:04d}.png", png.getvalue())
    return buf.getvalue()


# ------------------------------------------------------------------ helpers


def healthy(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"upload-{name}.png"), full_page=True)
    assert page.locator("[data-testid='stException']").count() == 0, name
    assert page.get_by_text("Something went wrong").count() == 0, name


def open_page(page, title: str) -> None:
    page.locator("[data-testid='stSidebarNavLink']", has_text=title).click()
    page.wait_for_selector(f"h1:has-text('{title}')")
    settle(page)


def upload(page, onnx_name: str, onnx: bytes, data_name: str, data: bytes, name: str) -> None:
    """Put both files in the Models page's uploaders, type the name, press Add model."""
    for key, file_name, content in (("byo_onnx", onnx_name, onnx), ("byo_data", data_name, data)):
        page.locator(f"[class*='st-key-{key}_'] [data-testid='stFileUploaderDropzoneInput']")\
            .set_input_files({"name": file_name, "mimeType": "application/octet-stream",
                              "buffer": content})  # fmt: skip
        page.locator(f"[class*='st-key-{key}_']").get_by_text(file_name).wait_for()
        settle(page)
    box = page.locator("[class*='st-key-byo_name_'] input")
    box.fill(name)
    box.press("Enter")
    settle(page)
    page.get_by_role("button", name="Add model").click()
    outcome = "[data-testid='stMain'] [data-testid='stAlertContentError'], .st-key-byo_report"
    page.locator(outcome).first.wait_for(timeout=120_000)  # refused, or added
    settle(page, timeout=120_000)


def left_behind(home: Path) -> list[str]:
    base = home / "uploads"
    return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.name != ".lock")


# ------------------------------------------------------------------ the journey


def test_upload_sweep_and_see_the_frontier(server, browser, digits, digits_zip):
    base, home, store = server
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(base)
    settle(page)
    open_page(page, "Models")
    healthy(page, "01-models-empty")

    upload(page, "digits.onnx", digits[0], "digits.zip", digits_zip, "my_digits")
    report = page.locator(".st-key-byo_report")
    report.wait_for()
    text = report.inner_text()
    assert "Added my_digits" in text, text
    assert "Outputs match" in text and "max |diff| 0, relative 0 (tolerance 0.0001)" in text
    assert "58,314" in text and "20 (kept)" in text and "216 test and 144 calibration" in text
    assert re.search(r"int4 w/channel \(Quantize\)\s+yes", text), text
    assert re.search(r"needs a torch model \(it is an ONNX file\)", text), text
    assert "my_digits — uploaded digits.onnx" in page.locator(".st-key-model input").input_value()
    page.locator("[data-testid='stPlotlyChart']").first.wait_for(timeout=60_000)  # profile
    settle(page)
    healthy(page, "02-models-uploaded")

    # Sweep it: int4 and fp32, no pruning (two configs)
    open_page(page, "Sweep")
    assert "my_digits" in page.locator(".st-key-model input").input_value()
    for key, tag in (("sweep_bits", "8 (int8)"), ("sweep_sparsity", "50%")):
        page.locator(f".st-key-{key}").get_by_role("button", name=f"Remove {tag}").click()
        settle(page)
    assert page.locator("[data-testid='stMetricValue']").first.inner_text() == "2"
    healthy(page, "03-sweep-grid")
    page.get_by_role("button", name="Run sweep").click()
    page.get_by_text(re.compile(r"2 of 2 configs — done")).wait_for(timeout=90_000)
    settle(page)
    healthy(page, "04-sweep-done")
    # the form is back, showing the grid its count is computed from (the one just run)
    assert page.locator("[data-testid='stMetricValue']").first.inner_text() == "2"
    bits = page.locator(".st-key-sweep_bits").inner_text()
    assert "32 (fp32)" in bits and "8 (int8)" not in bits, bits
    assert "50%" not in page.locator(".st-key-sweep_sparsity").inner_text()
    (run_id,) = store.runs()["id"]
    assert store.run(int(run_id))["model"] == "my_digits"
    assert len(store.results(int(run_id))) == 2

    open_page(page, "Trade-offs")
    charts = page.locator("[data-testid='stPlotlyChart']")
    for i in range(2):
        charts.nth(i).locator(".main-svg").first.wait_for(state="attached", timeout=30_000)
    assert "my_digits" in page.locator("[data-testid='stSidebar']").inner_text()
    assert "ship int4 w/channel" in page.locator(".st-key-headline").inner_text()  # its frontier
    healthy(page, "05-tradeoffs")

    # and remove it again: gone from the picker, its files gone
    open_page(page, "Models")
    page.get_by_role("button", name="Remove").click()
    settle(page)
    assert "my_digits" not in page.locator(".st-key-model input").input_value()
    assert left_behind(home) == ["index.json"]
    healthy(page, "06-models-removed")
    page.context.close()


IN_THE_BROWSER = ("truncated ONNX file", "ConstantOfShape of 4 TB", "oversize ONNX file",
                  "oversize data file", "npz with a pickled object array", "zip-slip zip")  # fmt: skip


def test_hostile_files_are_refused_in_one_line(server, browser, digits, tmp_path, monkeypatch):
    """Each refusal is the same line the API gives (under the server's limits), alone."""
    from onnx import helper, numpy_helper
    from test_uploads import hostile, upload_hostile

    base, home, _ = server
    for k, v in {**LIMITS, "OPTIM_HOME": str(tmp_path / "api-home")}.items():
        monkeypatch.setenv(k, v)
    cases, rng = hostile(tmp_path), np.random.default_rng(0)
    # over the server's 1 MB limits: a 1.2 MB model, a 1.3 MB .npz
    w = numpy_helper.from_array(rng.standard_normal((1, 300_000)).astype(np.float32), "w")
    big = helper.make_model(
        helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", 1, ["n", 300_000])],
                          [helper.make_tensor_value_info("y", 1, ["n", 300_000])], [w]),
        opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()  # fmt: skip
    x = rng.standard_normal((5000, 1, 8, 8)).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, x_test=x[:2500], x_calib=x[2500:])
    over = cases["oversize ONNX file"]
    cases["oversize ONNX file"] = dataclasses.replace(over, onnx=big, env=())
    over = cases["oversize data file"]
    cases["oversize data file"] = dataclasses.replace(over, data=buf.getvalue(), env=())

    # one case per path a refusal takes (the API test, tests/test_uploads.py, runs them all)
    cases = {k: v for k, v in cases.items() if k in IN_THE_BROWSER}
    assert len(cases) == len(IN_THE_BROWSER), sorted(cases)
    before = left_behind(home)  # the journey's empty index.json, if it ran first
    page = browser.new_context(viewport=VIEWPORT).new_page()
    for i, (case, h) in enumerate(cases.items()):
        page.goto(f"{base}/models")  # a fresh session: empty uploaders
        settle(page)
        with pytest.raises(ValueError) as err:
            upload_hostile(h, digits, monkeypatch)
        onnx_bytes = h.onnx if h.onnx is not None else digits[0]
        if h.onnx_name == "cut.onnx":
            onnx_bytes = digits[0][: len(digits[0]) // 2]
        data = h.data if h.data is not None else digits[1]
        upload(page, h.onnx_name, onnx_bytes, h.data_name, data, "evil")
        alerts = page.locator(
            "[data-testid='stMain'] [data-testid='stAlertContentError'] "
            "[data-testid='stMarkdownContainer']"
        )
        assert alerts.count() == 1, case
        shown = alerts.inner_text().strip()
        assert shown == str(err.value) and "\n" not in shown, (case, shown)
        assert page.locator(".st-key-byo_report").count() == 0, case
        assert left_behind(home) == before, case  # no folder, no index entry, no staging
        healthy(page, f"07-hostile-{i:02d}-{re.sub(r'[^a-z0-9]+', '-', case.lower())}")
    assert not (tmp_path / "unpickled").exists()
    page.context.close()
