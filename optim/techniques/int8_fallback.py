"""int8 fallback to an accuracy floor: int8 auto's placement with the ``step`` most harmful
int8 nodes (ranked on the calib split) reverted to fp32 (:mod:`optim.fallback`).

One config per step, so every step is its own file and its own row on the frontier;
:func:`optim.fallback.fallback_plans` lists the steps up to the first that meets the floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from optim import fallback as fallbacks
from optim import placement as placements
from optim.artifact import Graph
from optim.plan import Context, technique


@dataclass(frozen=True)
class Int8Fallback:
    """int8 auto with the ``step`` most accuracy-harmful int8 nodes back in fp32."""

    floor: float = field(
        default=0.99,
        metadata={"help": "calib accuracy to reach, as a share of fp32's", "range": (0.5, 1.0)},
    )
    step: int = field(
        default=0,
        metadata={"help": "int8 nodes reverted to fp32, worst first", "range": (0, 10000)},
    )
    rounds: int = placements.rounds_field()
    seconds: float = placements.seconds_field()
    passes: int = placements.passes_field()

    def __post_init__(self) -> None:
        if not 0.5 <= self.floor <= 1.0:
            raise ValueError(f"`0.5 <= floor <= 1` must hold, but got floor={self.floor}")
        if not 0 <= self.step <= 10000:
            raise ValueError(f"`0 <= step <= 10000` must hold, but got step={self.step}")
        placements.Budget(self.rounds, self.seconds, self.passes)  # the search budget's rules

    @property
    def label(self) -> str:
        return f"int8 fallback {100 * self.floor:g}% step {self.step}"


@technique(Int8Fallback, stage="graph", family="int8", final=True, needs=("weights", "toplevel"))
def int8_fallback(graph: Graph, cfg: Int8Fallback, ctx: Context) -> Graph:
    budget = placements.Budget(cfg.rounds, cfg.seconds, cfg.passes)
    placement, q, curve = fallbacks.measured(graph, ctx, cfg.floor, budget, steps=cfg.step > 0)
    if cfg.step >= len(curve.accuracy):
        raise ValueError(
            f"`step <= {len(curve.accuracy) - 1}` must hold (the fallback to floor "
            f"{cfg.floor:g} has {len(curve.accuracy)} steps), but got step={cfg.step}"
        )
    model = fallbacks.model_of(placement, q, curve, cfg.step)
    reverted = curve.ranking[: cfg.step]
    names = ", ".join(reverted[:4]) + (
        f" and {len(reverted) - 4} more" if len(reverted) > 4 else ""
    )
    acc, meets = curve.accuracy[cfg.step], curve.accuracy[cfg.step] >= curve.target
    excluded = set(placement.excluded) | set(reverted)
    counts = placements.counts(q.model, excluded)
    ran = ", ".join(f"{a} of {b} {op}" for op, (a, b) in counts.items())
    note = (
        f"int8 ({placement.setting.label}, {placement.calibration}): {ran}; fallback step "
        f"{cfg.step}: {cfg.step} int8 node(s) back to fp32, worst first on calib"
        f"{' (' + names + ')' if names else ''}; calib accuracy {100 * acc:.1f} % vs floor "
        f"{100 * curve.target:.1f} %{' (met)' if meets else ' (not met)'}"
    )
    if not placement.faster:  # the start of the curve: what int8 auto found on this CPU
        note += "; no int8 placement was faster than fp32 on this CPU"
    return Graph(model, {}, precision=note)
