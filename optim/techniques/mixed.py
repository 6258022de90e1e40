"""Mixed-precision weight quantization: each Conv/Gemm/MatMul weight at its own bit-width.

Layers are named by their ONNX weight initializer (e.g. ``"layer1.0.conv1.weight"``; see
:func:`~optim.artifact.weight_initializers`). Each weight is rounded exactly as
:class:`~optim.techniques.Quantize` rounds it (:func:`~optim.techniques.quantize.quantize_array`,
symmetric) but to its own number of bits, so the packed artifact stores every layer bit-packed at
its own width. As with Quantize, the graph still executes in fp32.

Two ways to choose the widths, combinable:

* ``bits``: explicit ``(layer, bits)`` pairs (or a mapping); other layers get ``default_bits``.
* ``keep_8bit=k`` with a ``sensitivity`` ranking (layer names, most sensitive first, e.g. from
  :func:`optim.sensitivity.rank`): keep the ``k`` most sensitive layers at 8 bits, the rest at
  ``default_bits``. The ranking is stored in the config, so the config stays a pure,
  JSON-round-trippable value and the plan's key says exactly what was built.

An explicit ``bits`` entry wins over ``keep_8bit``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from onnx import numpy_helper

from optim.artifact import Graph, weights_or_refuse
from optim.plan import Context, technique
from optim.techniques.quantize import check_granularity, granularity_field, quantize_array


@dataclass(frozen=True)
class MixedQuantize:
    """Store each layer's weights with its own bit-width (2-8).

    Example:
        >>> MixedQuantize({"fc.weight": 8, "conv.weight": 3}).bits
        (('conv.weight', 3), ('fc.weight', 8))
        >>> MixedQuantize(keep_8bit=1, sensitivity=("fc.weight", "conv.weight")).label
        'mixed int4 w/channel, top-1 sensitive at int8'
    """

    bits: tuple[tuple[str, int], ...] = field(
        default=(),
        metadata={"help": "per-layer bit-widths: (ONNX initializer name, bits) pairs"},
    )
    # 4 bits per channel: the widest setting that loses little on the samples (see the grid)
    default_bits: int = field(
        default=4, metadata={"help": "bits of every layer not otherwise set", "range": (2, 8)}
    )
    keep_8bit: int = field(
        default=0,
        metadata={"help": "keep this many most sensitive layers at 8 bits", "range": (0, 1000)},
    )
    sensitivity: tuple[str, ...] = field(
        default=(),
        # "fill": forms fill it with the model's measured ranking (when keep_8bit is set)
        # rather than ask for it
        metadata={
            "help": "layer names, most sensitive first (optim.sensitivity.rank)",
            "fill": "sensitivity",
            "fill_if": "keep_8bit",
        },
    )
    granularity: str = granularity_field()

    def __post_init__(self) -> None:
        # JSON turns tuples into lists and a mapping is accepted: store one canonical form
        # (pairs sorted by layer name) so equal configs compare and key equal.
        pairs = self.bits.items() if isinstance(self.bits, Mapping) else self.bits
        bits = tuple(sorted((str(name), int(b)) for name, b in pairs))
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "sensitivity", tuple(str(n) for n in self.sensitivity))
        names = [n for n, _ in bits]
        if len(set(names)) != len(names):
            dup = sorted(n for n, c in Counter(names).items() if c > 1)
            raise ValueError(f"each layer must appear once in `bits`, but got duplicates {dup}")
        for name, b in (*bits, ("default_bits", self.default_bits)):
            if not 2 <= b <= 8:
                raise ValueError(f"`2 <= bits <= 8` must hold, but got bits={b} for {name!r}")
        if not 0 <= self.keep_8bit <= len(self.sensitivity):
            raise ValueError(
                "`0 <= keep_8bit <= len(sensitivity)` must hold, but got "
                f"keep_8bit={self.keep_8bit}, len(sensitivity)={len(self.sensitivity)}"
            )
        if len(set(self.sensitivity)) != len(self.sensitivity):
            raise ValueError("each layer must appear once in `sensitivity`, but got duplicates")
        check_granularity(self.granularity)

    def layer_bits(self, layers: list[str]) -> dict[str, int]:
        """The bit-width of each of ``layers``: explicit ``bits``, else 8 for the ``keep_8bit``
        most sensitive, else ``default_bits``.

        Raises:
            ValueError: if ``bits`` or ``sensitivity`` names a layer not in ``layers``.
        """
        named = {n for n, _ in self.bits} | set(self.sensitivity)
        if unknown := sorted(named - set(layers)):
            raise ValueError(
                f"`bits` and `sensitivity` must name weight initializers of the graph, but got "
                f"{unknown[:3]}; the graph's are {layers[:6]}{' ...' if len(layers) > 6 else ''}"
            )
        out = dict.fromkeys(layers, self.default_bits)
        out.update(dict.fromkeys(self.sensitivity[: self.keep_8bit], 8))
        out.update(dict(self.bits))
        return out

    @property
    def label(self) -> str:
        text = f"mixed int{self.default_bits} w/{self.granularity}"
        if self.keep_8bit:
            text += f", top-{self.keep_8bit} sensitive at int8"
        counts = Counter(b for _, b in self.bits)
        if counts:  # e.g. "mixed int4 w/channel, 2x int8, 3x int2"
            text += ", " + ", ".join(f"{counts[b]}x int{b}" for b in sorted(counts, reverse=True))
        return text


@technique(MixedQuantize, stage="graph", family="mixed")
def mixed_quantize(graph: Graph, cfg: MixedQuantize, ctx: Context) -> Graph:
    inits = {t.name: t for t in graph.model.graph.initializer}
    axes = weights_or_refuse(graph.model, cfg.label)
    widths = cfg.layer_bits(list(axes))
    encodings = {}
    for name, axis in axes.items():
        old = graph.encodings.get(name)
        w = numpy_helper.to_array(inits[name])
        ax = axis if cfg.granularity == "channel" else None
        encodings[name] = quantize_array(w, widths[name], ax, True, old.mask if old else None)
    return graph.with_weights(encodings)
