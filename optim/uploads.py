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
index, so a refused file leaves nothing behind. Size limits apply before anything is parsed
(:mod:`optim.staging`). Uploaded files are read as data only: never imported, unpickled or
``torch.load``-ed. JSON files are replaced atomically under a lock, so a worker process that
resolves a model by name (same ``OPTIM_HOME``) always reads a whole index.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

from optim import staging
from optim.sources import METRICS, ModelSource, onnx_source

DATA_SUFFIXES = (".npz", ".zip", ".csv", ".parquet")
MAX_NAME = 64


def root() -> Path:
    """``$OPTIM_HOME/uploads``."""
    from optim.store import home

    return home() / "uploads"


# ------------------------------------------------------------------ the index and manifests


def _index() -> dict[str, str]:
    return staging.read_json(root() / "index.json")


def _entry(name: str) -> tuple[Path, dict, dict]:
    """(folder, its manifest, this name's record in it) of an uploaded model."""
    folder = root() / _index()[name]
    manifest = staging.read_json(folder / "manifest.json")
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
    bytes), ``output`` and ``metric`` (as asked; None: the default), ``time`` (ISO 8601),
    ``intake`` (:class:`optim.intake.Report` as a dict) and ``data_summary`` (examples, input
    shape, metric as resolved)."""
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
    options = (rec.get("output"), rec.get("metric"))
    return _load(str(folder / "model.onnx"), str(folder / rec["data"]), spec, *options)


@functools.lru_cache(maxsize=8)
def _load(
    onnx_path: str, data_path: str, name: str, output: str | None, metric: str | None
) -> ModelSource:
    # content-addressed paths: the same path always holds the same bytes
    source = onnx_source(onnx_path, data_path, name=name, output=output, metric=metric)
    return dataclasses.replace(
        source, description=describe(name), meta={**source.meta, "spec": name}
    )


def add(
    onnx_bytes: bytes,
    data_bytes: bytes,
    data_name: str,
    name: str,
    onnx_name: str = "model.onnx",
    output: str | None = None,
    metric: str | None = None,
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
        output: the graph output that is the prediction (None or ``""``: the first), e.g.
            ``probabilities`` for a scikit-learn model.
        metric: how it is judged: ``top1``, ``agreement`` or ``fidelity`` (None or ``""``:
            chosen from the labels and the output's shape; see :func:`optim.sources.onnx_source`).

    Raises:
        ValueError: one line naming the rule the upload broke.

    Example:
        >>> src = add(Path("m.onnx").read_bytes(), Path("d.npz").read_bytes(), "d.npz", "mine")  # doctest: +SKIP
    """  # noqa: E501
    name = check_name(name)
    output, metric = (str(output).strip() or None) if output else None, metric or None
    if metric not in (None, *METRICS):
        raise ValueError(f"`metric` must be one of {METRICS}, but got metric={metric!r}")
    suffix = Path(data_name).suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise ValueError(
            f"the data file must be one of {', '.join(DATA_SUFFIXES)}, but got {data_name!r}"
        )
    staging.check_sizes(onnx_bytes, data_bytes, data_name, suffix, onnx_name)
    model_sha = hashlib.sha256(onnx_bytes).hexdigest()
    data_sha = hashlib.sha256(data_bytes).hexdigest()
    data_file = f"data-{data_sha[:16]}{suffix}"
    options = {"output": output, "metric": metric}
    if (known := _index().get(name)) is not None:
        was = info(name)
        same = {k: was.get(k) for k in options} == options
        if known == model_sha and was["data"]["sha256"] == data_sha and same:
            return resolve(name)  # the same upload again
        raise ValueError(f"model name {name!r} is already taken: pick another or remove it first")
    if _passed(staging.read_json(root() / model_sha / "manifest.json"), data_file, options):
        source = None  # these bytes passed the intake before with these options: no staging
    else:
        names = staging.file_names(onnx_name, data_name, suffix)
        files, kept = (onnx_bytes, data_bytes), (model_sha, data_file)
        source = staging.stage(root(), files, names, kept, options)
    summary = None if source is None else _summary(source)
    with staging.locked(root()) as base:
        if name in (index := _index()):
            raise ValueError(f"model name {name!r} is already taken: pick another")
        manifest = staging.read_json(base / model_sha / "manifest.json")
        manifest.setdefault("model", {"original": Path(onnx_name).name, "sha256": model_sha,
                                      "bytes": len(onnx_bytes)})  # fmt: skip
        manifest.setdefault("data", {}).setdefault(data_file, {"original": Path(data_name).name,
                                                               "sha256": data_sha,
                                                               "bytes": len(data_bytes)})  # fmt: skip
        first = _passed(manifest, data_file, options) or {}
        report = first.get("intake") or {**source.meta["intake"], "original": onnx_name}
        manifest.setdefault("names", {})[name] = {
            "data": data_file,
            **options,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "intake": report,
            "data_summary": first.get("data_summary") or summary,
        }
        staging.write_json(base / model_sha / "manifest.json", manifest)
        staging.write_json(base / "index.json", {**index, name: model_sha})
    return resolve(name)


def _passed(manifest: dict, data_file: str, options: dict) -> dict | None:
    """The record of a name that took these files through the intake with these options."""
    return next((r for r in manifest.get("names", {}).values() if r["data"] == data_file
                 and all(r.get(k) == v for k, v in options.items())), None)  # fmt: skip


def remove(name: str) -> None:
    """Forget the uploaded model ``name``; its files go once no other name uses them."""
    with staging.locked(root()) as base:
        index = _index()
        if name not in index:
            raise ValueError(f"unknown model {name!r}; uploaded models: {list(index)}")
        folder = base / index.pop(name)
        manifest = staging.read_json(folder / "manifest.json")
        rec = manifest.get("names", {}).pop(name, {})
        staging.write_json(base / "index.json", index)
        if not manifest.get("names"):
            shutil.rmtree(folder, ignore_errors=True)
        else:
            if not any(r["data"] == rec.get("data") for r in manifest["names"].values()):
                manifest["data"].pop(rec.get("data"), None)
                (folder / rec.get("data", "-")).unlink(missing_ok=True)
            staging.write_json(folder / "manifest.json", manifest)
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


def _summary(source: ModelSource) -> dict[str, Any]:
    test, calib = source.splits["test"], source.splits["calib"]
    return {"test": len(test), "calib": len(calib), "input_shape": list(source.input_shape),
            "metric": source.metric, "labels": test.y is not None}  # fmt: skip
