"""Models brought in the browser (:mod:`optim.uploads`): kept by content hash, refused whole
when hostile, listed in every picker, resolvable from a fresh process; the Models page's
"Bring your own model" section (AppTest); and the access gate of a dashboard served to a team.

Every test gets its own OPTIM_HOME. The hostile files are built here (:func:`hostile`), so the
browser test refuses the same ones."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from streamlit.testing.v1 import AppTest

from optim import intake_view, uploads
from optim.sources import get_source, model_names

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("OPTIM_HOME", str(home))
    monkeypatch.setenv("OPTIM_DB_URL", f"sqlite:///{tmp_path / 'runs.db'}")
    return home


@pytest.fixture(scope="module")
def digits() -> tuple[bytes, bytes]:
    """The digits CNN sample exported to ONNX, and its data as an .npz (labels included)."""
    from optim.artifact import export_onnx
    from optim.sources import sample_source

    src = sample_source("digits_cnn")
    s, buf = src.splits, io.BytesIO()
    np.savez(buf, x_test=s["test"].x, y_test=s["test"].y, x_calib=s["calib"].x)
    return export_onnx(src.build(), src.example).SerializeToString(), buf.getvalue()


def left_behind(home: Path) -> list[str]:
    """Files and folders under ``$OPTIM_HOME/uploads`` (the lock file aside)."""
    base = home / "uploads"
    return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.name != ".lock")


# ------------------------------------------------------------------ hostile files


def _model(nodes, inputs, outputs, inits) -> bytes:
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _tiny(init: TensorProto) -> bytes:
    """y = x + w for x of shape (N, 4)."""
    return _model([helper.make_node("Add", ["x", init.name], ["y"])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], [init])  # fmt: skip


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


class _Marker:
    """Unpickling this object creates ``path``: proof that nothing unpickled the upload."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@dataclass(frozen=True)
class Hostile:
    onnx_name: str
    onnx: bytes | None  # None: the good digits model
    data_name: str
    data: bytes | None  # None: the good digits data
    match: str  # the refusal, one line
    env: tuple[tuple[str, str], ...] = ()


def hostile(tmp: Path) -> dict[str, Hostile]:
    """Files a browser may send, each of which must be refused in one line."""
    four = {"x_test": np.zeros((2, 4), np.float32), "x_calib": np.zeros((2, 4), np.float32)}
    outside = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 4])
    outside.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../x"), ("offset", "0"), ("length", "16")):
        outside.external_data.add(key=k, value=v)
    shape = numpy_helper.from_array(np.array([1 << 20, 1 << 20, 1], np.int64), "shape")
    bomb = _model([helper.make_node("ConstantOfShape", ["shape"], ["big"], name="bomb")], [],
                  [helper.make_tensor_value_info("big", TensorProto.FLOAT, None)], [shape])  # fmt: skip
    good = _tiny(numpy_helper.from_array(np.ones((1, 4), np.float32), "w"))
    marker = tmp / "unpickled"
    pickled = _npz(x_test=np.array([_Marker(str(marker))], dtype=object),
                   x_calib=np.zeros((2, 4), np.float32))  # fmt: skip
    zeros = np.zeros(4_000_000, np.float32)  # 16 MB that deflate packs into ~16 KB
    buf = io.BytesIO()
    np.savez_compressed(buf, x_test=zeros.reshape(-1, 4), x_calib=zeros.reshape(-1, 4))
    return {
        "external data outside its folder": Hostile(
            "outside.onnx", _tiny(outside), "d.npz", _npz(**four), "inside the model's own folder"
        ),
        "ConstantOfShape of 4 TB": Hostile(
            "bomb.onnx", bomb, "d.npz", _npz(**four), r"'bomb' \(ConstantOfShape\) would allocate"
        ),
        "truncated ONNX file": Hostile(
            "cut.onnx", None, "d.npz", None, "is not an ONNX model|fails the ONNX checker"
        ),
        "garbage ONNX file": Hostile(
            "junk.onnx",
            b"\x08\x07garbage, not protobuf \xff\xff",
            "d.npz",
            _npz(**four),
            "is not an ONNX model",
        ),  # fmt: skip
        "oversize ONNX file": Hostile(
            "big.onnx",
            None,
            "d.npz",
            None,
            "the limit is 100,000 \\(OPTIM_MAX_MODEL_MB\\)",
            (("OPTIM_MAX_MODEL_MB", "0.1"),),
        ),  # fmt: skip
        "oversize data file": Hostile(
            "m.onnx",
            None,
            "d.npz",
            None,
            "the limit is 100,000 \\(OPTIM_MAX_DATA_MB\\)",
            (("OPTIM_MAX_DATA_MB", "0.1"),),
        ),  # fmt: skip
        "npz with a pickled object array": Hostile(
            "m.onnx", good, "pickled.npz", pickled, "is not a readable .npy \\(object arrays"
        ),
        "npz bomb": Hostile(  # ~1000:1, refused from the central directory
            "m.onnx",
            good,
            "bomb.npz",
            buf.getvalue(),
            "member 'x_test.npy' of 'bomb.npz' must compress at most 200:1",
        ),  # fmt: skip
        "npz past the unpacked limit": Hostile(  # stored, not compressed: 2 MB declared
            "m.onnx",
            good,
            "big.npz",
            _npz(x_test=zeros[:250_000].reshape(-1, 4), x_calib=zeros[:250_000].reshape(-1, 4)),
            "`uncompressed size <= 1,000,000 bytes` must hold for 'big.npz', but its members "
            "declare 2,000,\\d+",
            (("OPTIM_MAX_UNZIPPED_MB", "1"),),
        ),  # fmt: skip
        "zip-slip zip": Hostile(
            "m.onnx",
            None,
            "slip.zip",
            _zip({"../evil/0.png": b"x", "cls/../../x.png": b"x"}),
            "must be a plain relative path",
        ),  # fmt: skip
        "zip bomb": Hostile(  # default limits: one member 64 MB of zeros, ~1000:1
            "m.onnx",
            None,
            "bomb.zip",
            _zip({"cls/a.png": bytes(64_000_000)}),
            "must compress at most 200:1",
        ),  # fmt: skip
    }


def upload_hostile(case: Hostile, digits: tuple[bytes, bytes], monkeypatch):
    for k, v in case.env:
        monkeypatch.setenv(k, v)
    onnx_bytes = case.onnx if case.onnx is not None else digits[0]
    if case.onnx_name == "cut.onnx":
        onnx_bytes = digits[0][: len(digits[0]) // 2]
    data = case.data if case.data is not None else digits[1]
    return uploads.add(onnx_bytes, data, case.data_name, "evil", onnx_name=case.onnx_name)


@pytest.mark.parametrize("case", list(hostile(Path("/nonexistent"))))
def test_hostile_uploads_are_refused_in_one_line_leaving_nothing(
    case, home, digits, tmp_path, monkeypatch
):
    h = hostile(tmp_path)[case]
    with pytest.raises(ValueError, match=h.match) as err:
        upload_hostile(h, digits, monkeypatch)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300, str(err.value)
    assert left_behind(home) == [] and uploads.names() == [] and "evil" not in model_names()
    assert not (tmp_path / "unpickled").exists()


# ------------------------------------------------------------------ the store


def test_an_upload_is_kept_by_its_hash_listed_and_resolved_in_a_fresh_process(home, digits):
    onnx_bytes, data = digits
    src = uploads.add(onnx_bytes, data, "digits.npz", "my digits", onnx_name="digits.onnx")
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    folder = home / "uploads" / sha
    assert src.name == "my digits" and src.meta["spec"] == "my digits" and src.metric == "top1"
    assert (folder / "model.onnx").read_bytes() == onnx_bytes
    data_file = f"data-{hashlib.sha256(data).hexdigest()[:16]}.npz"
    assert (folder / data_file).read_bytes() == data
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"] == {"original": "digits.onnx", "sha256": sha,
                                 "bytes": len(onnx_bytes)}  # fmt: skip
    assert manifest["data"][data_file]["original"] == "digits.npz"
    assert manifest["names"]["my digits"]["time"][:2] == "20"
    assert json.loads((home / "uploads" / "index.json").read_text()) == {"my digits": sha}
    assert model_names()[-1] == "my digits" and uploads.names() == ["my digits"]
    assert uploads.describe("my digits") == (
        "uploaded digits.onnx with digits.npz: 58,314 parameters, opset 20"
    )
    rows = {r["Check"]: r["Result"] for r in intake_view.report_rows(uploads.info("my digits"))}
    assert rows["sha256"].startswith(f"uploaded {sha[:16]}…, normalized ")
    assert rows["Parameters"] == "58,314" and rows["Opset"] == "20 (kept)"
    assert rows["Outputs match"].startswith("max |diff| 0, relative 0 (tolerance 0.0001)")
    assert (
        rows["Data"]
        == "360 test and 200 calibration examples of 1 × 8 × 8; judged by top-1 accuracy"
    )
    techniques = {r["Technique"]: r for r in intake_view.technique_rows(src)}
    assert techniques["int4 w/channel (Quantize)"]["Applies"] == "yes"
    assert techniques["channels -50% (StructuredPrune)"]["Why not"] == (
        "needs a torch model (it is an ONNX file)"
    )
    code = ("from optim.sources import get_source, source_spec; s = get_source('my digits'); "
            "print(source_spec(s), s.metric, len(s.splits['test']))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ),
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.split("\n")[-2] == "my digits top1 360"
    assert get_source("my digits").onnx_path == src.onnx_path


def test_a_reupload_reuses_the_folder_and_remove_cleans_up(home, digits):
    onnx_bytes, data = digits
    first = uploads.add(onnx_bytes, data, "d.npz", "a")
    folder = home / "uploads" / hashlib.sha256(onnx_bytes).hexdigest()
    stamp = (folder / "model.onnx").stat().st_mtime_ns
    assert uploads.add(onnx_bytes, data, "d.npz", "a") is first  # the same upload: a no-op
    uploads.add(onnx_bytes, data, "copy.npz", "b")  # the same bytes under a second name
    fewer = _npz(**{k: v[:100] for k, v in np.load(io.BytesIO(data)).items()})
    uploads.add(onnx_bytes, fewer, "fewer.npz", "c")  # the same model, other data
    assert (folder / "model.onnx").stat().st_mtime_ns == stamp
    assert [p.name for p in (home / "uploads").iterdir() if not p.name.startswith(".")] == [
        "index.json",
        folder.name,
    ] or sorted(p.name for p in (home / "uploads").iterdir()) == sorted(
        [".lock", "index.json", folder.name]
    )
    assert len(list(folder.glob("data-*"))) == 2 and uploads.names() == ["a", "b", "c"]
    assert len(uploads.resolve("c").splits["test"]) == 100
    with pytest.raises(ValueError, match="model name 'a' is already taken"):
        uploads.add(onnx_bytes, fewer, "fewer.npz", "a")
    uploads.remove("c")
    assert len(list(folder.glob("data-*"))) == 1 and uploads.resolve("c") is None
    uploads.remove("a")
    assert (folder / "model.onnx").is_file() and uploads.names() == ["b"]
    uploads.remove("b")
    assert left_behind(home) == ["index.json"] and uploads.names() == []
    with pytest.raises(ValueError, match="unknown model 'b'"):
        uploads.remove("b")


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("", r"`1 <= len\(name\) <= 64` must hold, but got len=0"),
        ("   ", "but got len=0"),
        ("x" * 65, "but got len=65"),
        ("a/b", "must not hold path separators, ':' or control characters, but 'a/b' holds '/'"),
        ("a\\b", "path separators"),
        ("m.onnx:d.npz", "holds ':'"),
        ("bell\x07", "control characters"),
        ("..", "is taken by a sample or project model"),
        ("digits_cnn", "model name 'digits_cnn' is taken by a sample"),
    ],
)
def test_names_are_checked_in_one_line(name, match, home, digits):
    with pytest.raises(ValueError, match=match):
        uploads.add(*digits, "d.npz", name)
    assert left_behind(home) == []


def test_a_data_file_of_another_kind_is_refused(home, digits):
    with pytest.raises(
        ValueError, match=r"must be one of .npz, .zip, .csv, .parquet, but got 'd.pkl'"
    ):
        uploads.add(digits[0], b"\x80\x04", "d.pkl", "m")
    assert left_behind(home) == []


# ------------------------------------------------------------------ output and metric


def two_outputs() -> tuple[bytes, bytes]:
    """A model with two outputs, class ``scores`` (N, 3) and an ``embedding`` (N, 8) of x (N, 4),
    and labeled data for it."""
    rng = np.random.default_rng(0)
    w1, w2 = (numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
              for n, s in (("w1", (4, 3)), ("w2", (4, 8))))  # fmt: skip
    onnx_bytes = _model(
        [helper.make_node("MatMul", ["x", "w1"], ["scores"]),
         helper.make_node("MatMul", ["x", "w2"], ["embedding"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 3]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", 8])],
        [w1, w2],
    )  # fmt: skip
    x = rng.normal(size=(30, 4)).astype(np.float32)
    return onnx_bytes, _npz(x_test=x[:20], y_test=np.arange(20) % 3, x_calib=x[20:])


def test_the_prediction_output_and_metric_are_kept_and_resolved(home):
    onnx_bytes, data = two_outputs()
    src = uploads.add(onnx_bytes, data, "d.npz", "emb", output="embedding", metric="fidelity")
    assert (src.output, src.metric) == ("embedding", "fidelity")
    folder = home / "uploads" / hashlib.sha256(onnx_bytes).hexdigest()
    rec = json.loads((folder / "manifest.json").read_text())["names"]["emb"]
    assert (rec["output"], rec["metric"], rec["data_summary"]["metric"]) == (
        "embedding", "fidelity", "fidelity")  # fmt: skip
    uploads._load.cache_clear()  # from the manifest, as a fresh process would
    again = uploads.resolve("emb")
    assert (again.output, again.metric) == ("embedding", "fidelity")
    rows = {r["Check"]: r["Result"] for r in intake_view.report_rows(uploads.info("emb"))}
    assert rows["Prediction"] == "output 'embedding', as asked"
    assert rows["Data"] == (
        "20 test and 10 calibration examples of 4; judged by fidelity (cosine similarity to "
        "the baseline's outputs) (as asked)"
    )
    # the same bytes under a second name with the defaults: the first output, top-1 accuracy
    plain = uploads.add(onnx_bytes, data, "d.npz", "plain")
    assert (plain.output, plain.metric) == (None, "top1")
    rows = {r["Check"]: r["Result"] for r in intake_view.report_rows(uploads.info("plain"))}
    assert rows["Prediction"] == "the first output" and rows["Data"].endswith("top-1 accuracy")
    assert uploads.resolve("emb").output == "embedding" and len(list(folder.glob("data-*"))) == 1
    with pytest.raises(ValueError, match="model name 'emb' is already taken"):
        uploads.add(onnx_bytes, data, "d.npz", "emb", output="scores")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"output": "probabilities"}, r"^output 'probabilities' must be one of the model's "
                                      r"outputs \['scores', 'embedding'\]$"),
        ({"metric": "accuracy"}, r"`metric` must be one of \('top1', 'agreement', 'fidelity'\)"),
    ],
)  # fmt: skip
def test_a_wrong_output_or_metric_is_refused_in_one_line(options, match, home):
    onnx_bytes, data = two_outputs()
    uploads.add(onnx_bytes, data, "d.npz", "kept")  # the same bytes passed before
    before = left_behind(home)
    with pytest.raises(ValueError, match=match) as err:
        uploads.add(onnx_bytes, data, "d.npz", "other", **options)
    assert "\n" not in str(err.value) and uploads.names() == ["kept"]
    assert left_behind(home) == before


# ------------------------------------------------------------------ the Models page


def models_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["model"] = "cancer_mlp"  # profiles in under a second
    at.run()
    at.switch_page("pages/models.py").run()
    assert not at.exception, at.exception
    return at


def _upload(
    at: AppTest, onnx_file: tuple, data_file: tuple, name: str = "", output: str = "",
    metric: str | None = None,
) -> AppTest:  # fmt: skip
    gen = at.session_state["_byo_gen"]
    at.file_uploader[0].set_value(onnx_file)
    at.file_uploader[1].set_value(data_file)
    at.text_input(key=f"byo_name_{gen}").set_value(name)
    at.text_input(key=f"byo_output_{gen}").set_value(output)
    at.selectbox(key=f"byo_metric_{gen}").set_value(metric)
    at.run()
    at.button(key="byo_add").click().run()
    assert not at.exception, at.exception
    return at


def test_the_models_page_adds_reports_lists_and_removes_an_upload(home, digits):
    at = models_page()
    assert at.button(key="byo_add").disabled  # nothing to add yet
    at = _upload(at, ("digits.onnx", digits[0], "application/octet-stream"),
                 ("digits.npz", digits[1], "application/octet-stream"))  # fmt: skip
    assert uploads.names() == ["digits"]  # the name box was empty: the file's name
    assert not at.error and "Added **digits**" in at.success[0].value
    report, techniques = (t.value for t in at.table)
    assert "Outputs match" in set(report["Check"]) and "58,314" in set(report["Result"])
    assert techniques.set_index("Technique").loc["int4 w/channel (Quantize)", "Applies"] == "yes"
    assert "digits — uploaded digits.onnx" in "\n".join(at.selectbox(key="model").options)
    assert at.selectbox(key="model").value == "digits"  # picked for the profile below
    assert any(m.value.startswith("**digits** — uploaded digits\\.onnx") for m in at.markdown)
    # that the picked model follows to the Sweep page is checked in a real browser
    # (tests/test_upload_browser.py): AppTest's switch_page re-enters through the landing page
    at.button(key="byo_remove_digits").click().run()
    assert not at.exception and uploads.names() == [] and not at.success
    assert "digits — " not in "\n".join(at.selectbox(key="model").options)
    assert left_behind(home) == ["index.json"]


def test_the_models_page_passes_the_prediction_output_and_metric(home):
    onnx_bytes, data = two_outputs()
    at = models_page()
    assert at.selectbox(key="byo_metric_0").options == [
        "auto", "top-1 accuracy (needs labels)", "agreement with the baseline",
        "fidelity: cosine similarity to the baseline's outputs, for embeddings, regression, "
        "detection heads"]  # fmt: skip
    assert "probabilities" in at.text_input(key="byo_output_0").help
    octet = "application/octet-stream"
    at = _upload(at, ("two.onnx", b"\x08\x07not protobuf", octet), ("d.npz", data, octet))
    at = _upload(at, ("two.onnx", onnx_bytes, octet), ("d.npz", data, octet), name="two",
                 output="nope", metric="fidelity")  # fmt: skip
    assert [e.value for e in at.error] == [
        "output 'nope' must be one of the model's outputs \\['scores', 'embedding'\\]"
    ] and uploads.names() == []
    at = _upload(at, ("two.onnx", onnx_bytes, octet), ("d.npz", data, octet), name="two",
                 output=" embedding ", metric="fidelity")  # fmt: skip
    assert not at.error and uploads.names() == ["two"]
    assert (uploads.info("two")["output"], uploads.info("two")["metric"]) == (
        "embedding", "fidelity")  # fmt: skip
    source = uploads.resolve("two")
    assert (source.output, source.metric) == ("embedding", "fidelity")
    report = at.table[0].value.set_index("Check")["Result"]
    assert report["Prediction"] == "output 'embedding', as asked"
    assert "fidelity" in report["Data"]


def test_a_refused_upload_shows_one_line_and_nothing_else(home, digits):
    at = _upload(models_page(), ("junk.onnx", b"\x08\x07not protobuf", "application/octet-stream"),
                 ("d.npz", digits[1], "application/octet-stream"), name="junk")  # fmt: skip
    assert [e.value for e in at.error] == ["junk\\.onnx is not an ONNX model \\(DecodeError\\)"]
    assert not at.success and uploads.names() == [] and left_behind(home) == []
    assert "junk — " not in "\n".join(at.selectbox(key="model").options)


# ------------------------------------------------------------------ access control


def test_with_a_token_the_dashboard_shows_only_the_sign_in_box(home, monkeypatch):
    monkeypatch.setenv("OPTIM_TOKEN", "s3cret-token")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and [t.value for t in at.title] == ["Model optimizer"]
    assert [t.label for t in at.text_input] == ["Access token"] and not at.selectbox
    assert not at.toggle and not at.dataframe  # no presentation toggle, no run, no page
    at.text_input[0].set_value("wrong").run()  # Enter
    assert [e.value for e in at.error] == ["Wrong access token."]
    assert [t.value for t in at.title] == ["Model optimizer"] and not at.selectbox
    at.text_input[0].set_value("s3cret-token")
    at.button[0].click().run()  # the Sign in button
    assert (
        not at.exception
        and not at.error
        and "Access token" not in [t.label for t in at.text_input]
    )
    assert [t.value for t in at.title] == ["Trade-offs"]  # the default page, unlocked
    at.run()
    assert [t.value for t in at.title] == ["Trade-offs"]  # kept in session state


def test_a_token_in_the_url_signs_in_and_leaves_the_url(home, monkeypatch):
    monkeypatch.setenv("OPTIM_TOKEN", "s3cret-token")
    wrong = AppTest.from_file(str(APP), default_timeout=60)
    wrong.query_params["token"] = "guess"
    wrong.run()
    assert [e.value for e in wrong.error] == ["Wrong access token."]
    assert [t.label for t in wrong.text_input] == ["Access token"]
    right = AppTest.from_file(str(APP), default_timeout=60)
    right.query_params["token"] = "s3cret-token"
    right.query_params["floor"] = "0.9"
    right.run()
    assert not right.exception and [t.value for t in right.title] == ["Trade-offs"]
    assert "token" not in right.query_params  # a copied link never carries it


def test_without_a_token_the_dashboard_opens_directly(home, monkeypatch):
    monkeypatch.delenv("OPTIM_TOKEN", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and [t.value for t in at.title] == ["Trade-offs"]


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"ADDRESS": "0.0.0.0"}, [], "ADDRESS=0.0.0.0 serves the network, so OPTIM_TOKEN"),
        ({"ADDRESS": "10.1.2.3", "OPTIM_TOKEN": ""}, [], "OPTIM_TOKEN (a long random secret)"),
        ({}, ["--server.address=0.0.0.0"], "set ADDRESS=... instead of --server.address"),
    ],
)
def test_app_sh_refuses_to_serve_the_network_without_a_token(env, args, message):
    base = {k: v for k, v in os.environ.items() if k not in ("ADDRESS", "OPTIM_TOKEN")}
    out = subprocess.run(["bash", "scripts/app.sh", *args], cwd=ROOT, env=base | env,
                         capture_output=True, text=True, timeout=10)  # fmt: skip
    assert out.returncode == 2 and out.stdout == ""
    assert message in out.stderr and out.stderr.count("\n") == 1
