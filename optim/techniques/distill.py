"""Knowledge distillation: train a narrower student on the incoming model's soft targets.

The incoming model is the teacher. The student is the source family's own architecture at a
width multiplier (the sample CNN, MLP or ViT, ResNet-18's layout or MobileNetV3-Small with
fewer channels) and, where the family repeats blocks (ResNet, MobileNet, ViT), a depth
multiplier (fewer blocks per stage, fewer encoder layers); other families (an uploaded ONNX
file) get a small generic CNN / MLP over the same input. It is trained from scratch on the ``train`` split with
``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels)`` and early stopping on a
validation part of it (:func:`optim.train.fit`). ``alpha=0`` is the same student trained on the
labels alone: the control that shows what the soft targets add.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from optim.plan import Context, changed, technique
from optim.train import fit, seeded

# stop when 8 epochs in a row bring no better validation score: distilling from scratch is noisy
PATIENCE = 8


@dataclass(frozen=True)
class Distill:
    """Replace the model by a ``width``-times narrower student distilled from it.

    Example:
        >>> Distill(0.5).label
        'distill 50% width'
    """

    width: float = field(
        default=0.5,
        metadata={"help": "student channels / hidden units vs the model's", "range": (0.1, 1.0)},
    )
    depth: float = field(
        default=1.0,
        metadata={
            "help": "student blocks per stage (ResNet, MobileNet) or layers (ViT) vs the model's",
            "range": (0.1, 1.0),
        },
    )
    # a student starts from scratch: 40 epochs of ~17 steps, as the digits samples were trained
    epochs: int = field(
        default=40, metadata={"help": "at most this many epochs", "range": (1, 200)}
    )
    lr: float = field(
        default=3e-3, metadata={"help": "peak learning rate (cosine decay)", "range": (1e-4, 1e-2)}
    )
    # T=4 softens 10-class logits enough that the runner-up classes carry signal
    temperature: float = field(
        default=4.0,
        metadata={"help": "softmax temperature of the soft targets", "range": (1.0, 10.0)},
    )
    alpha: float = field(
        default=0.7,
        metadata={
            "help": "weight of the soft (teacher) term vs the label term",
            "range": (0.0, 1.0),
        },
    )

    def __post_init__(self) -> None:
        if not 0 < self.width <= 1:
            raise ValueError(f"`0 < width <= 1` must hold, but got width={self.width}")
        if not 0 < self.depth <= 1:
            raise ValueError(f"`0 < depth <= 1` must hold, but got depth={self.depth}")
        if self.epochs < 1:
            raise ValueError(f"`epochs >= 1` must hold, but got epochs={self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"`lr > 0` must hold, but got lr={self.lr}")
        if not self.temperature > 0:
            raise ValueError(
                f"`temperature > 0` must hold, but got temperature={self.temperature}"
            )
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"`0 <= alpha <= 1` must hold, but got alpha={self.alpha}")

    @property
    def label(self) -> str:
        depth = f", {self.depth:.0%} depth" if self.depth < 1 else ""
        soft = ("temperature", "alpha") if self.alpha else ()
        note = changed(self, "epochs", "lr", *soft) + ("" if self.alpha else " (labels only)")
        return f"distill {self.width:.0%} width{depth}{note}"


def _c(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _cnn(width: float, depth: float, shape: tuple[int, ...], classes: int) -> nn.Module:
    """The digits CNN (32-64-64 channels, two 2x2 max-pools) at ``width``; else the generic one."""
    if len(shape) != 3 or min(shape[1:]) < 4:
        return _generic(width, depth, shape, classes)
    c1, c2 = _c(32, width), _c(64, width)
    return nn.Sequential(
        nn.Conv2d(shape[0], c1, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(c2 * (shape[1] // 4) * (shape[2] // 4), classes),
    )  # fmt: skip


def _mlp(width: float, depth: float, shape: tuple[int, ...], classes: int) -> nn.Module:
    """The cancer MLP (standardize, 64 -> 32 hidden units) at ``width``; flattens its input."""
    from sample_models.models import Standardize  # fitted to the train split by the caller

    n = math.prod(shape)
    h1, h2 = _c(64, width), _c(32, width)
    layers = [Standardize(n), nn.Linear(n, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU()]
    return nn.Sequential(
        *([nn.Flatten()] if len(shape) > 1 else []), *layers, nn.Linear(h2, classes)
    )


def _vit(width: float, depth: float, shape: tuple[int, ...], classes: int) -> nn.Module:
    """The digits ViT (dim 64, MLP 128, 4 heads, 2 layers) at ``width`` and ``depth``; other
    inputs get the generic CNN."""
    from sample_models.models import DIGIT_CLASSES, DigitsViT

    if shape != (1, 8, 8) or classes != DIGIT_CLASSES:
        return _generic(width, depth, shape, classes)
    heads = 4
    return DigitsViT(
        dim=heads * _c(16, width), depth=_c(2, depth), heads=heads, mlp_dim=_c(128, width)
    )


def _resnet(width: float, depth: float, shape: tuple[int, ...], classes: int) -> nn.Module:
    """ResNet-18's layout (stem, 4 stages of 2 BasicBlocks, 64-128-256-512 channels) at ``width``
    channels and ``depth`` blocks per stage (at least one)."""
    from torchvision.models.resnet import BasicBlock, conv1x1

    if len(shape) != 3:
        return _generic(width, depth, shape, classes)
    c = [_c(64 * 2**i, width) for i in range(4)]
    blocks, cin = [], c[0]
    for i, cout in enumerate(c):
        stride = 1 if i == 0 else 2
        down = None
        if stride != 1 or cin != cout:
            down = nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))
        blocks.append(BasicBlock(cin, cout, stride, down))
        blocks += [BasicBlock(cout, cout) for _ in range(_c(2, depth) - 1)]
        cin = cout
    return nn.Sequential(
        nn.Conv2d(shape[0], c[0], 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(c[0]),
        nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1),
        *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c[3], classes),
    )  # fmt: skip


def _mobilenet(width: float, depth: float, shape: tuple[int, ...], classes: int) -> nn.Module:
    """torchvision's MobileNetV3-Small at ``width_mult=width`` (channels rounded to 8s), keeping
    the first ``depth`` of each stage's inverted-residual blocks (at least one).

    A stage is a run of blocks with the same output channels at full width; only its first
    block changes shape, so the blocks after it can go."""
    from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf

    if len(shape) != 3:
        return _generic(width, depth, shape, classes)
    blocks, last = _mobilenet_v3_conf("mobilenet_v3_small", width_mult=width)
    full, _ = _mobilenet_v3_conf("mobilenet_v3_small")
    stages: dict[int, list[int]] = {}
    for i, b in enumerate(full):
        stages.setdefault(b.out_channels, []).append(i)
    keep = sorted(i for idx in stages.values() for i in idx[: _c(len(idx), depth)])
    return MobileNetV3([blocks[i] for i in keep], last, num_classes=classes)


def _generic(width: float, depth: float, shape: tuple[int, ...], classes: int) -> nn.Module:
    """A small CNN (16-32-64 channels, global pooling) for images; the MLP for anything else."""
    if len(shape) != 3:
        return _mlp(width, depth, shape, classes)
    c1, c2, c3 = _c(16, width), _c(32, width), _c(64, width)
    return nn.Sequential(
        nn.Conv2d(shape[0], c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
        nn.Conv2d(c2, c3, 3, stride=2, padding=1), nn.BatchNorm2d(c3), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c3, classes),
    )  # fmt: skip


STUDENTS: dict[str, Callable[[float, float, tuple[int, ...], int], nn.Module]] = {
    "cnn": _cnn,
    "mlp": _mlp,
    "transformer": _vit,
    "resnet": _resnet,
    "mobilenet": _mobilenet,
}
"""Student builders by source family; any other family gets the generic CNN (or MLP)."""
DEEP = ("resnet", "mobilenet", "transformer")  # families whose students take a depth multiplier


def student(
    family: str, width: float, shape: tuple[int, ...], classes: int, depth: float = 1.0
) -> nn.Module:
    """An untrained student for a source of ``family`` with inputs ``shape`` (no batch axis).

    Example:
        >>> sum(p.numel() for p in student("cnn", 0.5, (1, 8, 8), 10).parameters())
        15338
    """
    if not 0 < width <= 1:
        raise ValueError(f"`0 < width <= 1` must hold, but got width={width}")
    if not 0 < depth <= 1:
        raise ValueError(f"`0 < depth <= 1` must hold, but got depth={depth}")
    if depth < 1 and family not in DEEP:
        raise ValueError(
            f"`depth < 1` needs a family with repeated blocks {DEEP}, but got family={family!r}"
        )
    return STUDENTS.get(family, _generic)(width, depth, tuple(shape), classes)


def _fit_standardize_(model: nn.Module, x: torch.Tensor) -> None:
    """Set input standardization statistics from the train inputs, as the samples do."""
    from sample_models.models import Standardize

    for m in model.modules():
        if isinstance(m, Standardize):
            m.fit(x.flatten(1))


@technique(Distill, stage="torch", family="distill")
def distill(teacher: nn.Module, cfg: Distill, ctx: Context) -> nn.Module:
    source = ctx.source
    with torch.no_grad():
        classes = teacher.eval()(torch.from_numpy(source.example.copy())).shape[-1]
    with seeded(ctx.seed):
        model = student(source.family, cfg.width, source.input_shape, classes, cfg.depth)
    if "train" in source.splits:
        _fit_standardize_(model, torch.tensor(source.splits["train"].x))
    return fit(
        model, source, cfg.epochs, cfg.lr, seed=ctx.seed, teacher=teacher,
        temperature=cfg.temperature, alpha=cfg.alpha, patience=PATIENCE, augment=True,
    )  # fmt: skip
