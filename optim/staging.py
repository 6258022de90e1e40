"""How an upload reaches :mod:`optim.uploads`' folder, and the files it keeps there.

Limits first (:func:`check_sizes`, before anything parses the bytes); then the files are written
to a staging folder next to the kept ones and go through the intake there (:func:`stage`); only
when they pass are they moved into place, so a refused file leaves nothing behind. The index and
the manifests are JSON replaced atomically (:func:`write_json`) under a lock (:func:`locked`),
so a process that reads them always reads a whole file.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from optim import archive
from optim.sources import ModelSource, onnx_source


def read_json(path: Path) -> dict:
    """The JSON object in ``path``; ``{}`` if there is no such file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def write_json(path: Path, obj: dict) -> None:
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
def locked(base: Path) -> Iterator[Path]:
    """One writer at a time (tabs, server processes) under ``base`` (created if missing)."""
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield base


def check_sizes(onnx: bytes, data: bytes, data_name: str, suffix: str, onnx_name: str) -> None:
    """Limits, before anything parses the files: their sizes (``OPTIM_MAX_MODEL_MB``,
    ``OPTIM_MAX_DATA_MB``) and an archive's members (:func:`optim.archive.check_zip`: names,
    symlinks, count, declared unpacked size, compression ratio). ``np.load`` would read an
    ``.npz`` member whole, so a small bomb must be refused from its central directory.

    Raises:
        ValueError: one line naming the file and the limit.
    """
    from optim.intake import max_bytes

    if len(onnx) > (limit := max_bytes()):
        raise ValueError(
            f"{Path(onnx_name).name} is {len(onnx):,} bytes; the limit is {limit:,} "
            "(OPTIM_MAX_MODEL_MB)"
        )
    if len(data) > (limit := archive.limit("OPTIM_MAX_DATA_MB")):
        raise ValueError(
            f"{data_name} is {len(data):,} bytes; the limit is {limit:,} (OPTIM_MAX_DATA_MB)"
        )
    if suffix in (".npz", ".zip"):
        where = Path(data_name).name
        with archive.open_zip(io.BytesIO(data), where) as zf:
            archive.check_zip(zf, where)


def stage(
    base: Path,
    files: tuple[bytes, bytes],
    names: tuple[str, str],
    kept: tuple[str, str],
    options: dict[str, str | None],
) -> ModelSource:
    """Write ``files`` (ONNX, data) to a staging folder under ``base`` with their original
    ``names`` (so that a refusal names them as the user knows them), run the intake there
    (:func:`optim.sources.onnx_source` with ``options``: output, metric), then move them to
    ``base/<folder>/model.onnx`` and ``base/<folder>/<data file>``, ``kept = (folder, data
    file)``. Whatever happens, the staging folder goes.

    Raises:
        ValueError: the intake's one-line refusal, without the staging folder's path.
    """
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=base))
    (onnx_name, data_name), (folder, data_file) = names, kept
    try:
        (staging / onnx_name).write_bytes(files[0])
        (staging / data_name).write_bytes(files[1])
        try:
            source = onnx_source(staging / onnx_name, staging / data_name, **options)
        except ValueError as e:
            raise ValueError(str(e).replace(f"{staging}{os.sep}", "")) from None
        os.replace(staging / onnx_name, staging / "model.onnx")
        os.replace(staging / data_name, staging / data_file)
        with locked(base):
            final = base / folder
            if not final.exists():
                os.replace(staging, final)  # the whole folder, or none of it
            elif not (final / data_file).exists():
                os.replace(staging / data_file, final / data_file)
        return source
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def file_names(onnx_name: str, data_name: str, suffix: str) -> tuple[str, str]:
    """The names to stage the files under: the originals where they are plain and distinct."""
    names = [Path(onnx_name).name, Path(data_name).name]
    plain = [bool(re.fullmatch(r"[\w\-. ]{1,120}", n)) and not n.startswith(".") for n in names]
    onnx_file = names[0] if plain[0] and names[0].lower().endswith(".onnx") else "model.onnx"
    data_file = names[1] if plain[1] and names[1].lower().endswith(suffix) else f"data{suffix}"
    return onnx_file, data_file if data_file != onnx_file else f"data{suffix}"
