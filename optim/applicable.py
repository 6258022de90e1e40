"""Which techniques apply to a source, known before a run starts: each technique declares what
it needs (:data:`NEEDS`), and :func:`reason` says in one line why a plan cannot run on a source,
or None. A run refuses such plans up front instead of writing error rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import onnx

from optim import plan as plans
from optim.artifact import weight_initializers
from optim.sources import ModelSource


def _linear(model: onnx.ModelProto) -> bool:
    inits = {t.name for t in model.graph.initializer}
    return any(
        n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in inits
        for n in model.graph.node
    )


# need -> (check(source, graph or None) -> bool, what is missing, in words, or from the source)
NEEDS: dict[str, tuple[Callable[[ModelSource, onnx.ModelProto | None], bool], object]] = {
    "torch": (  # an ONNX source has one where onnx2torch converts it faithfully (optim.convert)
        lambda s, g: s.build is not None,
        lambda s: f"a torch model ({s.meta.get('torch', 'it is an ONNX file')})",
    ),
    "train": (lambda s, g: "train" in s.splits, "a training split"),
    "weights": (
        lambda s, g: g is None or bool(weight_initializers(g)),
        "Conv/Gemm/MatMul weight initializers (the graph has none)",
    ),
    "toplevel": (
        lambda s, g: g is None or bool(weight_initializers(g, subgraphs=False)),
        "Conv/Gemm/MatMul weights outside If/Loop branches (ONNX Runtime's quantizer does not "
        "reach into subgraphs)",
    ),
    "linear": (
        lambda s, g: g is None or _linear(g),
        "MatMul/Gemm layers with constant weights (the graph has none)",
    ),
}


def reason(plan: Sequence[object], source: ModelSource) -> str | None:
    """Why ``plan`` cannot run on ``source`` (one line), or None when every step applies.

    Graph needs are checked on an ONNX source's normalized graph; a torch source's export is
    only known once built, so its graph needs are checked when it is.

    Example:
        >>> reason((Int4MatMul(),), conv_only_onnx_source)  # doctest: +SKIP
        "`int4 MatMulNBits` needs MatMul/Gemm layers with constant weights (the graph has none)"
    """
    graph = onnx.load(str(source.onnx_path)) if source.onnx_path is not None else None
    for cfg in plan:
        tech = plans.REGISTRY[type(cfg).__name__]
        missing = [
            m(source) if callable(m) else m
            for need in tech.needs
            for check, m in [NEEDS[need]]
            if not check(source, graph)
        ]
        if not missing and tech.check is not None and (why := tech.check(cfg, source)):
            missing = [why]
        if missing:
            return (
                f"{plans.label((cfg,))!r} does not apply to {source.name!r}: it needs {missing[0]}"
            )
    return None
