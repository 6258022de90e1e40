"""Plans: ordered tuples of technique configs, and the registry that applies them.

A technique is a frozen config dataclass plus an apply function, registered by config type. Its
*stage* says what it transforms: ``"torch"`` techniques take and return a ``torch.nn.Module``
(structured pruning, fine-tuning), ``"graph"`` techniques take and return an
:class:`~optim.artifact.Graph` (weight quantization, int8 execution, unstructured pruning). In a
plan every torch-stage step comes before every graph-stage step: the model is exported once,
in between.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

STAGES = ("torch", "graph")


@dataclass(frozen=True)
class Technique:
    config: type
    stage: str
    family: str
    apply: Callable[..., Any]
    final: bool = False  # hands ONNX Runtime a graph without float weights: nothing may follow
    needs: tuple[str, ...] = ()  # what the source must offer (see optim.applicable.NEEDS)
    # (config, source) -> why this config cannot run on the source, for needs a config sets
    check: Callable[[Any, Any], str | None] | None = None


REGISTRY: dict[str, Technique] = {}

Plan = tuple  # tuple of config dataclass instances, applied left to right


def technique(
    config: type,
    stage: str,
    family: str,
    final: bool = False,
    needs: tuple[str, ...] | None = None,
    check: Callable[[Any, Any], str | None] | None = None,
) -> Callable[[Callable], Callable]:
    """Register ``apply(obj, config, ctx) -> new obj`` for ``config``'s type; ``final`` steps
    (int8 / int4 execution) must end a plan. ``needs`` names what the source must offer
    (:data:`optim.applicable.NEEDS`); by default a torch model and a training split for a
    torch-stage step, Conv/Gemm/MatMul weights for a graph-stage one. ``check(config,
    source)`` says why one config cannot run on a source (a need that depends on the config)."""
    if stage not in STAGES:
        raise ValueError(f"`stage` must be one of {STAGES}, but got stage={stage!r}")
    if needs is None:
        needs = ("torch", "train") if stage == "torch" else ("weights",)

    def register(fn: Callable) -> Callable:
        REGISTRY[config.__name__] = Technique(
            config, stage, family, fn, final, tuple(needs), check
        )
        return fn

    return register


def _technique(cfg: object) -> Technique:
    name = type(cfg).__name__
    if name not in REGISTRY:
        raise ValueError(f"unknown technique {name!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[name]


def validate(plan: Sequence[object]) -> tuple:
    """Return ``plan`` as a tuple, checking that torch-stage steps precede graph-stage steps."""
    plan = tuple(plan)
    stages = [_technique(c).stage for c in plan]
    if "graph" in stages and "torch" in stages[stages.index("graph") :]:
        raise ValueError(
            "torch-stage steps must come before graph-stage steps, but got plan "
            f"{label(plan)!r} (stages {stages})"
        )
    for cfg in plan[:-1]:
        if _technique(cfg).final:
            raise ValueError(
                f"`{type(cfg).__name__}` must be the plan's last step (its weights execute as "
                f"integers, leaving none to prune or round), but got plan {label(plan)!r}"
            )
    return plan


def to_json(plan: Sequence[object]) -> list[dict]:
    """``[{"technique": "Quantize", "bits": 4, ...}, ...]``: the recipe form of a plan."""
    return [{"technique": type(c).__name__, **dataclasses.asdict(c)} for c in plan]


def from_json(items: Sequence[dict]) -> tuple:
    """Inverse of :func:`to_json` (validates every config through its ``__post_init__``)."""
    if isinstance(items, (str, dict)) or not isinstance(items, Sequence):
        raise ValueError(f"a plan must be a list of steps, but got {str(items)[:60]!r}")
    plan = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError(f"each plan step must be an object, but got {str(item)[:60]!r}")
        item = dict(item)
        name = item.pop("technique", None)
        if not isinstance(name, str) or name not in REGISTRY:
            raise ValueError(
                f"unknown technique {str(name)[:60]!r}; registered: {sorted(REGISTRY)}"
            )
        config = REGISTRY[name].config
        if unknown := sorted(set(item) - {f.name for f in dataclasses.fields(config)}):
            raise ValueError(
                f"`{name}` has no field {unknown[0]!r}; its fields are "
                f"{[f.name for f in dataclasses.fields(config)]}"
            )
        for f in dataclasses.fields(config):
            if f.name in item:
                _check_type(name, f, item[f.name])
        plan.append(config(**item))
    return validate(plan)


def _check_type(technique: str, f: dataclasses.Field, value: object) -> None:
    """A JSON value must have its field's type, as the default shows: ``"bits": "4"`` or
    ``4.5`` is refused here, in one line, rather than failing somewhere inside a build."""
    default = f.default
    if default is None or default is dataclasses.MISSING:
        return  # optional or required without a typed default: the config's own checks
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple):
        ok = isinstance(value, (list, tuple, dict))
    else:
        ok = True
    if not ok:
        kind = type(default).__name__
        raise ValueError(
            f"`{technique}.{f.name}` must be {kind}, but got {str(value)[:40]!r} "
            f"({type(value).__name__})"
        )


def key(plan: Sequence[object]) -> str:
    """A canonical string identifying the plan (stable across runs and processes)."""
    return json.dumps(to_json(plan), sort_keys=True, separators=(",", ":"))


def label(plan: Sequence[object]) -> str:
    """A short human-readable name, e.g. ``"prune 50% + int4 w/channel"``."""
    return " + ".join(c.label for c in plan) or "fp32 baseline"


def changed(cfg: object, *names: str) -> str:
    """A label suffix naming the fields among ``names`` that differ from their defaults, so
    two configs never share a label.

    Example:
        >>> changed(FineTune(3, lr=0.002), "lr")  # doctest: +SKIP
        ' (lr 0.002)'
    """
    parts = [
        f"{f.name} {getattr(cfg, f.name):g}"
        for f in dataclasses.fields(cfg)
        if f.name in names and getattr(cfg, f.name) != f.default
    ]
    return f" ({', '.join(parts)})" if parts else ""


def family(plan: Sequence[object]) -> str:
    """The plan's technique families joined in order, e.g. ``"prune+quantize"`` (fine-tuning,
    a recovery step, is left out), or ``"baseline"`` for the empty plan."""
    names = [_technique(c).family for c in plan]
    names = [n for i, n in enumerate(names) if n != "finetune" and n not in names[:i]]
    return "+".join(names) or ("finetune" if plan else "baseline")


def split(plan: Sequence[object]) -> tuple[tuple, tuple]:
    """(torch-stage steps, graph-stage steps)."""
    plan = validate(plan)
    n = sum(1 for c in plan if _technique(c).stage == "torch")
    return plan[:n], plan[n:]


def apply(obj: Any, plan: Sequence[object], ctx: Any) -> Any:
    """Apply every step of ``plan`` in order; the input is never mutated.

    Example:
        >>> small = apply(graph, (Prune(0.5), Quantize(bits=4)), ctx)  # doctest: +SKIP
    """
    for cfg in validate(plan):
        if _technique(cfg).stage == "torch":
            obj = copy.deepcopy(obj)
        obj = _technique(cfg).apply(obj, cfg, ctx)
    return obj


@dataclass(frozen=True)
class Context:
    """What a technique may read besides the model: the source's data, a seed, the CPU."""

    source: Any  # optim.sources.ModelSource
    seed: int = 0
    cpu: dict = dataclasses.field(default_factory=dict)
