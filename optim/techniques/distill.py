"""Knowledge distillation: train a narrower student on the incoming model's soft targets.

The incoming model is the teacher. The student (:mod:`optim.techniques._students`) is the source
family's own architecture at a width multiplier (the sample CNN, MLP or ViT, ResNet-18's layout
or MobileNetV3-Small with fewer channels) and, where the family repeats blocks (ResNet,
MobileNet, ViT), a depth multiplier (fewer blocks per stage, fewer encoder layers); other
families (an uploaded ONNX file) get a small generic CNN / MLP over the same input. It is
trained from scratch on the ``train`` split, shifted as the sample was (the teacher sees the same
view), with ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels)`` and early
stopping on a validation part of it (:func:`optim.train.fit`). ``alpha=0`` is the same student
trained on the labels alone: the control that shows what the soft targets add.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from optim.plan import Context, changed, technique
from optim.techniques._students import student
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


def _fit_standardize_(model: nn.Module, x: torch.Tensor) -> None:
    """Set input standardization statistics from the train inputs, as the samples do."""
    from sample_models.models import Standardize

    for m in model.modules():
        if isinstance(m, Standardize):
            m.fit(x.flatten(1))


def _depth_needs_blocks(cfg: Distill, source) -> str | None:
    from optim.techniques._students import DEEP

    if cfg.depth < 1 and source.family not in DEEP:
        return (
            f"a family with repeated blocks {DEEP} for depth < 1 (its family is {source.family!r})"
        )
    return None


@technique(Distill, stage="torch", family="distill", check=_depth_needs_blocks)
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
