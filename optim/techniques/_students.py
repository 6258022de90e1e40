"""Student architectures for :class:`~optim.techniques.Distill`: the teacher's own family at a
width (channels, hidden units) and, where the family repeats blocks, a depth multiplier."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn


def _c(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _n(blocks: int, depth: float) -> int:
    """Blocks kept at ``depth``: rounded down (at least one), so a depth below 1 always drops
    some (round-half-even would keep both of 2 blocks at 75 %)."""
    return max(1, math.floor(blocks * depth + 1e-9))


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
        dim=heads * _c(16, width), depth=_n(2, depth), heads=heads, mlp_dim=_c(128, width)
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
        blocks += [BasicBlock(cout, cout) for _ in range(_n(2, depth) - 1)]
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
    keep = sorted(i for idx in stages.values() for i in idx[: _n(len(idx), depth)])
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
