"""Bundled sample models: small classifiers trained on scikit-learn's bundled datasets.

``SAMPLES`` names them, ``load_splits(name)`` gives their disjoint ``train``/``calib``/``test``
splits, and ``build(name)`` a fresh trained fp32 model in eval mode whose input is exactly
``load_splits(name)[...].x``. Weights are safetensors files: committed under ``WEIGHTS_DIR`` for
the small models, and trained on first use into ``$OPTIM_HOME/weights`` (default ``~/.optim``)
for ``resnet18``, whose 45 MB are not committed. ``python -m sample_models.train [NAME ...]``
retrains them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from optim.sources import Split
from sample_models import models
from sample_models.data import dataset_splits

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
"""Where the committed weights live (tests monkeypatch it)."""


@dataclass(frozen=True)
class TrainConfig:
    """How a sample model is trained: AdamW with a one-cycle schedule, cross-entropy loss."""

    epochs: int
    lr: float  # peak learning rate of the one-cycle schedule
    batch_size: int = 64  # ~20 steps per digits epoch; small batches regularize these tiny sets
    weight_decay: float = 1e-4  # light: the augmentation does most of the regularizing
    shift: int = 0  # max random translation in input pixels (0: no augmentation)
    label_smoothing: float = 0.0
    recalibrate_bn: bool = False  # recompute BatchNorm statistics on clean data after training


@dataclass(frozen=True)
class SampleSpec:
    """A bundled sample model: what it is, its data, how to build and train it."""

    description: str  # one human-readable line
    family: str  # "cnn", "resnet", "mobilenet", "mlp" or "transformer"
    dataset: str  # key of sample_models.data.SPLIT_SIZES
    builder: Callable[[], torch.nn.Module]  # the untrained architecture
    train: TrainConfig
    committed: bool = True  # weights in WEIGHTS_DIR (else trained on first use into the cache)


SAMPLES: dict[str, SampleSpec] = {
    "digits_cnn": SampleSpec(
        description="Small CNN (3 convs, ~60k params) on 8x8 digits",
        family="cnn",
        dataset="digits",
        builder=models.digits_cnn,
        # 1-pixel shifts on an 8x8 image are strong augmentation; 40 short epochs (well under a
        # minute) let the one-cycle schedule converge; 3e-3 is the usual AdamW peak for a small
        # CNN.
        train=TrainConfig(epochs=40, lr=3e-3, shift=1),
    ),
    "resnet18": SampleSpec(
        description="torchvision ResNet-18 on digits upsampled to 64x64 RGB",
        family="resnet",
        dataset="digits_rgb64",
        builder=models.resnet18,
        # ~12 s per epoch on 2 idle cores: 12 epochs keep training near 2.5 minutes. 8-pixel
        # shifts at 64x64 are the same 1-pixel shifts of the 8x8 digit. BatchNorm statistics are
        # recomputed on un-augmented data, as the running averages lag behind in so few steps.
        train=TrainConfig(epochs=12, lr=2e-3, shift=8, recalibrate_bn=True),
        committed=False,
    ),
    "mobilenet_v3": SampleSpec(
        description="torchvision MobileNetV3-Small on digits upsampled to 64x64 RGB",
        family="mobilenet",
        dataset="digits_rgb64",
        builder=models.mobilenet_v3,
        # MobileNetV3 trains slowly from scratch (hardswish, squeeze-excite, dropout 0.2): a
        # higher peak lr and 35 epochs (~2 min on 2 idle cores) get it there; BatchNorm
        # recalibration matters even more than for resnet18, as its momentum-0.01 running stats
        # barely move.
        train=TrainConfig(epochs=35, lr=5e-3, shift=8, recalibrate_bn=True),
    ),
    "cancer_mlp": SampleSpec(
        description="MLP (30-64-32-2) on breast-cancer features, standardization built in",
        family="mlp",
        dataset="breast_cancer",
        builder=models.cancer_mlp,
        # Tabular data, 395 rows, no augmentation. Epochs and lr were picked by 5-fold
        # cross-validation on the train split (97.5%): longer training overfits (100% train);
        # weight decay made no difference in that search. 30 epochs of 7 steps take a second.
        train=TrainConfig(epochs=30, lr=3e-3, weight_decay=1e-2),
    ),
    "digits_vit": SampleSpec(
        description="ViT (2x2 patches, dim 64, 2 layers, 4 heads) on 8x8 digits",
        family="transformer",
        dataset="digits",
        builder=models.digits_vit,
        # Transformers lack the convolutional prior, so they need more epochs and augmentation
        # than the CNN on 1237 images; label smoothing steadies the small attention model.
        train=TrainConfig(epochs=100, lr=2e-3, weight_decay=5e-2, shift=1, label_smoothing=0.1),
    ),
}


def _spec(name: str) -> SampleSpec:
    if name not in SAMPLES:
        raise ValueError(f"unknown sample model {name!r}; `name` must be one of {sorted(SAMPLES)}")
    return SAMPLES[name]


def load_splits(name: str) -> dict[str, Split]:
    """The disjoint ``train``/``calib``/``test`` splits of sample ``name`` (cached, read-only).

    Models on the same dataset share the same splits. Example:
        >>> load_splits("digits_cnn")["test"].x.shape
        (360, 1, 8, 8)
    """
    return dataset_splits(_spec(name).dataset)


def cache_dir() -> Path:
    """``$OPTIM_HOME/weights`` (``OPTIM_HOME`` defaults to ``~/.optim``): non-committed weights."""
    return Path(os.environ.get("OPTIM_HOME") or Path.home() / ".optim").expanduser() / "weights"


def weights_path(name: str) -> Path:
    """Where the weights of sample ``name`` are read from and written to."""
    spec = _spec(name)
    return (WEIGHTS_DIR if spec.committed else cache_dir()) / f"{name}.safetensors"


def load_weights(model: torch.nn.Module, path: Path, name: str) -> None:
    """Load the safetensors file ``path`` into ``model``; ValueError (one line) if it is bad."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    fix = f"delete it and run `python -m sample_models.train {name}`"
    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"weights file '{path}' is corrupted ({reason}); {fix}") from None
    expected = model.state_dict()
    if state.keys() != expected.keys():
        diff = sorted(state.keys() ^ expected.keys())[:3]
        raise ValueError(
            f"weights file '{path}' does not match model {name!r}: its tensor names must equal "
            f"the model's, but these differ: {diff}; {fix}"
        )
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape or state[key].dtype != tensor.dtype:
            raise ValueError(
                f"weights file '{path}' does not match model {name!r}: tensor {key!r} must be "
                f"{tensor.dtype} {tuple(tensor.shape)}, but is {state[key].dtype} "
                f"{tuple(state[key].shape)}; {fix}"
            )
    model.load_state_dict(state)


def build(name: str) -> torch.nn.Module:
    """A fresh fp32 ``name`` model in eval mode with its trained weights.

    Committed weights must exist; cached ones (``resnet18``) are trained on first use, with a
    progress bar on stderr. Raises ValueError for a missing, corrupted or mismatched file.
    """
    spec = _spec(name)
    path = weights_path(name)
    if not path.is_file():
        if spec.committed:
            raise ValueError(
                f"weights file '{path}' does not exist; run `python -m sample_models.train {name}`"
            )
        from sample_models.train import ensure_trained

        ensure_trained(name)
    model = spec.builder()
    load_weights(model, path, name)
    return model.eval()


__all__ = [
    "SAMPLES",
    "WEIGHTS_DIR",
    "SampleSpec",
    "TrainConfig",
    "build",
    "cache_dir",
    "load_splits",
    "load_weights",
    "weights_path",
]
