"""optim: measure what each optimization of a neural network buys and costs.

Every config is built into an artifact on disk (an ONNX graph plus its packed weights) and
measured from that artifact alone: accuracy with a 95 % interval on held-out data, size in
bytes on disk, latency in ONNX Runtime.

Example:
    >>> from optim import Settings, grid, sweep, Store  # doctest: +SKIP
    >>> run_id = sweep("digits_cnn", grid(bits=(4, 8, 32), sparsity=(0.0, 0.5)))  # doctest: +SKIP
    >>> Store().results(run_id)  # doctest: +SKIP

The names below are imported on first use, so ``import optim.frontier`` (the dashboard's
slider path) does not pay for importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "optim.frontier": ["Constraints", "Recommendation", "frontier", "pareto_mask", "recommend"],
    "optim.profile": ["Profile", "profile"],
    "optim.sources": ["ModelSource", "Split", "get_source", "onnx_source", "sample_names",
                      "sample_source"],
    "optim.store": ["Store"],
    "optim.runs": ["create", "execute"],
    "optim.sweep": ["Settings", "grid", "sweep"],
    "optim.techniques": ["QAT", "BiasCorrect", "Distill", "DynamicInt8", "Equalize", "FineTune",
                         "GPTQ", "GradualPrune", "Int4MatMul", "Int8", "Int8Auto", "Int8Fallback",
                         "LowRank", "MixedQuantize", "Prune", "Quantize", "SmoothQuant",
                         "StructuredPrune"],
    "optim.search": ["search", "hypervolume"],
    "optim.sensitivity": ["sensitivity"],
    "optim.tune": ["tune"],
}  # fmt: skip
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'optim' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
