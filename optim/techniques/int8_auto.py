"""int8 auto: static int8 where it pays on the running machine, fp32 elsewhere.

The settings (QDQ / QOperator, U8S8 / S8S8, reduce_range, per-channel) and the nodes left in
fp32 are chosen by timing on this machine, the calibration method by calib-split accuracy
(:mod:`optim.placement`); the row's precision says what runs in int8, what stayed fp32 and why,
and says so when no placement was faster than fp32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from optim import placement as placements
from optim.artifact import Graph
from optim.plan import Context, technique
from optim.quantizer import CALIBRATIONS, INT8_OPS


@dataclass(frozen=True)
class Int8Auto:
    """Static int8 placed by measurement (settings, nodes in fp32, calibration)."""

    calibration: str = field(
        default="auto",
        metadata={
            "help": "activation ranges: auto picks by calib-split accuracy",
            "choices": ("auto", *CALIBRATIONS),
        },
    )
    rounds: int = placements.rounds_field()
    seconds: float = placements.seconds_field()
    passes: int = placements.passes_field()

    def __post_init__(self) -> None:
        if self.calibration not in ("auto", *CALIBRATIONS):
            raise ValueError(
                f"`calibration` must be one of {('auto', *CALIBRATIONS)}, but got "
                f"{self.calibration!r}"
            )
        placements.Budget(self.rounds, self.seconds, self.passes)  # the search budget's rules

    @property
    def budget(self) -> placements.Budget:
        return placements.Budget(self.rounds, self.seconds, self.passes)

    @property
    def label(self) -> str:
        cal = "" if self.calibration == "auto" else f" {self.calibration}"
        return f"int8 auto{cal}"


@technique(Int8Auto, stage="graph", family="int8", final=True, needs=("weights", "toplevel"))
def int8_auto(graph: Graph, cfg: Int8Auto, ctx: Context) -> Graph:
    placement, quantizer = placements.measured(graph, ctx, cfg.budget, cfg.calibration)
    model = placements.build(placement, quantizer)
    if not any(n.op_type in INT8_OPS or n.op_type.startswith("QLinear") for n in model.graph.node):
        raise ValueError(f"{cfg.label} quantized no layer of the graph: it would change nothing")
    return Graph(model, {}, precision=placement.note())
