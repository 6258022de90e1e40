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
512, :func:`optim.archive.limit`); zips (the ``.npz`` is one too) go through the member checks
of :mod:`optim.archive` and are read in memory (nothing is written); ``OPTIM_MAX_UNZIPPED_MB``
also bounds decoded and resized pixels (:mod:`optim.images`) and parquet's decoded size.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optim import archive
from optim.images import Preprocess, read_folder

__all__ = ["FRACTIONS", "FRACTIONS_TRAIN", "Loaded", "Preprocess", "load"]

FRACTIONS = {"calib": 0.4, "test": 0.6}  # no training: a larger test split, tighter intervals
FRACTIONS_TRAIN = {"calib": 0.2, "test": 0.3, "train": 0.5}  # fine-tuning needs the most data
_CONTRACT = re.compile(r"x_(calib|test|train)(\..+)?|y_(test|train)")
_LABELED = re.compile(r"x(\..+)?|y")


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
    limit = archive.limit("OPTIM_MAX_DATA_MB") if max_bytes is None else max_bytes
    if (size := path.stat().st_size) > limit:
        raise ValueError(f"`size <= {limit:,} bytes` must hold for {where!r}, but got {size:,}")
    raw, info, classes = reader(path, where, preprocess=preprocess, label=label)
    # inputs fed whole to every call (a model's initial state, a sample rate): never split
    fixed = {k: raw.pop(k) for k in [k for k in raw if k.startswith("x_fixed.")]}
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
    return Loaded(arrays | fixed, info, classes)


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


def _npz(path: Path, where: str, **_: object) -> tuple[dict[str, np.ndarray], dict, tuple]:
    files = archive.read_zip(path, where)
    arrays = {
        n[:-4]: archive.read_npy(d, n, where) for n, d in files.items() if n.endswith(".npy")
    }
    return arrays, {}, ()


def _parquet(path: Path, where: str) -> object:
    """A parquet file as a DataFrame, its decoded size checked from the schema before reading."""
    import pyarrow.parquet as pq
    from pyarrow import types

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - any parse failure is the same user error
        raise ValueError(
            f"{where!r} is not a readable parquet file ({archive.one_line(e)})"
        ) from None
    fields = [pf.schema_arrow.field(i) for i in range(len(pf.schema_arrow))]
    for f in fields:  # fixed-width numbers only, so the decoded size is known up front
        if not (types.is_integer(f.type) or types.is_floating(f.type) or types.is_boolean(f.type)):
            raise ValueError(f"column {f.name!r} of {where!r} must be numeric, but got {f.type}")
    limit = archive.limit("OPTIM_MAX_UNZIPPED_MB")
    decoded = pf.metadata.num_rows * sum(max(1, f.type.bit_width // 8) for f in fields)
    if decoded > limit:
        raise ValueError(f"`decoded size <= {limit:,} bytes` must hold for {where!r}, but its "
                         f"{pf.metadata.num_rows:,} rows need {decoded:,}")  # fmt: skip
    try:
        return pf.read().to_pandas()
    except Exception as e:  # noqa: BLE001
        raise ValueError(
            f"{where!r} is not a readable parquet file ({archive.one_line(e)})"
        ) from None


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
            raise ValueError(
                f"{where!r} is not a readable csv file ({archive.one_line(e)})"
            ) from None
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
    ".npz": _npz, ".zip": read_folder, ".csv": _table, ".parquet": _table,
}  # fmt: skip
