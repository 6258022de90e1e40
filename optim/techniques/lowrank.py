"""Low-rank factorization: replace a layer by two thinner ones from a truncated SVD.

A Linear weight ``W`` (out, in) becomes ``W ~ (U_r sqrt(S_r)) (sqrt(S_r) V_r^T)``: a Linear
in -> r without bias, then a Linear r -> out with the original bias. A Conv2d weight
(out, in, kH, kW) is reshaped to (out, in*kH*kW) and factorized the same way: a kH x kW conv to
``r`` channels (same stride, padding, dilation), then a 1x1 conv to ``out``. The exported graph
holds the two factors, so parameters and FLOPs really shrink. Layers where ``r * (rows + cols)``
would not be smaller than ``rows * cols`` are left alone, as are grouped convs and the final
classifier (its few outputs are what the metric reads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from optim.plan import Context, technique


@dataclass(frozen=True)
class LowRank:
    """Keep ``rank_ratio`` of each layer's singular values, or enough for ``energy`` of the energy.

    Example:
        >>> LowRank(0.5).label, LowRank(energy=0.9).label
        ('low-rank 50%', 'low-rank 90% energy')
    """

    rank_ratio: float = field(
        default=0.5,
        metadata={"help": "fraction of each layer's full rank kept", "range": (0.05, 1.0)},
    )
    energy: float | None = field(
        default=None,
        metadata={
            "help": "if set, keep the fewest singular values whose squares sum to this fraction "
            "of the total (replaces rank_ratio)",
            "range": (0.5, 1.0),
        },
    )

    def __post_init__(self) -> None:
        if not 0 < self.rank_ratio <= 1:
            raise ValueError(
                f"`0 < rank_ratio <= 1` must hold, but got rank_ratio={self.rank_ratio}"
            )
        if self.energy is not None and not 0 < self.energy <= 1:
            raise ValueError(f"`0 < energy <= 1` must hold, but got energy={self.energy}")

    @property
    def label(self) -> str:
        if self.energy is not None:
            return f"low-rank {self.energy:.0%} energy"
        return f"low-rank {self.rank_ratio:.0%}"

    def rank(self, s: torch.Tensor) -> int:
        """The rank kept for singular values ``s`` (descending)."""
        if self.energy is None:
            return max(1, math.ceil(self.rank_ratio * len(s)))
        cum = torch.cumsum(s.double() ** 2, 0)
        # the fewest values whose energy reaches the target (1e-12: float round-off at energy=1)
        return int(torch.searchsorted(cum, self.energy * cum[-1] * (1 - 1e-12))) + 1


def _matrix(layer: nn.Linear | nn.Conv2d) -> torch.Tensor:
    """The layer's weight as a (out, in * kH * kW) matrix."""
    return layer.weight.detach().flatten(1)


def factorize(layer: nn.Linear | nn.Conv2d, rank: int) -> nn.Sequential:
    """Two layers whose composition approximates ``layer`` with a rank-``rank`` weight.

    At full rank (``min(out, in * kH * kW)``) the composition reproduces ``layer`` up to
    float round-off.

    Example:
        >>> pair = factorize(nn.Linear(64, 32), 8)
        >>> [tuple(m.weight.shape) for m in pair]
        [(8, 64), (32, 8)]
    """
    w = _matrix(layer)  # (out, in * kH * kW)
    if not 1 <= rank <= min(w.shape):
        raise ValueError(f"`1 <= rank <= {min(w.shape)}` must hold, but got rank={rank}")
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    root = s[:rank].sqrt()
    first_w = (root[:, None] * vh[:rank]).to(w.dtype)  # (r, in * kH * kW)
    second_w = (u[:, :rank] * root).to(w.dtype)  # (out, r)
    has_bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        first = nn.Linear(layer.in_features, rank, bias=False)
        second = nn.Linear(rank, layer.out_features, bias=has_bias)
    else:
        first = nn.Conv2d(
            layer.in_channels, rank, layer.kernel_size, layer.stride, layer.padding,
            layer.dilation, bias=False, padding_mode=layer.padding_mode,
        )  # fmt: skip
        second = nn.Conv2d(rank, layer.out_channels, 1, bias=has_bias)
    with torch.no_grad():
        first.weight.copy_(first_w.reshape(first.weight.shape))
        second.weight.copy_(second_w.reshape(second.weight.shape))
        if has_bias:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second).to(layer.weight.device)


def _candidates(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, layer) of every factorizable layer except the final classifier."""
    found = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.Linear) or (isinstance(child, nn.Conv2d) and child.groups == 1)
    ]
    linears = [c for _, _, c in found if isinstance(c, nn.Linear)]
    head = linears[-1] if linears else None
    return [(p, n, c) for p, n, c in found if c is not head]


@technique(LowRank, stage="torch", family="lowrank")
def low_rank(model: nn.Module, cfg: LowRank, ctx: Context) -> nn.Module:
    for parent, name, layer in _candidates(model):
        w = _matrix(layer)
        rows, cols = w.shape
        rank = cfg.rank(torch.linalg.svdvals(w.double()))
        if rank * (rows + cols) < rows * cols:  # else the pair would have more weights
            setattr(parent, name, factorize(layer, rank))
    return model.eval()
