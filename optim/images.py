"""An image folder in a zip (one folder per class, PNG/JPEG/BMP) as one labeled set, and the
declared preprocessing that turns its images into the model's input.

The zip is read by :func:`optim.archive.read_zip` (its member checks first); every image's
decoded and resized pixels count against ``OPTIM_MAX_UNZIPPED_MB`` before it is decoded, since a
small PNG may declare a huge canvas. :func:`optim.data.load` is the entry point.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from optim.archive import limit, one_line, read_zip

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_FORMATS = ("PNG", "JPEG", "BMP")  # decoded format, whatever the extension claims


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
        raise ValueError(
            f"image {name!r} of {where!r} cannot be decoded ({one_line(e)})"
        ) from None
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
        raise ValueError(
            f"preprocess.json of {where!r} is not valid JSON ({one_line(e)})"
        ) from None
    fields = [f.name for f in dataclasses.fields(Preprocess)]
    if not isinstance(d, dict) or set(d) - set(fields):
        raise ValueError(f"preprocess.json of {where!r} must be an object with keys from "
                         f"{fields}, but got {d if not isinstance(d, dict) else sorted(d)!r}")  # fmt: skip
    try:
        return Preprocess(**d)
    except ValueError as e:
        raise ValueError(f"preprocess.json of {where!r}: {e}") from None


def read_folder(
    path: Path, where: str, preprocess: Preprocess | None = None, **_: object
) -> tuple[dict[str, np.ndarray], dict, tuple[str, ...]]:
    """An image-folder zip as ``{"x": (N, C, H, W) or (N, H, W, C) float32, "y": (N,) int64}``,
    what was done (classes, preprocessing and where it was declared, ignored files) and the
    class names (the folders, sorted: label ``i`` is ``classes[i]``).

    Args:
        path: the zip; ``where`` names it in errors.
        preprocess: overrides a ``preprocess.json`` at the zip's root (default: none).

    Raises:
        ValueError: one line naming the member and the rule it breaks.
    """
    files = read_zip(path, where)
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
    budget, xs = limit("OPTIM_MAX_UNZIPPED_MB"), []
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
