"""Structured pruning: physically remove channels / neurons (torch-pruning's dependency graph).

Channels are ranked by the L1 norm of their weights and removed from every coupled layer
(residual adds, depthwise groups, BatchNorm), so the exported graph is smaller and dense kernels
really do less work. The classifier's outputs are kept; in transformers the residual width is
kept and only MLP hidden units are removed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
import torch_pruning as tp

from optim.plan import Context, technique


@dataclass(frozen=True)
class StructuredPrune:
    """Remove the ``amount`` fraction of channels of every prunable layer."""

    amount: float = field(
        default=0.5,
        metadata={"help": "fraction of channels / neurons removed", "range": (0.0, 0.95)},
    )

    def __post_init__(self) -> None:
        if not 0 <= self.amount < 1:
            raise ValueError(f"`0 <= sparsity < 1` must hold, but got sparsity={self.amount}")

    @property
    def label(self) -> str:
        return f"channels -{self.amount:.0%}"


def _ignored(model: torch.nn.Module, family: str) -> list[torch.nn.Module]:
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        return []
    head = linears[-1]
    ignored = [head]
    if family == "transformer":  # keep the residual stream: prune MLP hidden units only
        ignored += [m for m in linears if m.out_features == head.in_features]
    return ignored


@technique(StructuredPrune, stage="torch", family="structured")
def structured_prune(
    model: torch.nn.Module, cfg: StructuredPrune, ctx: Context
) -> torch.nn.Module:
    if cfg.amount == 0:
        return model
    example = torch.from_numpy(ctx.source.example.copy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch-pruning warns about unwrapped parameters
        pruner = tp.pruner.MagnitudePruner(
            model,
            example,
            importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=cfg.amount,
            ignored_layers=_ignored(model, ctx.source.family),
            round_to=None,
        )
        pruner.step()
    return model.eval()
