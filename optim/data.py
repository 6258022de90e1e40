"""Data a user brings for an ONNX model, in the forms people have, turned into the npz contract.

The contract (what :func:`optim.sources.onnx_source` reads): ``x_calib`` and ``x_test``, batch
first, optional ``y_test`` (int64 labels, shape (N,)), optional ``x_train``/``y_train``. A model
with several graph inputs names each after a dot: ``x_test.input_ids``, ``x_test.attention_mask``.

Formats (by extension): ``.npz`` (the contract itself, or one labeled set ``x``/``x.<input>`` +
``y``, read with ``allow_pickle=False``, dtypes kept); ``.zip`` of an image folder (one folder
per class, PNG/JPEG/BMP, optional ``preprocess.json`` at its root; float32); ``.csv`` /
``.parquet`` (numeric feature columns + an integer label column; float32 (N, F)).

One labeled set is split deterministically (seeded; stratified by label, so every class keeps
its share in every split): :data:`FRACTIONS` calib 40 % / test 60 %, or with ``train=True``
:data:`FRACTIONS_TRAIN` calib 20 % / test 30 % / train 50 %.

Uploads come from a browser, so before parsing: a file-size limit (``OPTIM_MAX_DATA_MB``, default
512); for zips (the ``.npz`` is one too) member names without ``..``, absolute paths, backslashes
or drive letters, no symlinks, at most ``OPTIM_MAX_ZIP_MEMBERS`` (default 100,000) members, a
declared uncompressed total within ``OPTIM_MAX_UNZIPPED_MB`` (default 2048; also enforced while
reading, on decoded and resized pixels and on parquet's decoded size) and no member over
:data:`MAX_RATIO` times its compressed size. Members are read in memory: nothing is written.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

FRACTIONS = {"calib": 0.4, "test": 0.6}  # no training: a larger test split, tighter intervals
FRACTIONS_TRAIN = {"calib": 0.2, "test": 0.3, "train": 0.5}  # fine-tuning needs the most data
MAX_RATIO = 200  # deflate reaches ~1000:1 only on degenerate data; real images stay far below
RATIO_MIN_BYTES = 1 << 20  # small members may compress well (a solid BMP) and cannot hurt
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_FORMATS = ("PNG", "JPEG", "BMP")  # decoded format, whatever the extension claims
_CONTRACT = re.compile(r"x_(calib|test|train)(\..+)?|y_(test|train)")
_LABELED = re.compile(r"x(\..+)?|y")
_CHUNK = 1 << 20


LIMITS = {  # environment variable: (default, unit) -- read on every call, so tests may set them
    "OPTIM_MAX_DATA_MB": (512, 1e6),  # the file itself, before any parsing
    "OPTIM_MAX_UNZIPPED_MB": (2048, 1e6),  # unpacked zip members, decoded pixels, parquet
    "OPTIM_MAX_ZIP_MEMBERS": (100_000, 1),  # ImageNet's validation set is 50,000 images
}


def _limit(name: str) -> int:
    default, unit = LIMITS[name]
    raw = os.environ.get(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"`{name} > 0` must hold, but got {raw!r}")
    return int(value * unit)


def _line(e: BaseException) -> str:
    """An exception as one line (Pillow and pandas messages may span several)."""
    return " ".join(str(e).split()) or type(e).__name__


def _is_size(v: object) -> bool:
    def pos(i: object) -> bool:
        return isinstance(i, int) and not isinstance(i, bool) and i > 0

    return v is None or pos(v) or (isinstance(v, tuple) and len(v) == 2 and all(map(pos, v)))


@dataclass(frozen=True)
class Preprocess:
    """Declared image preprocessing, applied in this order: resize, center crop, scale to [0, 1],
    channel order, ``(x - mean) / std``, layout. The same fields may sit in ``preprocess.json``.

    Example:
        >>> Preprocess(size=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    """

    size: int | tuple[int, int] | None = None  # int: shorter side (aspect kept); (H, W): exact
    crop: int | tuple[int, int] | None = None  # center crop to (c, c) or (H, W)
    mean: tuple[float, ...] = (0.0,)  # one value (all channels) or one per channel, in the
    std: tuple[float, ...] = (1.0,)  # order of `channels` (BGR means for a BGR model)
    channels: str = "RGB"  # "RGB", "BGR" or "L" (grayscale, one channel)
    layout: str = "NCHW"  # or "NHWC"

    def __post_init__(self) -> None:
        for name in ("size", "crop", "mean", "std"):
            if isinstance(getattr(self, name), list):  # from JSON
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("size", "crop"):
            if not _is_size(v := getattr(self, name)):
                raise ValueError(f"`{name}` must be None, an int > 0 or (H, W), but got {v!r}")
        if self.channels not in ("RGB", "BGR", "L"):
            raise ValueError(
                f"`channels in ('RGB', 'BGR', 'L')` must hold, but got {self.channels!r}"
            )
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"`layout in ('NCHW', 'NHWC')` must hold, but got {self.layout!r}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            ok = isinstance(v, tuple) and len(v) in (1, len(self.channels))
            if not ok or not all(isinstance(f, int | float) and math.isfinite(f) for f in v):
                raise ValueError(
                    f"`{name}` must be 1 or {len(self.channels)} finite numbers for "
                    f"channels={self.channels!r}, but got {name}={v!r}"
                )
        if min(self.std) <= 0:
            raise ValueError(f"`std > 0` must hold, but got std={self.std}")


@dataclass(frozen=True)
class Loaded:
    """What :func:`load` read: the contract arrays, what was done (JSON-able), class names."""

    arrays: dict[str, np.ndarray]  # the npz contract
    split: dict  # source, kind ("given"/"stratified"/"random"), seed, fractions, counts, ...
    classes: tuple[str, ...] = ()  # image folders' names in label order (sorted)


def load(
    path: str | Path,
    *,
    seed: int = 0,
    train: bool = False,
    preprocess: Preprocess | None = None,
    label: str = "label",
    max_bytes: int | None = None,
) -> Loaded:
    """Read a data file (``.npz``, image-folder ``.zip``, ``.csv``, ``.parquet``) into the npz
    contract, splitting one labeled set into calib/test (and train) deterministically.

    Args:
        path: the file; its extension picks the reader.
        seed: seed of the split (the same seed gives the same split).
        train: also split off a ``train`` set (:data:`FRACTIONS_TRAIN`, not :data:`FRACTIONS`);
            an ``.npz`` that already holds the splits is returned as it is.
        preprocess: image preprocessing; overrides a ``preprocess.json`` in the zip.
        label: the label column of a table; a table without it is unlabeled.
        max_bytes: largest file accepted; default ``OPTIM_MAX_DATA_MB`` (512) MB.

    Raises:
        ValueError: one line naming the file or array and the rule it breaks.

    Example:
        >>> loaded = load("pets.zip", preprocess=Preprocess(size=(64, 64)))  # doctest: +SKIP
        >>> loaded.arrays["x_test"].shape, loaded.split["counts"]  # doctest: +SKIP
    """
    path = Path(path)
    where = path.name
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"data file {where!r} must end in one of {sorted(_READERS)}")
    limit = _limit("OPTIM_MAX_DATA_MB") if max_bytes is None else max_bytes
    if (size := path.stat().st_size) > limit:
        raise ValueError(f"`size <= {limit:,} bytes` must hold for {where!r}, but got {size:,}")
    raw, info, classes = reader(path, where, preprocess=preprocess, label=label)
    info = {"source": path.suffix.lower()[1:], **info}
    if any(_CONTRACT.fullmatch(k) for k in raw):
        if any(_LABELED.fullmatch(k) for k in raw):
            raise ValueError(f"{where!r} must hold either x_test/x_calib or one set x, not both")
        arrays = {k: _labels(v, k, where) if k[0] == "y" else v
                  for k, v in raw.items() if _CONTRACT.fullmatch(k)}  # fmt: skip
        info |= {"kind": "given", "seed": None, "fractions": None}
    else:
        arrays, split = _split(raw, where, seed, FRACTIONS_TRAIN if train else FRACTIONS)
        info |= split
    info["counts"] = _check(arrays, where)
    known = (_CONTRACT.fullmatch(k) or _LABELED.fullmatch(k) for k in raw)
    info.setdefault("ignored", [k for k, ok in zip(raw, known, strict=True) if not ok])
    return Loaded(arrays, info, classes)


def _labels(y: np.ndarray, key: str, where: str) -> np.ndarray:
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu" or y.ndim != 1:
        bad = (
            next((v for v in y.ravel() if v != np.round(v)), None) if y.dtype.kind == "f" else None
        )
        got = f"dtype {y.dtype}, shape {y.shape}" + (f" (e.g. {bad!r})" if bad is not None else "")
        raise ValueError(f"`{key}` in {where!r} must be integer class labels (N,), but got {got}")
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"`{key} >= 0` must hold in {where!r}, but got min {int(y.min())}")
    return y.astype(np.int64)


def _check_x(a: np.ndarray, key: str, where: str) -> None:
    if a.dtype.kind not in "biuf":
        raise ValueError(f"`{key}` in {where!r} must hold real numbers, but got dtype {a.dtype}")
    if a.ndim < 1 or len(a) == 0:
        raise ValueError(
            f"`{key}` in {where!r} must be a non-empty batch, but got shape {a.shape}"
        )
    if a.dtype.kind == "f" and (bad := int(a.size - np.count_nonzero(np.isfinite(a)))):
        raise ValueError(f"`{key}` in {where!r} must be finite, but {bad:,} values are NaN/inf")


def _check(arrays: dict[str, np.ndarray], where: str) -> dict[str, int]:
    """Check the contract; return the count of examples per split."""
    inputs: dict[str, dict[str, np.ndarray]] = {}
    for key, a in arrays.items():
        if key[0] == "x":
            _check_x(a, key, where)
            s, _, name = key[2:].partition(".")
            inputs.setdefault(s, {})[name] = a
    for s in ("calib", "test"):
        if s not in inputs:
            raise ValueError(
                f"{where!r} must hold `x_{s}` (or `x_{s}.<input>`), but has {sorted(arrays)}"
            )
    names = set(inputs["test"])
    counts = {}
    for s, group in inputs.items():
        if set(group) != names or ("" in names and len(names) > 1):
            raise ValueError(
                f"every split in {where!r} must have the same inputs (either `x_{s}` or "
                f"`x_{s}.<input>`), but got test: {sorted(names)}, {s}: {sorted(group)}"
            )
        if len(lens := {len(a) for a in group.values()}) > 1:
            raise ValueError(
                f"the inputs of `x_{s}` in {where!r} must have one length, but got {lens}"
            )
        counts[s] = lens.pop()
        for name, a in group.items():
            if a.shape[1:] != inputs["test"][name].shape[1:]:
                raise ValueError(
                    f"`x_{s}{'.' * bool(name)}{name}.shape[1:]` must equal x_test's in {where!r}, "
                    f"but got {a.shape[1:]} and {inputs['test'][name].shape[1:]}"
                )
    for s in ("test", "train"):
        if (y := arrays.get(f"y_{s}")) is not None and len(y) != counts.get(s):
            raise ValueError(
                f"`y_{s}` in {where!r} must give one label per example of x_{s}, but got "
                f"{len(y)} labels for {counts.get(s, 0)} examples"
            )
    return counts


def _split(
    raw: dict[str, np.ndarray], where: str, seed: int, fractions: dict[str, float]
) -> tuple[dict[str, np.ndarray], dict]:
    """Split one labeled set ``x``/``x.<input>`` (+ ``y``) into the contract."""
    xs = {k[1:]: a for k, a in raw.items() if k == "x" or k.startswith("x.")}
    if not xs:
        raise ValueError(
            f"{where!r} must hold x_test and x_calib, or one set x, but has {sorted(raw)}"
        )
    if "" in xs and len(xs) > 1:
        raise ValueError(f"{where!r} must hold either `x` or `x.<input>` arrays, not both")
    for suffix, a in xs.items():
        _check_x(a, f"x{suffix}", where)
    y = _labels(raw["y"], "y", where) if "y" in raw else None
    lens = {f"x{k}": len(a) for k, a in xs.items()} | ({"y": len(y)} if y is not None else {})
    if len(set(lens.values())) > 1:
        raise ValueError(f"the arrays of {where!r} must have one length, but got {lens}")
    n, k = next(iter(lens.values())), len(fractions)
    if n < k:
        raise ValueError(f"`n >= {k}` examples must hold to split into {'/'.join(fractions)}, "
                         f"but {where!r} has n={n}")  # fmt: skip
    raw_counts = [n * f for f in fractions.values()]
    counts = [int(r) for r in raw_counts]  # largest remainder, then at least one per split
    by_remainder = sorted(range(k), key=lambda i: counts[i] - raw_counts[i])
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    for i in range(k):
        if counts[i] == 0:
            counts[int(np.argmax(counts))] -= 1
            counts[i] = 1
    # systematic sampling: split j takes positions (m + 0.5) / counts[j] of an order that is
    # random within each class and class after class, so each class is shared out in proportion
    keys = np.concatenate([(np.arange(c) + 0.5) / c for c in counts])
    pattern = np.repeat(np.arange(k), counts)[np.argsort(keys, kind="stable")]
    order = np.random.default_rng(seed).permutation(n)
    if y is not None:
        order = order[np.argsort(y[order], kind="stable")]
    which = np.empty(n, np.int64)
    which[order] = pattern
    arrays: dict[str, np.ndarray] = {}
    class_counts = {}
    for j, s in enumerate(fractions):
        idx = np.flatnonzero(which == j)
        arrays |= {f"x_{s}{suffix}": a[idx] for suffix, a in xs.items()}
        if y is not None:
            class_counts[s] = np.bincount(y[idx], minlength=int(y.max()) + 1).tolist()
            if s != "calib":
                arrays[f"y_{s}"] = y[idx]
    info = {"kind": "random" if y is None else "stratified", "seed": seed, "fractions": fractions}
    return arrays, info | ({"class_counts": class_counts} if y is not None else {})


def _read_zip(path: Path, where: str) -> dict[str, bytes]:
    """Every member (directories as ``name/`` -> b""), after the checks, read in memory."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ValueError(f"{where!r} is not a readable zip file ({_line(e)})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > (count := _limit("OPTIM_MAX_ZIP_MEMBERS")):
            raise ValueError(
                f"`members <= {count:,}` must hold for {where!r}, but got {len(infos):,}"
            )
        for i in infos:
            name = i.filename
            if (
                "\\" in name
                or name.startswith("/")
                or re.match(r"[A-Za-z]:", name)
                or ".." in (PurePosixPath(name).parts)
            ):
                raise ValueError(f"member {name!r} of {where!r} must be a plain relative path")
            if (i.external_attr >> 16) & 0o170000 == 0o120000:
                raise ValueError(f"member {name!r} of {where!r} is a symlink, which is refused")
            if i.file_size > RATIO_MIN_BYTES and i.file_size > MAX_RATIO * i.compress_size:
                raise ValueError(f"member {name!r} of {where!r} must compress at most "
                                 f"{MAX_RATIO}:1, but got {i.file_size:,} from {i.compress_size:,} "
                                 f"bytes")  # fmt: skip
        if (declared := sum(i.file_size for i in infos)) > (
            most := _limit("OPTIM_MAX_UNZIPPED_MB")
        ):
            raise ValueError(f"`uncompressed size <= {most:,} bytes` must hold for "
                             f"{where!r}, but its members declare {declared:,}")  # fmt: skip
        out, total = {}, 0
        for i in infos:
            parts, size = [], 0
            try:
                with zf.open(i) as f:
                    while (chunk := f.read(_CHUNK)) and size <= i.file_size and total <= most:
                        size, total = size + len(chunk), total + len(chunk)
                        parts.append(chunk)
            except Exception as e:  # noqa: BLE001 - corrupt, encrypted, bad CRC: one user error
                raise ValueError(f"member {i.filename!r} of {where!r} cannot be read "
                                 f"({_line(e)})") from None  # fmt: skip
            if size > i.file_size or total > most:  # a header that lied about its size
                raise ValueError(f"member {i.filename!r} of {where!r} unpacks past its declared "
                                 "size or the OPTIM_MAX_UNZIPPED_MB limit")  # fmt: skip
            out[i.filename] = b"".join(parts)
    return out


def _npz(path: Path, where: str, **_: object) -> tuple[dict[str, np.ndarray], dict, tuple]:
    fmt = np.lib.format
    arrays = {}
    for name, data in _read_zip(path, where).items():
        if not name.endswith(".npy"):
            continue
        f = io.BytesIO(data)
        try:  # the header first: a declared shape must fit in the bytes that hold it
            version = fmt.read_magic(f)
            read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}[version]
            shape, _, dtype = read(f)
            if dtype.hasobject or math.prod(shape) * dtype.itemsize > len(data):
                raise ValueError("object arrays or a shape larger than its data are refused")
            arrays[name[:-4]] = fmt.read_array(io.BytesIO(data), allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - any parse failure is the same user error
            raise ValueError(
                f"array {name!r} of {where!r} is not a readable .npy ({_line(e)})"
            ) from None
    return arrays, {}, ()


def _resized(wh: tuple[int, int], size: int | tuple[int, int] | None) -> tuple[int, int]:
    """(W, H) after resizing to ``size``: the shorter side (torchvision's Resize) or (H, W)."""
    (w, h), short = wh, min(wh)
    if size is None or isinstance(size, tuple):
        return wh if size is None else (size[1], size[0])
    return (size, int(size * h / w)) if w == short else (int(size * w / h), size)


def _image(
    data: bytes, name: str, where: str, pp: Preprocess, budget: int
) -> tuple[np.ndarray, int]:
    """One image -> ((C, H, W) or (H, W, C) float32, bytes it needs), within ``budget`` bytes."""
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(data))
        if im.format not in IMAGE_FORMATS:
            raise ValueError(f"format {im.format} is not one of {IMAGE_FORMATS}")
        w, h = _resized(im.size, pp.size)
        used = im.width * im.height * len(im.getbands()) + w * h * len(pp.channels) * 4
        if used > budget:  # before decoding: a small PNG may declare a huge canvas
            raise OverflowError
        im = im.convert("L" if pp.channels == "L" else "RGB")
    except OverflowError:
        raise ValueError(f"image {name!r} of {where!r} decodes (and resizes) past the "
                         "OPTIM_MAX_UNZIPPED_MB limit") from None  # fmt: skip
    except Exception as e:  # noqa: BLE001 - any decoder failure is the same user error
        raise ValueError(f"image {name!r} of {where!r} cannot be decoded ({_line(e)})") from None
    if (w, h) != im.size:
        im = im.resize((w, h), Image.Resampling.BILINEAR)
    if pp.crop is not None:
        ch, cw = (pp.crop, pp.crop) if isinstance(pp.crop, int) else pp.crop
        if ch > im.height or cw > im.width:
            raise ValueError(f"`crop <= image size` must hold for {name!r} of {where!r}, but got "
                             f"crop ({ch}, {cw}) of ({im.height}, {im.width})")  # fmt: skip
        top, left = round((im.height - ch) / 2), round((im.width - cw) / 2)
        im = im.crop((left, top, left + cw, top + ch))
    a = np.asarray(im, np.float32).reshape(im.height, im.width, -1) / 255.0  # (H, W, C)
    if pp.channels == "BGR":
        a = a[..., ::-1]
    a = (a - np.float32(pp.mean)) / np.float32(pp.std)
    a = a.transpose(2, 0, 1) if pp.layout == "NCHW" else a
    return np.ascontiguousarray(a, np.float32), used


def _read_preprocess(data: bytes, where: str) -> Preprocess:
    try:
        d = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"preprocess.json of {where!r} is not valid JSON ({_line(e)})") from None
    fields = [f.name for f in dataclasses.fields(Preprocess)]
    if not isinstance(d, dict) or set(d) - set(fields):
        raise ValueError(f"preprocess.json of {where!r} must be an object with keys from "
                         f"{fields}, but got {d if not isinstance(d, dict) else sorted(d)!r}")  # fmt: skip
    try:
        return Preprocess(**d)
    except ValueError as e:
        raise ValueError(f"preprocess.json of {where!r}: {e}") from None


def _image_folder(
    path: Path, where: str, preprocess: Preprocess | None = None, **_: object
) -> tuple[dict[str, np.ndarray], dict, tuple[str, ...]]:
    files = _read_zip(path, where)
    parts = {n: PurePosixPath(n).parts for n in files}
    parts = {n: p for n, p in parts.items()  # macOS and hidden files are not data
             if p and p[0] != "__MACOSX" and not any(s.startswith(".") for s in p)}  # fmt: skip
    is_img = {n: not n.endswith("/") and n.lower().endswith(IMAGE_EXTS) for n in parts}
    tops = {p[0] for n, p in parts.items() if len(p) > 1 or n.endswith("/")}
    if len(tops) == 1 and all(len(p) >= 3 for n, p in parts.items() if is_img[n]):
        # one top-level folder around the class folders: look inside it
        parts = {n: p[1:] if len(p) > 1 else p for n, p in parts.items()
                 if not (len(p) == 1 and n.endswith("/"))}  # fmt: skip
    root = {p[0]: n for n, p in parts.items() if len(p) == 1 and not n.endswith("/")}
    if images_at_root := [n for n in root.values() if is_img[n]]:
        raise ValueError(f"images in {where!r} must sit in one folder per class, but "
                         f"{images_at_root[0]!r} is at the root")  # fmt: skip
    folders = sorted({p[0] for n, p in parts.items() if len(p) > 1 or n.endswith("/")})
    images = sorted((parts[n][0], n) for n in parts if is_img[n])
    if not folders:
        raise ValueError(f"{where!r} must hold one folder of images per class, but has none")
    if empty := sorted(set(folders) - {c for c, _ in images}):
        raise ValueError(f"class folder {empty[0]!r} of {where!r} must hold PNG/JPEG/BMP images, "
                         "but holds none")  # fmt: skip
    if preprocess is not None:
        pp, declared = preprocess, "argument"
    elif "preprocess.json" in root:
        pp, declared = _read_preprocess(files[root["preprocess.json"]], where), "preprocess.json"
    else:
        pp, declared = Preprocess(), "default"
    budget, xs = _limit("OPTIM_MAX_UNZIPPED_MB"), []
    for _, name in images:
        a, used = _image(files[name], name, where, pp, budget)
        budget -= used
        if a.shape != (first := xs[0] if xs else a).shape:
            raise ValueError(
                f"images in {where!r} must have one size after preprocessing, but "
                f"{images[0][1]!r} gives {first.shape} and {name!r} {a.shape}; declare `size` "
                "(H, W) or `crop` in preprocess.json or preprocess="
            )
        xs.append(a)
    y = np.array([folders.index(c) for c, _ in images], np.int64)
    ignored = sorted(n for n in parts if not is_img[n] and not n.endswith("/"))
    ignored = [n for n in ignored if n != root.get("preprocess.json")]
    info = {"classes": folders, "preprocess": dataclasses.asdict(pp), "preprocess_from": declared}
    return {"x": np.stack(xs), "y": y}, info | {"ignored": ignored}, tuple(folders)


def _parquet(path: Path, where: str) -> object:
    """A parquet file as a DataFrame, its decoded size checked from the schema before reading."""
    import pyarrow.parquet as pq
    from pyarrow import types

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - any parse failure is the same user error
        raise ValueError(f"{where!r} is not a readable parquet file ({_line(e)})") from None
    fields = [pf.schema_arrow.field(i) for i in range(len(pf.schema_arrow))]
    for f in fields:  # fixed-width numbers only, so the decoded size is known up front
        if not (types.is_integer(f.type) or types.is_floating(f.type) or types.is_boolean(f.type)):
            raise ValueError(f"column {f.name!r} of {where!r} must be numeric, but got {f.type}")
    limit = _limit("OPTIM_MAX_UNZIPPED_MB")
    decoded = pf.metadata.num_rows * sum(max(1, f.type.bit_width // 8) for f in fields)
    if decoded > limit:
        raise ValueError(f"`decoded size <= {limit:,} bytes` must hold for {where!r}, but its "
                         f"{pf.metadata.num_rows:,} rows need {decoded:,}")  # fmt: skip
    try:
        return pf.read().to_pandas()
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{where!r} is not a readable parquet file ({_line(e)})") from None


def _table(
    path: Path, where: str, label: str = "label", **_: object
) -> tuple[dict[str, np.ndarray], dict, tuple]:
    import pandas as pd

    if path.suffix.lower() == ".parquet":
        df = _parquet(path, where)
    else:
        try:
            df = pd.read_csv(path)
        except Exception as e:  # noqa: BLE001 - any parse failure is the same user error
            raise ValueError(f"{where!r} is not a readable csv file ({_line(e)})") from None
    if len(df) == 0:
        raise ValueError(f"{where!r} must hold at least one row of data, but has none")
    y = _labels(df.pop(label).to_numpy(), label, where) if label in df.columns else None
    if df.shape[1] == 0:
        raise ValueError(f"{where!r} must have feature columns besides {label!r}, but has none")
    for col in df.columns:
        if df[col].dtype.kind not in "biuf":
            raise ValueError(f"feature column {str(col)!r} of {where!r} must be numeric, but "
                             f"got dtype {df[col].dtype}")  # fmt: skip
    x = df.to_numpy(np.float32, na_value=np.nan)  # (N, F)
    if (bad := ~np.isfinite(x).all(axis=0)).any():
        col = str(df.columns[int(np.argmax(bad))])
        raise ValueError(f"feature column {col!r} of {where!r} must be finite, but has "
                         f"{int((~np.isfinite(x)).sum()):,} NaN/inf/empty values")  # fmt: skip
    info = {"features": [str(c) for c in df.columns], "label": label if y is not None else None}
    return {"x": x} | ({} if y is None else {"y": y}), info, ()


_Reader = Callable[..., tuple[dict[str, np.ndarray], dict, tuple]]
_READERS: dict[str, _Reader] = {
    ".npz": _npz, ".zip": _image_folder, ".csv": _table, ".parquet": _table,
}  # fmt: skip
