"""Models uploaded in the browser, kept under ``$OPTIM_HOME/uploads`` by content hash.

Layout (one folder per ONNX file, named by its sha256; a re-upload reuses it)::

    uploads/
      index.json                    {name: <sha256 of the .onnx>}
      <sha256 of the .onnx>/
        model.onnx                  the file as uploaded
        data-<sha256[:16]>.<ext>    each data file uploaded with it (.npz, .zip, .csv, .parquet)
        manifest.json               original names, hashes, sizes, times, the intake report

An upload is written to a staging folder next to these and goes through the intake there
(:func:`optim.sources.onnx_source`); only when it passes is it moved into place and named in the
index, so a refused file leaves nothing behind. Size limits apply before anything is parsed.
Uploaded files are read as data only: never imported, unpickled or ``torch.load``-ed.
JSON files are replaced atomically (tempfile + ``os.replace``) under a lock, so a worker process
that resolves a model by name (same ``OPTIM_HOME``) always reads a whole index.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optim.sources import ModelSource, onnx_source

DATA_SUFFIXES = (".npz", ".zip", ".csv", ".parquet")
MAX_NAME = 64
MAX_MEMBERS = 100_000  # files in a data archive (as optim.data: ImageNet val has 50,000)


def root() -> Path:
    """``$OPTIM_HOME/uploads``."""
    from optim.store import home

    return home() / "uploads"


def _mb(name: str, default: float) -> int:
    raw = os.environ.get(name, str(default))
    try:
        mb = float(raw)
    except ValueError:
        mb = float("nan")
    if not mb > 0:
        raise ValueError(f"`{name} > 0` must hold, but got {raw!r}")
    return int(mb * 1e6)


def max_data_bytes() -> int:
    """Largest data file accepted: ``OPTIM_MAX_DATA_MB`` (default 512, as :mod:`optim.data`)."""
    return _mb("OPTIM_MAX_DATA_MB", 512)


def max_unzipped_bytes() -> int:
    """Largest declared unpacked size of an archive: ``OPTIM_MAX_UNZIPPED_MB`` (default 2048)."""
    return _mb("OPTIM_MAX_UNZIPPED_MB", 2048)


# ------------------------------------------------------------------ the index and manifests


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def _write(path: Path, obj: dict) -> None:
    """Whole or not at all: a reader sees the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _locked() -> Iterator[Path]:
    """One writer at a time (tabs, server processes) for the index and the manifests."""
    base = root()
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield base


def _index() -> dict[str, str]:
    return _read(root() / "index.json")


def _entry(name: str) -> tuple[Path, dict, dict]:
    """(folder, its manifest, this name's record in it) of an uploaded model."""
    folder = root() / _index()[name]
    manifest = _read(folder / "manifest.json")
    if name not in manifest.get("names", {}):
        raise ValueError(f"uploaded model {name!r} has lost its files under {str(folder)!r}")
    return folder, manifest, manifest["names"][name]


# ------------------------------------------------------------------ the public API


def names() -> list[str]:
    """Names of the uploaded models, in the order they were added."""
    return list(_index())


def describe(name: str) -> str:
    """A one-line description of the uploaded model ``name``, from its manifest (no loading)."""
    if name not in _index():
        raise ValueError(f"unknown model {name!r}; uploaded models: {names()}")
    _, manifest, rec = _entry(name)
    data, report = manifest["data"][rec["data"]], rec["intake"]
    return (
        f"uploaded {manifest['model']['original']} with {data['original']}: "
        f"{report['params']:,} parameters, opset {report['opset_after']}"
    )


def info(name: str) -> dict[str, Any]:
    """Everything recorded about an upload: ``model`` and ``data`` (original name, sha256,
    bytes), ``time`` (ISO 8601), ``intake`` (:class:`optim.intake.Report` as a dict) and
    ``data_summary`` (examples, input shape, metric)."""
    if name not in _index():
        raise ValueError(f"unknown model {name!r}; uploaded models: {names()}")
    folder, manifest, rec = _entry(name)
    return {**rec, "name": name, "folder": str(folder), "model": manifest["model"],
            "data": manifest["data"][rec["data"]]}  # fmt: skip


def resolve(spec: str) -> ModelSource | None:
    """The uploaded model named ``spec`` (its intake runs from the cache), or None.

    Works in any process that shares ``OPTIM_HOME``: sweep workers resolve by name.
    """
    if spec not in _index():
        return None
    folder, _, rec = _entry(spec)
    return _load(str(folder / "model.onnx"), str(folder / rec["data"]), spec)


@functools.lru_cache(maxsize=8)
def _load(onnx_path: str, data_path: str, name: str) -> ModelSource:
    # content-addressed paths: the same path always holds the same bytes
    source = onnx_source(onnx_path, data_path, name=name)
    return dataclasses.replace(
        source, description=describe(name), meta={**source.meta, "spec": name}
    )


def add(
    onnx_bytes: bytes,
    data_bytes: bytes,
    data_name: str,
    name: str,
    onnx_name: str = "model.onnx",
) -> ModelSource:
    """Keep an uploaded ONNX model with its data under ``name`` and return its source.

    The files must pass the intake first (a refused upload leaves nothing under
    :func:`root`). The same ONNX file and data uploaded again reuse the stored copy; the same
    bytes under a second name are that model under two names.

    Args:
        onnx_bytes: the ``.onnx`` file (self-contained: no external data).
        data_bytes: its data file; ``data_name``'s suffix says which kind (:data:`DATA_SUFFIXES`).
        data_name: the data file's original name.
        name: what pickers list it as (at most 64 characters, no ``/``, ``\\`` or ``:``).
        onnx_name: the ONNX file's original name (shown in its description).

    Raises:
        ValueError: one line naming the rule the upload broke.

    Example:
        >>> src = add(Path("m.onnx").read_bytes(), Path("d.npz").read_bytes(), "d.npz", "mine")  # doctest: +SKIP
    """  # noqa: E501
    name = check_name(name)
    suffix = Path(data_name).suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise ValueError(
            f"the data file must be one of {', '.join(DATA_SUFFIXES)}, but got {data_name!r}"
        )
    _check_sizes(onnx_bytes, data_bytes, data_name, suffix, onnx_name)
    model_sha = hashlib.sha256(onnx_bytes).hexdigest()
    data_sha = hashlib.sha256(data_bytes).hexdigest()
    data_file = f"data-{data_sha[:16]}{suffix}"
    if (known := _index().get(name)) is not None:
        if known == model_sha and info(name)["data"]["sha256"] == data_sha:
            return resolve(name)  # the same upload again
        raise ValueError(f"model name {name!r} is already taken: pick another or remove it first")
    if data_file in _read(root() / model_sha / "manifest.json").get("data", {}):
        source = None  # these bytes passed the intake before: no staging
    else:
        names = _file_names(onnx_name, data_name, suffix)
        source = _stage_and_commit(onnx_bytes, data_bytes, names, data_file, model_sha)
    summary = None if source is None else _summary(source)
    with _locked() as base:
        if name in (index := _index()):
            raise ValueError(f"model name {name!r} is already taken: pick another")
        manifest = _read(base / model_sha / "manifest.json")
        manifest.setdefault("model", {"original": Path(onnx_name).name, "sha256": model_sha,
                                      "bytes": len(onnx_bytes)})  # fmt: skip
        manifest.setdefault("data", {}).setdefault(data_file, {"original": Path(data_name).name,
                                                               "sha256": data_sha,
                                                               "bytes": len(data_bytes)})  # fmt: skip
        first = next((r for r in manifest.get("names", {}).values() if r["data"] == data_file), {})
        report = first.get("intake") or {**source.meta["intake"], "original": onnx_name}
        manifest.setdefault("names", {})[name] = {
            "data": data_file,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "intake": report,
            "data_summary": first.get("data_summary") or summary,
        }
        _write(base / model_sha / "manifest.json", manifest)
        _write(base / "index.json", {**index, name: model_sha})
    return resolve(name)


def remove(name: str) -> None:
    """Forget the uploaded model ``name``; its files go once no other name uses them."""
    with _locked() as base:
        index = _index()
        if name not in index:
            raise ValueError(f"unknown model {name!r}; uploaded models: {list(index)}")
        folder = base / index.pop(name)
        manifest = _read(folder / "manifest.json")
        rec = manifest.get("names", {}).pop(name, {})
        _write(base / "index.json", index)
        if not manifest.get("names"):
            shutil.rmtree(folder, ignore_errors=True)
        else:
            if not any(r["data"] == rec.get("data") for r in manifest["names"].values()):
                manifest["data"].pop(rec.get("data"), None)
                (folder / rec.get("data", "-")).unlink(missing_ok=True)
            _write(folder / "manifest.json", manifest)
    _load.cache_clear()


def check_name(name: str) -> str:
    """``name`` without surrounding blanks, if a new model may take it; else a one-line error."""
    from optim import project
    from optim.sources import sample_names

    name = str(name).strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise ValueError(f"`1 <= len(name) <= {MAX_NAME}` must hold, but got len={len(name)}")
    if bad := sorted({c for c in name if c in "/\\:" or not c.isprintable()}):
        raise ValueError(
            f"a model name must not hold path separators, ':' or control characters, but "
            f"{name!r} holds {''.join(bad)!r}"
        )
    if name in (".", "..") or name in sample_names() or name in project.names():
        raise ValueError(f"model name {name!r} is taken by a sample or project model")
    return name


# ------------------------------------------------------------------ staging


def _check_sizes(onnx: bytes, data: bytes, data_name: str, suffix: str, onnx_name: str) -> None:
    """Limits, before anything parses the files. An archive's declared unpacked size counts
    too: ``np.load`` reads an ``.npz`` member whole, so a small bomb would fill the memory."""
    from optim.intake import max_bytes

    if len(onnx) > (limit := max_bytes()):
        raise ValueError(
            f"{Path(onnx_name).name} is {len(onnx):,} bytes; the limit is {limit:,} "
            "(OPTIM_MAX_MODEL_MB)"
        )
    if len(data) > (limit := max_data_bytes()):
        raise ValueError(
            f"{data_name} is {len(data):,} bytes; the limit is {limit:,} (OPTIM_MAX_DATA_MB)"
        )
    if suffix in (".npz", ".zip"):
        try:
            members = zipfile.ZipFile(io.BytesIO(data)).infolist()
        except (zipfile.BadZipFile, ValueError, OSError):
            raise ValueError(f"{data_name} is not a readable {suffix} archive") from None
        if len(members) > MAX_MEMBERS:
            raise ValueError(
                f"{data_name} holds {len(members):,} files; the limit is {MAX_MEMBERS:,}"
            )
        if (unpacked := sum(m.file_size for m in members)) > (limit := max_unzipped_bytes()):
            raise ValueError(
                f"{data_name} unpacks to {unpacked:,} bytes; the limit is {limit:,} "
                "(OPTIM_MAX_UNZIPPED_MB)"
            )


def _stage_and_commit(
    onnx: bytes, data: bytes, names: tuple[str, str], data_file: str, model_sha: str
) -> ModelSource:
    """Write the files to a staging folder under their original names (so that a refusal
    names them as the user knows them), run the intake there, move them into place."""
    base = root()
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=base))
    onnx_name, data_name = names
    try:
        (staging / onnx_name).write_bytes(onnx)
        (staging / data_name).write_bytes(data)
        try:
            source = onnx_source(staging / onnx_name, staging / data_name)
        except ValueError as e:
            raise ValueError(str(e).replace(f"{staging}{os.sep}", "")) from None
        os.replace(staging / onnx_name, staging / "model.onnx")
        os.replace(staging / data_name, staging / data_file)
        with _locked():
            final = base / model_sha
            if not final.exists():
                os.replace(staging, final)  # the whole folder, or none of it
            elif not (final / data_file).exists():
                os.replace(staging / data_file, final / data_file)
        return source
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _file_names(onnx_name: str, data_name: str, suffix: str) -> tuple[str, str]:
    """The names to stage the files under: the originals where they are plain and distinct."""
    names = [Path(onnx_name).name, Path(data_name).name]
    plain = [bool(re.fullmatch(r"[\w\-. ]{1,120}", n)) and not n.startswith(".") for n in names]
    onnx_file = names[0] if plain[0] and names[0].lower().endswith(".onnx") else "model.onnx"
    data_file = names[1] if plain[1] and names[1].lower().endswith(suffix) else f"data{suffix}"
    return onnx_file, data_file if data_file != onnx_file else f"data{suffix}"


def _summary(source: ModelSource) -> dict[str, Any]:
    test, calib = source.splits["test"], source.splits["calib"]
    return {"test": len(test), "calib": len(calib), "input_shape": list(source.input_shape),
            "metric": source.metric, "labels": test.y is not None}  # fmt: skip
