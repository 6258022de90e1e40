"""Datasets of the sample models: scikit-learn's bundled data, split deterministically.

Every split is computed at load time from the bundled data (no downloads, nothing stored): a
stratified ``train_test_split`` with a fixed seed carves out ``test`` first, then ``calib`` from
the rest, so the three splits are disjoint and identical on every call and machine.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split

from optim.sources import Split

SPLIT_SEED = 0
"""Seed of the stratified splits; changing it changes every committed model's test set."""

UPSAMPLED_SIZE = 64
"""Side of the upsampled digits fed to the torchvision models.

64x64 makes resnet18 cost about 6 ms per image in ONNX Runtime fp32 with one thread (32x32 is
under 2 ms, too fast for latency differences to show), while one training epoch stays ~12 s on
two cores.
"""

# (test, calib) sizes per dataset; the rest is train.
SPLIT_SIZES: dict[str, tuple[int, int]] = {
    "digits": (360, 200),  # 1797 images: 20% test, ~11% calib, 1237 train
    "digits_rgb64": (360, 200),  # the same images (and the same split), upsampled
    "breast_cancer": (114, 60),  # 569 rows: 20% test, ~10% calib, 395 train
}
DATASETS = tuple(SPLIT_SIZES)


def _raw(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of ``dataset`` before any split: x float32, y int64."""
    if dataset in ("digits", "digits_rgb64"):
        bunch = load_digits()
        x = (bunch.data / 16.0).reshape(-1, 1, 8, 8)  # pixel values 0..16 -> [0, 1]
    elif dataset == "breast_cancer":
        bunch = load_breast_cancer()
        x = bunch.data  # raw features: the model standardizes them itself
    else:
        raise ValueError(f"`dataset` must be one of {DATASETS}, but got dataset={dataset!r}")
    return x.astype(np.float32), bunch.target.astype(np.int64)


def upsample(x: np.ndarray, size: int = UPSAMPLED_SIZE) -> np.ndarray:
    """Digits (N, 1, 8, 8) -> (N, 3, size, size): bilinear upsampling, gray copied 3 times."""
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"`x` must have shape (N, 1, H, W), but got shape {x.shape}")
    up = F.interpolate(
        torch.tensor(x),  # a copy: x may be a read-only split
        size=(size, size),
        mode="bilinear",
        align_corners=False,
    )
    return up.expand(-1, 3, -1, -1).contiguous().numpy()


def _frozen(a: np.ndarray) -> np.ndarray:
    """``a`` made read-only, so that a caller cannot corrupt the cached splits in place."""
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def split_indices(dataset: str) -> dict[str, np.ndarray]:
    """Sorted row indices of the ``train``/``calib``/``test`` splits of ``dataset``."""
    if dataset not in SPLIT_SIZES:
        raise ValueError(f"`dataset` must be one of {DATASETS}, but got dataset={dataset!r}")
    _, y = _raw(dataset)
    n_test, n_calib = SPLIT_SIZES[dataset]
    rest, test = train_test_split(
        np.arange(len(y)), test_size=n_test, stratify=y, random_state=SPLIT_SEED
    )
    train, calib = train_test_split(
        rest, test_size=n_calib, stratify=y[rest], random_state=SPLIT_SEED
    )
    return {"train": np.sort(train), "calib": np.sort(calib), "test": np.sort(test)}


@functools.lru_cache(maxsize=len(DATASETS))
def dataset_splits(dataset: str) -> dict[str, Split]:
    """The ``train``/``calib``/``test`` splits of ``dataset`` (cached, arrays read-only)."""
    x, y = _raw(dataset)
    if dataset == "digits_rgb64":
        x = upsample(x)
    return {
        name: Split(_frozen(x[idx]), _frozen(y[idx]))
        for name, idx in split_indices(dataset).items()
    }
