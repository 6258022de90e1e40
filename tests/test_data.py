"""optim.data: every supported data file into the npz contract, deterministic splits, refusals."""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from optim.data import FRACTIONS, FRACTIONS_TRAIN, Preprocess, load

CLASSES = ("cat", "dog", "emu")


def _img(color, size=(8, 8), fmt="PNG", mode="RGB") -> bytes:
    """A solid image of ``size`` (W, H) encoded as ``fmt``."""
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format=fmt)
    return buf.getvalue()


def _zip(path, members: dict[str, bytes], method=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _folder(per=12, top="", size=(8, 8), extra=None) -> dict[str, bytes]:
    """3 classes x ``per`` images; pixel (R, G) = (50 * class, 10 * index) names each image."""
    m = {f"{top}{c}/{i:03d}.png": _img((50 * k, 10 * i, 7), size) for k, c in enumerate(CLASSES)
         for i in range(per)}  # fmt: skip
    return m | (extra or {})


@pytest.fixture
def folder_zip(tmp_path):
    return _zip(tmp_path / "pets.zip", _folder())


def _ids(x: np.ndarray) -> set[tuple[int, int]]:
    """(class, index) of each image from its red and green values."""
    rg = np.rint(x[:, :2, 0, 0] * 255).astype(int)
    return {(r // 50, g // 10) for r, g in rg}


# ---- image folders ----------------------------------------------------------------------------


def test_image_folder_gives_the_contract_with_labels_from_sorted_folders(folder_zip):
    got = load(folder_zip)
    a = got.arrays
    assert set(a) == {"x_calib", "x_test", "y_test"}
    assert a["x_calib"].shape == (14, 3, 8, 8) and a["x_test"].shape == (22, 3, 8, 8)
    assert a["x_test"].dtype == np.float32 and a["y_test"].dtype == np.int64
    assert a["y_test"].shape == (22,)
    assert got.classes == CLASSES and got.split["classes"] == list(CLASSES)
    # every label is the class whose colour the image has; splits are disjoint and complete
    np.testing.assert_array_equal(a["y_test"], np.rint(a["x_test"][:, 0, 0, 0] * 255) // 50)
    calib, test = _ids(a["x_calib"]), _ids(a["x_test"])
    assert not calib & test and calib | test == {(k, i) for k in range(3) for i in range(12)}
    assert got.split["counts"] == {"calib": 14, "test": 22}
    assert got.split["kind"] == "stratified" and got.split["fractions"] == FRACTIONS
    assert float(a["x_test"].min()) >= 0.0 and float(a["x_test"].max()) <= 1.0
    json.dumps(got.split)  # JSON-able


def test_train_split_and_stratification(folder_zip):
    got = load(folder_zip, train=True)
    a = got.arrays
    assert set(a) == {"x_calib", "x_test", "y_test", "x_train", "y_train"}
    assert got.split["counts"] == {"calib": 7, "test": 11, "train": 18}  # 20/30/50 % of 36
    assert got.split["fractions"] == FRACTIONS_TRAIN
    for s, f in FRACTIONS_TRAIN.items():
        per_class = got.split["class_counts"][s]
        assert all(abs(c - 12 * f) <= 1 for c in per_class), (s, per_class)
    np.testing.assert_array_equal(np.bincount(a["y_train"], minlength=3),
                                  got.split["class_counts"]["train"])  # fmt: skip


def test_split_is_deterministic_by_seed(folder_zip):
    a, b, c = (load(folder_zip, seed=s).arrays for s in (0, 0, 1))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert _ids(a["x_test"]) != _ids(c["x_test"])


def test_top_folder_preprocess_json_and_ignored_files(tmp_path):
    extra = {"data/preprocess.json": json.dumps({"size": [4, 6], "layout": "NHWC"}).encode(),
             "data/README.txt": b"hi", "__MACOSX/data/._x.png": b"junk",
             "data/cat/.DS_Store": b"junk", "data/cat/notes.txt": b"x"}  # fmt: skip
    z = _zip(tmp_path / "d.zip", _folder(top="data/", extra=extra))
    got = load(z)
    assert got.classes == CLASSES and got.arrays["x_test"].shape == (22, 4, 6, 3)
    assert got.split["preprocess_from"] == "preprocess.json"
    assert got.split["preprocess"]["size"] == (4, 6)
    assert got.split["ignored"] == ["data/README.txt", "data/cat/notes.txt"]
    over = load(z, preprocess=Preprocess(size=(5, 5)))  # the argument wins over the file
    assert (
        over.arrays["x_test"].shape == (22, 3, 5, 5)
        and over.split["preprocess_from"] == "argument"
    )


def test_normalization_numbers_bgr_nhwc_and_grayscale(tmp_path):
    m = {f"{c}/{i}.png": _img((200, 100, 50)) for c in "ab" for i in range(5)}
    z = _zip(tmp_path / "solid.zip", m)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.1)
    rgb = load(z, preprocess=Preprocess(mean=mean, std=std)).arrays["x_test"]
    want = [(v / 255 - mu) / sd for v, mu, sd in zip((200, 100, 50), mean, std, strict=True)]
    np.testing.assert_allclose(rgb[:, :, 3, 4], np.tile(want, (len(rgb), 1)), rtol=1e-6)
    bgr = load(z, preprocess=Preprocess(mean=mean, std=std, channels="BGR", layout="NHWC"))
    x = bgr.arrays["x_test"]
    want = [(v / 255 - mu) / sd for v, mu, sd in zip((50, 100, 200), mean, std, strict=True)]
    assert x.shape == (6, 8, 8, 3)
    np.testing.assert_allclose(x[:, 2, 5, :], np.tile(want, (len(x), 1)), rtol=1e-6)
    gray = {f"{c}/{i}.bmp": _img((120, 120, 120), fmt="BMP") for c in "ab" for i in range(5)}
    g = load(_zip(tmp_path / "g.zip", gray), preprocess=Preprocess(channels="L", mean=(0.1,)))
    assert g.arrays["x_calib"].shape == (4, 1, 8, 8)
    np.testing.assert_allclose(g.arrays["x_calib"], 120 / 255 - 0.1, rtol=1e-6)


def test_resize_shorter_side_then_center_crop_and_jpeg(tmp_path):
    m = {
        f"{c}/{i}.jpg": _img((90, 90, 90), size=(12, 8), fmt="JPEG")
        for c in "ab"
        for i in range(5)
    }
    z = _zip(tmp_path / "wide.zip", m)
    assert load(z).arrays["x_test"].shape == (6, 3, 8, 12)
    assert load(z, preprocess=Preprocess(size=16, crop=(10, 12))).arrays["x_test"].shape == (
        6, 3, 10, 12)  # fmt: skip
    assert load(z, preprocess=Preprocess(size=(6, 5), crop=4)).arrays["x_test"].shape == (
        6, 3, 4, 4)  # fmt: skip
    with pytest.raises(ValueError, match=r"`crop <= image size` must hold for 'a/0.jpg'"):
        load(z, preprocess=Preprocess(crop=9))


def test_images_of_different_sizes_ask_for_size(tmp_path):
    z = _zip(tmp_path / "mixed.zip", _folder() | {"dog/big.png": _img((0, 0, 0), (9, 9))})
    with pytest.raises(ValueError, match=r"one size after preprocessing.*declare `size`"):
        load(z)
    assert load(z, preprocess=Preprocess(size=(8, 8))).arrays["x_test"].shape[1:] == (3, 8, 8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"size": 0}, r"`size` must be None, an int > 0 or \(H, W\), but got 0"),
     ({"crop": (3, True)}, r"`crop` must be"),
     ({"channels": "RGBA"}, r"`channels in \('RGB', 'BGR', 'L'\)` must hold, but got 'RGBA'"),
     ({"layout": "CHW"}, r"`layout in"),
     ({"mean": (0.1, 0.2)}, r"`mean` must be 1 or 3 finite numbers"),
     ({"std": (1.0, 0.0, 1.0)}, r"`std > 0` must hold"),
     ({"std": (float("nan"),)}, r"`std` must be 1 or 3 finite")],
)  # fmt: skip
def test_preprocess_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Preprocess(**kwargs)


def test_bad_preprocess_json(tmp_path):
    bad = _zip(tmp_path / "p.zip", _folder(extra={"preprocess.json": b'{"sise": 4}'}))
    with pytest.raises(
        ValueError, match=r"preprocess.json of 'p.zip' must be an object with keys"
    ):
        load(bad)
    bad = _zip(tmp_path / "q.zip", _folder(extra={"preprocess.json": b'{"layout": "CHW"}'}))
    with pytest.raises(ValueError, match=r"preprocess.json of 'q.zip': `layout in"):
        load(bad)
    deep = _zip(tmp_path / "r.zip", _folder(extra={"preprocess.json": b"[" * 100_000}))
    with pytest.raises(ValueError, match=r"preprocess.json of 'r.zip' is not valid JSON"):
        load(deep)


@pytest.mark.parametrize(
    ("members", "match"),
    [({"dog/": b""}, r"class folder 'dog' of 'f.zip' must hold PNG/JPEG/BMP images"),
     ({"emu/readme.txt": b"x"}, r"class folder 'emu'"),
     ({"bad/1.png": b"not a png"}, r"image 'bad/1.png' of 'f.zip' cannot be decoded"),
     ({"gif/1.png": _img((1, 2, 3), fmt="GIF")}, r"image 'gif/1.png'.*format GIF"),
     ({"loose.png": _img((1, 2, 3))}, r"one folder per class, but 'loose.png' is at the root")],
)  # fmt: skip
def test_bad_image_folders(tmp_path, members, match):
    base = {} if "dog/" in members or "emu/readme.txt" in members else _folder()
    base = base or {f"cat/{i}.png": _img((1, 1, 1)) for i in range(3)}
    with pytest.raises(ValueError, match=match):
        load(_zip(tmp_path / "f.zip", base | members))


def test_a_zip_without_class_folders(tmp_path):
    with pytest.raises(
        ValueError, match=r"must hold one folder of images per class, but has none"
    ):
        load(_zip(tmp_path / "e.zip", {"notes.txt": b"x"}))
    (tmp_path / "no.zip").write_bytes(b"PK not really")
    with pytest.raises(ValueError, match=r"'no.zip' is not a readable zip file"):
        load(tmp_path / "no.zip")


# ---- hostile zips ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil.png", "cat/../../evil.png", "/etc/evil.png",
                                  "cat\\..\\evil.png", "C:/evil.png", "C:evil.png"])  # fmt: skip
def test_zip_slip_is_refused_and_nothing_is_written(tmp_path, name):
    z = _zip(tmp_path / "slip.zip", _folder() | {name: _img((0, 0, 0))})
    with pytest.raises(ValueError, match=r"of 'slip.zip' must be a plain relative path"):
        load(z)
    assert [p.name for p in tmp_path.iterdir()] == ["slip.zip"]
    assert not (tmp_path.parent / "evil.png").exists()


def test_symlink_member_is_refused(tmp_path):
    link = zipfile.ZipInfo("cat/link.png")
    link.external_attr = 0o120777 << 16  # S_IFLNK
    z = tmp_path / "link.zip"
    _zip(z, _folder())
    with zipfile.ZipFile(z, "a") as f:
        f.writestr(link, "/etc/passwd")
    with pytest.raises(ValueError, match=r"member 'cat/link.png' of 'link.zip' is a symlink"):
        load(z)


def test_too_many_members(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIM_MAX_ZIP_MEMBERS", "20")
    with pytest.raises(ValueError, match=r"`members <= 20` must hold for 'many.zip', but got 36"):
        load(_zip(tmp_path / "many.zip", _folder()))
    assert load(_zip(tmp_path / "few.zip", _folder(per=6))).split["counts"]["test"] == 11


def test_declared_uncompressed_total_over_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIM_MAX_UNZIPPED_MB", "0.01")  # 10 kB
    z = _zip(tmp_path / "big.zip", _folder() | {"cat/pad.bin": os.urandom(20_000)})
    with pytest.raises(ValueError, match=r"`uncompressed size <= 10,000 bytes` must hold for "
                                         r"'big.zip', but its members declare \d"):  # fmt: skip
        load(z)


def test_a_header_that_lies_about_its_size_cannot_unpack_more(tmp_path):
    buf = io.BytesIO()
    _zip(buf, _folder() | {"cat/zz.png": os.urandom(100_000)})
    b = bytearray(buf.getvalue())
    i = b.rfind(b"PK\x01\x02")  # the last central-directory entry: cat/zz.png
    struct.pack_into("<I", b, i + 24, 10)  # declares 10 bytes uncompressed
    (tmp_path / "lying.zip").write_bytes(bytes(b))
    with pytest.raises(
        ValueError, match=r"member 'cat/zz.png' of 'lying.zip' (cannot be read|unpacks)"
    ):
        load(tmp_path / "lying.zip")


def test_compression_ratio_bomb(tmp_path):
    z = _zip(tmp_path / "bomb.zip", _folder() | {"cat/zeros.png": bytes(8 << 20)})
    with pytest.raises(ValueError, match=r"member 'cat/zeros.png' of 'bomb.zip' must compress at "
                                         r"most 200:1, but got 8,388,608 from"):  # fmt: skip
        load(z)


def test_a_small_png_with_a_huge_canvas_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIM_MAX_UNZIPPED_MB", "5")
    z = _zip(tmp_path / "px.zip", _folder() | {"dog/huge.png": _img((0, 0, 0), (3000, 3000))})
    with pytest.raises(ValueError, match=r"image 'dog/huge.png' of 'px.zip' decodes \(and"):
        load(z)
    up = {"preprocess.json": json.dumps({"size": [1000, 1000]}).encode()}  # 12 MB per image
    with pytest.raises(ValueError, match=r"image 'cat/000.png' of 'up.zip' decodes \(and resizes"):
        load(_zip(tmp_path / "up.zip", _folder(extra=up)))


def test_file_size_limit_before_parsing(tmp_path, monkeypatch, folder_zip):
    with pytest.raises(ValueError, match=r"`size <= 100 bytes` must hold for 'pets.zip', but got"):
        load(folder_zip, max_bytes=100)
    monkeypatch.setenv("OPTIM_MAX_DATA_MB", "0.001")
    with pytest.raises(ValueError, match=r"`size <= 1,000 bytes` must hold"):
        load(folder_zip)
    monkeypatch.setenv("OPTIM_MAX_DATA_MB", "lots")
    with pytest.raises(ValueError, match=r"`OPTIM_MAX_DATA_MB > 0` must hold, but got 'lots'"):
        load(folder_zip)


def test_unknown_extension_and_missing_file(tmp_path):
    (tmp_path / "d.txt").write_text("1,2")
    with pytest.raises(ValueError, match=r"'d.txt' must end in one of \['.csv', '.npz'"):
        load(tmp_path / "d.txt")
    with pytest.raises(ValueError, match=r"does not exist"):
        load(tmp_path / "nope.npz")


# ---- npz ---------------------------------------------------------------------------------------


def test_npz_contract_passes_through_with_int64_labels(tmp_path):
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x_calib=x[:4], x_test=x[4:], y_test=np.arange(6.0), extra=x)
    got = load(tmp_path / "d.npz")
    assert set(got.arrays) == {"x_calib", "x_test", "y_test"} and got.split["kind"] == "given"
    np.testing.assert_array_equal(got.arrays["x_test"], x[4:])
    assert got.arrays["y_test"].dtype == np.int64 and got.split["ignored"] == ["extra"]
    assert got.split["counts"] == {"calib": 4, "test": 6}


def test_npz_multi_input_labeled_set_is_split_row_aligned(tmp_path):
    ids = np.arange(50 * 5, dtype=np.int64).reshape(50, 5)
    y = np.arange(50) % 2
    np.savez_compressed(tmp_path / "m.npz", **{"x.input_ids": ids, "x.mask": ids * 2, "y": y})
    got = load(tmp_path / "m.npz", train=True, seed=3).arrays
    assert set(got) == {f"x_{s}.{n}" for s in FRACTIONS_TRAIN for n in ("input_ids", "mask")} | {
        "y_test", "y_train"}  # fmt: skip
    assert got["x_test.input_ids"].dtype == np.int64 and got["x_test.input_ids"].shape == (15, 5)
    for s in FRACTIONS_TRAIN:
        np.testing.assert_array_equal(got[f"x_{s}.mask"], got[f"x_{s}.input_ids"] * 2)
    np.testing.assert_array_equal(got["y_train"], got["x_train.input_ids"][:, 0] // 5 % 2)
    np.savez(
        tmp_path / "g.npz", **{f"x_{s}.{n}": ids[:3] for s in ("calib", "test") for n in "ab"}
    )
    assert load(tmp_path / "g.npz").split["counts"] == {"calib": 3, "test": 3}


def test_npz_unlabeled_set_is_split_at_random(tmp_path):
    np.savez(tmp_path / "u.npz", x=np.zeros((10, 2), np.float32))
    got = load(tmp_path / "u.npz")
    assert set(got.arrays) == {"x_calib", "x_test"} and got.split["kind"] == "random"
    assert got.split["counts"] == {"calib": 4, "test": 6}


@pytest.mark.parametrize(
    ("arrays", "match"),
    [({"x": np.zeros((1, 3))}, r"`n >= 2` examples must hold to split into calib/test, but 'b.npz' has n=1"),
     ({"x": np.zeros((0, 3))}, r"`x` in 'b.npz' must be a non-empty batch, but got shape \(0, 3\)"),
     ({"x": np.array([[0.0, np.nan]] * 4)}, r"`x` in 'b.npz' must be finite, but 4 values are NaN/inf"),
     ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 0.5, 1])}, r"`y` in 'b.npz' must be integer class labels.*0.5"),
     ({"x": np.zeros((4, 2)), "y": np.array([0, -1, 0, 1])}, r"`y >= 0` must hold in 'b.npz', but got min -1"),
     ({"x": np.zeros((4, 2)), "y": np.array([0, 1])}, r"one length, but got \{'x': 4, 'y': 2\}"),
     ({"x": np.zeros((4, 2)), "x.a": np.zeros((4, 2))}, r"either `x` or `x.<input>`"),
     ({"x": np.zeros((4, 2)), "x_test": np.zeros((4, 2))}, r"either x_test/x_calib or one set x"),
     ({"x_test": np.zeros((4, 2))}, r"'b.npz' must hold `x_calib`"),
     ({"x_test": np.zeros((4, 2)), "x_calib": np.zeros((4, 3))}, r"`x_calib.shape\[1:\]` must equal"),
     ({"x_test": np.zeros((4, 2)), "x_calib.a": np.zeros((4, 2))}, r"same inputs"),
     ({"x_test": np.zeros((4, 2)), "x_calib": np.zeros((2, 2)), "y_test": np.zeros(3, int)},
      r"`y_test` in 'b.npz' must give one label per example of x_test, but got 3 labels for 4"),
     ({"z": np.zeros(3)}, r"must hold x_test and x_calib, or one set x, but has \['z'\]"),
     ({"x": np.array(["a", "b", "c"])}, r"`x` in 'b.npz' must hold real numbers, but got dtype <U1")],
)  # fmt: skip
def test_bad_npz(tmp_path, arrays, match):
    np.savez(tmp_path / "b.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        load(tmp_path / "b.npz")


def test_npz_too_few_for_a_train_split(tmp_path):
    np.savez(tmp_path / "b.npz", x=np.zeros((2, 3)), y=np.array([0, 1]))
    assert load(tmp_path / "b.npz").split["counts"] == {"calib": 1, "test": 1}
    with pytest.raises(ValueError, match=r"`n >= 3` examples must hold to split into "
                                         r"calib/test/train, but 'b.npz' has n=2"):  # fmt: skip
        load(tmp_path / "b.npz", train=True)


def test_npz_is_never_unpickled_nor_trusted_for_its_declared_shape(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ValueError, match=r"array 'x.npy' of 'o.npz' is not a readable .npy"):
        load(tmp_path / "o.npz")
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**10,)}
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, header)
    _zip(tmp_path / "h.npz", {"x.npy": npy.getvalue() + bytes(16)})
    with pytest.raises(ValueError, match=r"'x.npy' of 'h.npz'.*shape larger than its data"):
        load(tmp_path / "h.npz")


# ---- tables ------------------------------------------------------------------------------------


def _frame(n=30) -> pd.DataFrame:
    i = np.arange(n)
    return pd.DataFrame({"a": i, "b": i * 0.5, "flag": i % 2 == 0, "label": i % 3})


def test_csv_and_parquet_give_float32_features_and_labels(tmp_path):
    df = _frame()
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet")
    for name in ("t.csv", "t.parquet"):
        got = load(tmp_path / name, train=True)
        a = got.arrays
        assert a["x_train"].dtype == np.float32 and a["x_train"].shape == (15, 3)
        assert got.split["counts"] == {"calib": 6, "test": 9, "train": 15}
        np.testing.assert_array_equal(a["y_test"], a["x_test"][:, 0].astype(int) % 3)
        np.testing.assert_array_equal(a["x_test"][:, 1], a["x_test"][:, 0] * 0.5)
        assert got.split["features"] == ["a", "b", "flag"] and got.split["source"] == name[2:]
        assert got.split["class_counts"]["train"] == [5, 5, 5]


def test_table_without_the_label_column_is_unlabeled(tmp_path):
    _frame().rename(columns={"label": "cls"}).to_csv(tmp_path / "t.csv", index=False)
    got = load(tmp_path / "t.csv")
    assert "y_test" not in got.arrays and got.arrays["x_test"].shape == (18, 4)
    assert got.split["kind"] == "random" and got.split["label"] is None
    labeled = load(tmp_path / "t.csv", label="cls")
    assert labeled.arrays["x_test"].shape == (18, 3) and labeled.split["kind"] == "stratified"


@pytest.mark.parametrize(
    ("text", "match"),
    [("a,color,label\n1,red,0\n2,blue,1\n", r"feature column 'color' of 't.csv' must be numeric"),
     ("a,b,label\n1,,0\n2,3,1\n", r"feature column 'b' of 't.csv' must be finite, but has 1"),
     ("a,label\n1,0.5\n2,1\n", r"`label` in 't.csv' must be integer class labels.*0.5"),
     ("a,label\n1,cat\n2,dog\n", r"`label` in 't.csv' must be integer class labels"),
     ("a,label\n", r"'t.csv' must hold at least one row"),
     ("label\n1\n2\n", r"must have feature columns besides 'label'"),
     ("", r"'t.csv' is not a readable csv file")],
)  # fmt: skip
def test_bad_csv(tmp_path, text, match):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(ValueError, match=match):
        load(tmp_path / "t.csv")


def test_parquet_uncompressed_size_is_checked_before_reading(tmp_path, monkeypatch):
    pd.DataFrame({"a": np.zeros(500_000)}).to_parquet(tmp_path / "z.parquet")
    monkeypatch.setenv("OPTIM_MAX_UNZIPPED_MB", "1")
    with pytest.raises(ValueError, match=r"`decoded size <= 1,000,000 bytes` must hold for "
                                         r"'z.parquet', but its 500,000 rows need 4,000,000"):  # fmt: skip
        load(tmp_path / "z.parquet")
    pd.DataFrame({"a": [1, 2], "color": ["red", "blue"]}).to_parquet(tmp_path / "s.parquet")
    with pytest.raises(
        ValueError, match=r"column 'color' of 's.parquet' must be numeric, but got large_string"
    ):
        load(tmp_path / "s.parquet")
    (tmp_path / "n.parquet").write_bytes(b"PAR1 nope")
    with pytest.raises(ValueError, match=r"'n.parquet' is not a readable parquet file"):
        load(tmp_path / "n.parquet")


def test_every_error_is_one_line(tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"x" * 100)
    z = _zip(tmp_path / "img.zip", _folder() | {"cat/x.png": b"\x89PNG\r\n\x1a\n garbage"})
    for path in (tmp_path / "bad.zip", z):
        with pytest.raises(ValueError) as e:
            load(path)
        assert "\n" not in str(e.value)
