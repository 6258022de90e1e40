"""Safety checks for the archives a user brings (a ``.zip`` of images, an ``.npz``), before and
while anything is unpacked, and the size limits they are held to.

Limits (:data:`LIMITS`, read from the environment on every call by :func:`limit`, so a test or
a server may set them): ``OPTIM_MAX_DATA_MB`` (default 512) for a data file before any parsing,
``OPTIM_MAX_UNZIPPED_MB`` (default 2048) for what it unpacks to (zip members, decoded pixels,
parquet's decoded columns), ``OPTIM_MAX_ZIP_MEMBERS`` (default 100,000) members in a zip.

A zip's members (:func:`check_zip`) must have plain relative names (no ``..``, absolute paths,
backslashes or drive letters), must not be symlinks, must be at most ``OPTIM_MAX_ZIP_MEMBERS``
in number, must declare an unpacked total within ``OPTIM_MAX_UNZIPPED_MB``, and none may
declare more than :data:`MAX_RATIO` times its compressed size. :func:`read_zip` then reads the
members in memory (nothing is written), stopping at a member's declared size or the limit,
whichever a lying header would pass first. :func:`read_npy` reads an ``.npy`` member only if
its header declares no objects and no more elements than its bytes can hold.
"""

from __future__ import annotations

import io
import math
import os
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np

MAX_RATIO = 200  # deflate reaches ~1000:1 only on degenerate data; real images stay far below
RATIO_MIN_BYTES = 1 << 20  # small members may compress well (a solid BMP) and cannot hurt
_CHUNK = 1 << 20

LIMITS = {  # environment variable: (default, unit) -- read on every call, so tests may set them
    "OPTIM_MAX_DATA_MB": (512, 1e6),  # the file itself, before any parsing
    "OPTIM_MAX_UNZIPPED_MB": (2048, 1e6),  # unpacked zip members, decoded pixels, parquet
    "OPTIM_MAX_ZIP_MEMBERS": (100_000, 1),  # ImageNet's validation set is 50,000 images
}


def limit(name: str) -> int:
    """The limit ``name`` (a key of :data:`LIMITS`) as set in the environment now, else its
    default: bytes for the ``..._MB`` ones (1 MB = 10^6 bytes), a count for
    ``OPTIM_MAX_ZIP_MEMBERS``.

    Raises:
        ValueError: the variable is set to something other than a number > 0.

    Example:
        >>> limit("OPTIM_MAX_DATA_MB")  # doctest: +SKIP
        512000000
    """
    if name not in LIMITS:
        raise ValueError(f"`name in {sorted(LIMITS)}` must hold, but got name={name!r}")
    default, unit = LIMITS[name]
    raw = os.environ.get(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"`{name} > 0` must hold, but got {raw!r}")
    return int(value * unit)


def one_line(e: BaseException) -> str:
    """An exception as one line (Pillow, pandas and zipfile messages may span several)."""
    return " ".join(str(e).split()) or type(e).__name__


def open_zip(file: str | Path | IO[bytes], where: str) -> zipfile.ZipFile:
    """``file`` opened as a zip (nothing read yet); ``where`` names it in the error.

    Raises:
        ValueError: ``file`` is not a zip.
    """
    try:
        return zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ValueError(f"{where!r} is not a readable zip file ({one_line(e)})") from None


def check_zip(zf: zipfile.ZipFile, where: str) -> int:
    """Check a zip's members from its central directory, before anything is unpacked; return
    the unpacked total they declare.

    Raises:
        ValueError: one line naming the member (or the count, or the total) and the rule.

    Example:
        >>> with open_zip("pets.zip", "pets.zip") as zf:  # doctest: +SKIP
        ...     declared = check_zip(zf, "pets.zip")
    """
    infos = zf.infolist()
    if len(infos) > (count := limit("OPTIM_MAX_ZIP_MEMBERS")):
        raise ValueError(f"`members <= {count:,}` must hold for {where!r}, but got {len(infos):,}")
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
    if (declared := sum(i.file_size for i in infos)) > (most := limit("OPTIM_MAX_UNZIPPED_MB")):
        raise ValueError(f"`uncompressed size <= {most:,} bytes` must hold for "
                         f"{where!r}, but its members declare {declared:,}")  # fmt: skip
    return declared


def read_zip(file: str | Path | IO[bytes], where: str) -> dict[str, bytes]:
    """Every member of a zip (directories as ``name/`` -> ``b""``), after :func:`check_zip`,
    read in memory within its declared size and ``OPTIM_MAX_UNZIPPED_MB``.

    Raises:
        ValueError: one line naming the file or member and the rule it breaks.
    """
    with open_zip(file, where) as zf:
        check_zip(zf, where)
        most = limit("OPTIM_MAX_UNZIPPED_MB")
        out, total = {}, 0
        for i in zf.infolist():
            parts, size = [], 0
            try:
                with zf.open(i) as f:
                    while (chunk := f.read(_CHUNK)) and size <= i.file_size and total <= most:
                        size, total = size + len(chunk), total + len(chunk)
                        parts.append(chunk)
            except Exception as e:  # noqa: BLE001 - corrupt, encrypted, bad CRC: one user error
                raise ValueError(f"member {i.filename!r} of {where!r} cannot be read "
                                 f"({one_line(e)})") from None  # fmt: skip
            if size > i.file_size or total > most:  # a header that lied about its size
                raise ValueError(f"member {i.filename!r} of {where!r} unpacks past its declared "
                                 "size or the OPTIM_MAX_UNZIPPED_MB limit")  # fmt: skip
            out[i.filename] = b"".join(parts)
    return out


def read_npy(data: bytes, name: str, where: str) -> np.ndarray:
    """The ``.npy`` bytes ``data`` (member ``name`` of ``where``) as an array, read with
    ``allow_pickle=False`` once its header declares no objects and a shape its bytes can hold.

    Raises:
        ValueError: one line naming the member, if it is not a readable plain array.
    """
    fmt = np.lib.format
    f = io.BytesIO(data)
    try:  # the header first: a declared shape must fit in the bytes that hold it
        version = fmt.read_magic(f)
        read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}[version]
        shape, _, dtype = read(f)
        if dtype.hasobject or math.prod(shape) * dtype.itemsize > len(data):
            raise ValueError("object arrays or a shape larger than its data are refused")
        return fmt.read_array(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any parse failure is the same user error
        raise ValueError(
            f"array {name!r} of {where!r} is not a readable .npy ({one_line(e)})"
        ) from None
