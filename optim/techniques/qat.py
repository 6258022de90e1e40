"""Quantization-aware training: fine-tune with weights fake-quantized in the forward pass.

Every Conv/Linear weight is rounded in the forward pass exactly as
:func:`~optim.techniques.quantize.quantize_array` will round it (symmetric, ``scale = max|w| /
(2**(bits-1) - 1)`` per output channel or per tensor, round half to even) and the gradient passes
straight through the rounding (STE). The float weights learn to sit where rounding hurts least;
the model returned is float, not yet rounded: end the plan with the matching
:class:`~optim.techniques.Quantize`, e.g. ``(QAT(3), Quantize(3))``, which rounds and bit-packs
the exported graph's weights to exactly the values the forward pass trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from optim.plan import Context, changed, technique
from optim.techniques.quantize import check_granularity, granularity_field
from optim.train import fit


@dataclass(frozen=True)
class QAT:
    """Fine-tune ``epochs`` epochs against ``bits``-bit symmetric weight rounding.

    Example:
        >>> QAT(3).label
        'qat int3 w/channel 3ep'
    """

    bits: int = field(
        default=3, metadata={"help": "bits of the Quantize step that follows", "range": (2, 8)}
    )
    # a few epochs suffice: QAT starts from the trained float model, not from scratch
    epochs: int = field(
        default=3, metadata={"help": "passes over the train split", "range": (1, 50)}
    )
    # half FineTune's rate: large steps would keep flipping weights across rounding boundaries
    lr: float = field(
        default=5e-4, metadata={"help": "peak learning rate (cosine decay)", "range": (1e-5, 1e-2)}
    )
    granularity: str = granularity_field()

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 8:
            raise ValueError(f"`2 <= bits <= 8` must hold, but got bits={self.bits}")
        if self.epochs < 1:
            raise ValueError(f"`epochs >= 1` must hold, but got epochs={self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"`lr > 0` must hold, but got lr={self.lr}")
        check_granularity(self.granularity)

    @property
    def label(self) -> str:
        return f"qat int{self.bits} w/{self.granularity} {self.epochs}ep" + changed(self, "lr")


def fake_quantize(w: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    """``w`` rounded to symmetric ``bits``-bit levels (scale per dim-0 slice, or one scale).

    The values equal ``quantize_array(w, bits, 0 or None, True).dequantize()``; the gradient
    is the identity (straight-through estimator).

    Example:
        >>> fake_quantize(torch.tensor([[-1.0, 0.5, 0.6, 1.0]]), 2, True)  # 0.5: half to even
        tensor([[-1.,  0.,  1.,  1.]])
    """
    qmax = (1 << (bits - 1)) - 1
    dims = tuple(range(1, w.ndim)) if per_channel else tuple(range(w.ndim))
    with torch.no_grad():  # the scale is a constant for the gradient, as in the STE
        scale = w.abs().amax(dim=dims, keepdim=True) / torch.tensor(qmax, dtype=w.dtype)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.clamp(torch.round(w / scale), -qmax, qmax) * scale
    return w + (q - w).detach()


class _FakeQuant(nn.Module):
    """A weight parametrization: the forward pass sees the rounded weight."""

    def __init__(self, bits: int, per_channel: bool) -> None:
        super().__init__()
        self.bits, self.per_channel = bits, per_channel

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quantize(w, self.bits, self.per_channel)


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)]


@technique(QAT, stage="torch", family="qat")
def qat(model: nn.Module, cfg: QAT, ctx: Context) -> nn.Module:
    per_channel = cfg.granularity == "channel"
    for layer in _layers(model):
        parametrize.register_parametrization(layer, "weight", _FakeQuant(cfg.bits, per_channel))
    model = fit(model, ctx.source, cfg.epochs, cfg.lr, seed=ctx.seed)
    for layer in _layers(model):  # keep the trained float weights, not their rounded values
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
    return model.eval()
