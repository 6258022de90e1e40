"""Per-layer sensitivity: how much accuracy each layer loses when only it is quantized or pruned.

For every Conv/Gemm/MatMul weight (named by its ONNX initializer) and every setting, the baseline
ONNX graph gets that one weight replaced, in numpy, by its rounded (``bits``) or pruned
(``sparsity``, this layer's smallest magnitudes) version; every other weight stays fp32. The
variant runs in ONNX Runtime on the **calib** split, batched, one session per variant; no
re-export. The accuracy drop is the baseline's calib accuracy minus the variant's (top-1 against
the calib labels; against the baseline's own predictions when the calib split has none). Accuracy on a few hundred
samples moves in steps and saturates (one layer at 2 bits may cost nothing, all of them
everything), so each row also has ``output_noise``: the mean squared change of the logits over
the baseline logits' variance. To first order the noises of several layers add up, which is
what :func:`allocate` relies on.

The test split is never read: sensitivity is a measurement that steers decisions (which layers
keep 8 bits in :class:`~optim.techniques.MixedQuantize`, where :func:`optim.search.search`
starts), so it must not see the data that judges the result.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import pandas as pd
from onnx import numpy_helper

from optim import measure, metrics
from optim.artifact import Encoding, Graph, weight_initializers
from optim.sources import ModelSource, get_source
from optim.techniques.prune import _smallest_mask
from optim.techniques.quantize import quantize_array

COLUMNS = (
    "layer", "name", "op", "kind", "setting", "accuracy", "accuracy_drop", "output_noise", "params",
    "params_share", "latency_share",
)  # fmt: skip


def _node_times(model: onnx.ModelProto, example: np.ndarray, threads: int, runs: int = 30) -> dict:
    """Share of ORT kernel time per graph node (basic optimizations only: node names survive)."""
    import onnxruntime as ort

    times = measure.node_times(
        model, example, threads, runs, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    )
    total = sum(t for _, t in times.values()) or 1.0
    return {k: t / total for k, (_, t) in times.items()}


def _logits(model: onnx.ModelProto, x, threads: int, output: str | None = None) -> np.ndarray:
    return measure.predict(measure.session(model.SerializeToString(), threads), x, output=output)


def calib_score(z: np.ndarray, z0: np.ndarray, ref: np.ndarray, metric: str) -> float:
    """The source's metric on the calib split: top-1 against ``ref``, or for ``fidelity`` the
    mean cosine similarity to the baseline's outputs ``z0``."""
    if metric == "fidelity":
        return float(np.mean(metrics.cosine(z, z0)))
    return float(np.mean(metrics.predictions(z) == ref))


def sensitivity(
    source_or_name: ModelSource | str,
    bits: Sequence[int] = (2, 3, 4, 8),
    sparsities: Sequence[float] = (0.5, 0.75, 0.9),
    threads: int = 1,
) -> pd.DataFrame:
    """One row per (layer, setting): the calib-accuracy drop when only that layer is changed.

    Args:
        source_or_name: A model source or a spec for :func:`~optim.sources.get_source`.
        bits: Bit-widths (2-8) each layer is rounded to, alone (symmetric, per output channel,
            exactly as :class:`~optim.techniques.Quantize` rounds).
        sparsities: Fractions of each layer's own weights zeroed, alone (smallest magnitudes).
        threads: ORT intra-op threads (accuracy does not depend on it; time does).

    Returns:
        Columns ``layer`` (ONNX initializer name), ``op`` (Conv/Gemm/MatMul), ``kind``
        (``"quantize"`` or ``"prune"``), ``setting`` (bits or sparsity), ``accuracy`` (calib),
        ``accuracy_drop`` (baseline calib accuracy minus ``accuracy``; may be slightly negative:
        noise), ``output_noise`` (mean squared logit change / variance of the baseline's
        logits), ``params`` (the weight's size), ``params_share`` (of all float parameters) and
        ``latency_share`` (share of the fp32 graph's ORT kernel time spent in the node that
        consumes the weight). The baseline calib accuracy is in ``df.attrs["baseline_accuracy"]``.

    Example:
        >>> df = sensitivity("digits_cnn", bits=(2, 8), sparsities=())  # doctest: +SKIP
        >>> rank(df, bits=2)[:2]  # doctest: +SKIP
        ['0.weight', '9.weight']
    """
    from optim.build import build

    for b in bits:
        if not 2 <= b <= 8:
            raise ValueError(f"`2 <= bits <= 8` must hold, but got bits={b}")
    for s in sparsities:
        if not 0 <= s < 1:
            raise ValueError(f"`0 <= sparsity < 1` must hold, but got sparsity={s}")
    if threads < 1:
        raise ValueError(f"`threads >= 1` must hold, but got threads={threads}")
    source = get_source(source_or_name) if isinstance(source_or_name, str) else source_or_name
    graph, _ = build(source, ())  # the fp32 baseline graph (export cached per process)
    calib = source.splits["calib"]
    z0 = _logits(graph.model, calib.x, threads, source.output)  # (N, classes)
    ref = calib.y if calib.y is not None else metrics.predictions(z0)
    base_acc = calib_score(z0, z0, ref, source.metric)
    scale = float(np.var(z0.astype(np.float64))) or 1.0

    inits = {t.name: t for t in graph.model.graph.initializer}
    total = sum(
        int(np.prod(t.dims)) for t in inits.values() if t.data_type == onnx.TensorProto.FLOAT
    )
    shares = _node_times(graph.model, source.example, threads)
    consumer = {}
    for node in graph.model.graph.node:
        for name in node.input[1:2]:
            consumer.setdefault(name, node)
    rows, names = [], layer_names(graph.model)
    for layer, axis in weight_initializers(graph.model).items():
        w = numpy_helper.to_array(inits[layer])
        variants = [("quantize", b, quantize_array(w, b, axis, True)) for b in bits]
        variants += [
            ("prune", s, Encoding(w, 32, mask=_smallest_mask(np.abs(w), s))) for s in sparsities
        ]
        node = consumer[layer]
        for kind, setting, enc in variants:
            z = _logits(_only(graph, layer, enc), calib.x, threads, source.output)
            acc = calib_score(z, z0, ref, source.metric)
            rows.append({
                "layer": layer, "name": names.get(layer, layer), "op": node.op_type, "kind": kind, "setting": setting,
                "accuracy": acc, "accuracy_drop": base_acc - acc,
                "output_noise": float(np.mean((z - z0) ** 2)) / scale, "params": int(w.size),
                "params_share": w.size / total, "latency_share": shares.get(node.name, np.nan),
            })  # fmt: skip
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df.attrs["baseline_accuracy"] = base_acc
    return df


def layer_names(model: onnx.ModelProto) -> dict[str, str]:
    """Each weight initializer's layer in words, numbered by kind in graph order:
    ``{"0.weight": "conv 1 (1→32, 3×3)", "fc.weight": "linear 1 (128→10)"}``."""
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    out: dict[str, str] = {}
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        w = node.input[1]
        dims = inits.get(w)
        if dims is None or w in out:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv" and len(dims) >= 3:
            groups, (o, i) = int(attrs.get("group", 1)), dims[:2]
            kind = "depthwise conv" if groups > 1 and groups == o else "conv"
            what = f"{i * groups}→{o}, {'×'.join(str(d) for d in dims[2:])}"
        elif len(dims) == 2:
            kind = "linear"
            i, o = dims[::-1] if node.op_type == "Gemm" and attrs.get("transB") else dims
            what = f"{i}→{o}"
        else:
            kind, what = node.op_type.lower(), "×".join(map(str, dims))
        counts[kind] = counts.get(kind, 0) + 1
        out[w] = f"{kind} {counts[kind]} ({what})"
    return out


def _only(graph: Graph, layer: str, enc: Encoding) -> onnx.ModelProto:
    """The baseline model with only ``layer``'s weight replaced by ``enc``'s values."""
    return graph.with_weights({layer: enc}).model


def rank(df: pd.DataFrame, bits: int = 3) -> list[str]:
    """Layers ordered most sensitive first by their drop at ``bits`` bits (ties: fewer params
    first, as keeping a small layer at 8 bits costs less), for ``MixedQuantize(keep_8bit=k,
    sensitivity=rank(df))``.

    Example:
        >>> rank(sensitivity("digits_cnn", bits=(3,), sparsities=()))  # doctest: +SKIP
        ['0.weight', '9.weight', '5.weight', '2.weight']
    """
    rows = df[(df["kind"] == "quantize") & (df["setting"] == bits)]
    if rows.empty:
        measured = sorted(int(b) for b in df.loc[df["kind"] == "quantize", "setting"].unique())
        raise ValueError(f"`bits` must be one of the measured {measured}, but got bits={bits}")
    return order(rows)


def order(rows: pd.DataFrame) -> list[str]:
    """``rows["layer"]`` most harmful first: by ``accuracy_drop``, then ``output_noise`` (the
    finer signal when a few hundred calib samples tie), then fewer ``params`` (keeping a small
    layer at higher precision costs less). Shared by :func:`rank` (sub-8-bit weights) and
    :mod:`optim.fallback` (int8 nodes back to fp32).

    Example:
        >>> order(pd.DataFrame({"layer": ["a", "b", "c"], "accuracy_drop": [0.0, 0.1, 0.0],
        ...     "output_noise": [0.1, 0.2, 0.3], "params": [1, 1, 1]}))
        ['b', 'c', 'a']
    """
    rows = rows.sort_values(
        ["accuracy_drop", "output_noise", "params"], ascending=[False, False, True], kind="stable"
    )
    return rows["layer"].tolist()


def allocate(df: pd.DataFrame, max_noise: float) -> dict[str, int]:
    """Per-layer bit-widths with the fewest weight bits in all whose summed ``output_noise``
    stays within ``max_noise`` (additive to first order; see the module docstring).

    Each layer may take any bit-width measured in ``df`` or 8 (taken as noiseless). Solved by
    Lagrangian relaxation: for a price ``lam`` each layer independently minimizes
    ``params * bits + lam * noise``; ``lam`` is bisected to the cheapest allocation in budget,
    then the budget left is spent greedily (largest bit saving first).
    A useful budget is the summed noise of a uniform bit-width, :func:`uniform_noise`: the same
    predicted damage, spent where it costs the fewest bits.

    Example:
        >>> df = sensitivity("digits_cnn", bits=(2, 3, 4), sparsities=())  # doctest: +SKIP
        >>> allocate(df, uniform_noise(df, 3))  # doctest: +SKIP
        {'0.weight': 4, '2.weight': 3, '5.weight': 3, '9.weight': 4}
    """
    if not max_noise >= 0:
        raise ValueError(f"`max_noise >= 0` must hold, but got max_noise={max_noise}")
    q = df[df["kind"] == "quantize"]
    layers = {
        name: (int(rows["params"].iloc[0]), {8: 0.0} | dict(zip(rows["setting"].astype(int),
                                                              rows["output_noise"], strict=True)))
        for name, rows in q.groupby("layer", sort=False)
    }  # fmt: skip

    def pick(lam: float) -> tuple[dict[str, int], float]:
        plan = {
            n: min(opts, key=lambda b, p=p, o=opts: (p * b + lam * o[b], -b))
            for n, (p, opts) in layers.items()
        }
        return plan, sum(layers[n][1][b] for n, b in plan.items())

    lo, hi = -30.0, 30.0  # log10 of the price: from "bits are all that matter" to "noise is"
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if pick(10**mid)[1] <= max_noise else (mid, hi)
    plan, noise = pick(10**hi)
    while True:  # the relaxation only reaches hull points: spend what budget is left, greedily
        moves = [
            (p * (plan[n] - b), n, b, opts[b] - opts[plan[n]])
            for n, (p, opts) in layers.items()
            for b in opts
            if b < plan[n] and noise + opts[b] - opts[plan[n]] <= max_noise
        ]
        if not moves:
            return plan
        _, n, b, added = max(moves)
        plan, noise = {**plan, n: b}, noise + added


def uniform_noise(df: pd.DataFrame, bits: int) -> float:
    """The summed ``output_noise`` of every layer at ``bits`` (the budget of uniform rounding)."""
    rows = df[(df["kind"] == "quantize") & (df["setting"] == bits)]
    if rows.empty:
        measured = sorted(int(b) for b in df.loc[df["kind"] == "quantize", "setting"].unique())
        raise ValueError(f"`bits` must be one of the measured {measured}, but got bits={bits}")
    return float(rows["output_noise"].sum())
