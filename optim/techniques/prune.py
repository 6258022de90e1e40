"""Unstructured magnitude pruning of Conv/Gemm/MatMul weights.

Zeroes the smallest-magnitude weights, globally or per layer, by a target sparsity or by an
absolute threshold (|w| < threshold). The shipped file keeps pruned fp32 weights as ONNX sparse
initializers where that is smaller (above ~70 % zeros), else dense: the zeros then shrink the
compressed download only. Dense kernels still multiply the zeros: latency does not improve.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from onnx import numpy_helper

from optim.artifact import Encoding, Graph, weights_or_refuse
from optim.plan import Context, technique

SCOPES = ("global", "layer")


@dataclass(frozen=True)
class Prune:
    """Zero the ``amount`` fraction of smallest weights, or those below ``threshold``.

    Example:
        >>> Prune(0.5).label, Prune(threshold=0.01).label
        ('prune 50%', 'prune |w|<0.01')
    """

    amount: float | None = field(
        default=0.5, metadata={"help": "fraction of weights set to zero", "range": (0.0, 0.99)}
    )
    threshold: float | None = field(
        default=None,
        metadata={"help": "zero every weight with |w| below this instead (replaces amount)"},
    )
    scope: str = field(
        default="global",
        metadata={"help": "rank weights across all layers, or within each", "choices": SCOPES},
    )

    def __post_init__(self) -> None:
        if self.threshold is not None:  # a threshold replaces the amount
            object.__setattr__(self, "amount", None)
        if self.amount is None and self.threshold is None:
            raise ValueError(
                "one of `amount` and `threshold` must be set, but got amount=None, threshold=None"
            )
        if self.amount is not None and not 0 <= self.amount < 1:
            raise ValueError(f"`0 <= sparsity < 1` must hold, but got sparsity={self.amount}")
        if self.threshold is not None and not self.threshold >= 0:
            raise ValueError(f"`threshold >= 0` must hold, but got threshold={self.threshold}")
        if self.scope not in SCOPES:
            raise ValueError(f"`scope` must be one of {SCOPES}, but got scope={self.scope!r}")

    @property
    def label(self) -> str:
        how = f"{self.amount:.0%}" if self.amount is not None else f"|w|<{self.threshold:g}"
        return f"prune {how}" + (" per layer" if self.scope == "layer" else "")


def _smallest_mask(magnitudes: np.ndarray, amount: float) -> np.ndarray:
    """Keep-mask that zeroes exactly round(amount * n) entries, smallest magnitude first."""
    flat = magnitudes.ravel()
    k = int(round(amount * flat.size))
    keep = np.ones(flat.size, bool)
    if k:
        keep[np.argpartition(flat, k - 1, kind="introselect")[:k]] = False
    return keep.reshape(magnitudes.shape)


@technique(Prune, stage="graph", family="prune")
def prune(graph: Graph, cfg: Prune, ctx: Context) -> Graph:
    inits = {t.name: t for t in graph.model.graph.initializer}
    names = list(weights_or_refuse(graph.model, cfg.label))
    weights = {n: numpy_helper.to_array(inits[n]) for n in names}
    if cfg.threshold is not None:
        keeps = {n: np.abs(w) >= cfg.threshold for n, w in weights.items()}
    elif cfg.scope == "layer":
        keeps = {n: _smallest_mask(np.abs(w), cfg.amount) for n, w in weights.items()}
    else:
        flat = _smallest_mask(
            np.concatenate([np.abs(w).ravel() for w in weights.values()]), cfg.amount
        )
        bounds = np.cumsum([0] + [w.size for w in weights.values()])
        keeps = {
            n: flat[a:b].reshape(w.shape)
            for (n, w), a, b in zip(weights.items(), bounds, bounds[1:], strict=False)
        }
    encodings = {}
    for n, w in weights.items():
        old = graph.encodings.get(n)
        mask = keeps[n] if old is None or old.mask is None else keeps[n] & old.mask
        encodings[n] = replace(old, mask=mask) if old is not None else Encoding(w, 32, mask=mask)
    return graph.with_weights(encodings)
