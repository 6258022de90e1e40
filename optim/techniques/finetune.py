"""Fine-tuning: a short recovery training after a step that damaged the model.

Meant to follow :class:`~optim.techniques.StructuredPrune` or :class:`~optim.techniques.LowRank`
in a plan, e.g. ``(StructuredPrune(0.5), FineTune(3), Quantize(4))``. It trains on the source's
``train`` split and keeps the epoch with the best accuracy on a validation part of it (see
:func:`optim.train.fit`); the starting weights count as epoch 0, so it never ends worse there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from optim.plan import Context, changed, technique
from optim.train import fit


@dataclass(frozen=True)
class FineTune:
    """Train for up to ``epochs`` epochs at peak learning rate ``lr`` (cosine-annealed).

    Example:
        >>> FineTune(3).label
        'finetune 3ep'
    """

    # 2 epochs (~35 steps on digits) recover most of what pruning half the channels loses
    epochs: int = field(
        default=2, metadata={"help": "passes over the train split", "range": (1, 50)}
    )
    # 1e-3: a third of the samples' training peak; the weights are already near a good minimum
    lr: float = field(
        default=1e-3, metadata={"help": "peak learning rate (cosine decay)", "range": (1e-5, 1e-2)}
    )

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"`epochs >= 1` must hold, but got epochs={self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"`lr > 0` must hold, but got lr={self.lr}")

    @property
    def label(self) -> str:
        return f"finetune {self.epochs}ep" + changed(self, "lr")


@technique(FineTune, stage="torch", family="finetune")
def finetune(model: torch.nn.Module, cfg: FineTune, ctx: Context) -> torch.nn.Module:
    return fit(model, ctx.source, cfg.epochs, cfg.lr, seed=ctx.seed)
