"""A technique's form, read from its config dataclass: fields, what a measurement fills, and
how many configs the form's grid measures (no streamlit import).

Example:
    >>> [f.name for f in form_fields(Quantize)]  # doctest: +SKIP
    ['bits', 'granularity', 'symmetric']
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FormField:
    """One input of a technique form, read from the config dataclass field."""

    name: str
    kind: str  # "choice", "bool", "int", "float"
    default: Any
    help: str = ""
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    optional: bool = False

    @property
    def step(self) -> float:
        """A step of about a tenth of the default's magnitude (0.05 for 0.5, 1e-4 for 1e-3)."""
        if self.kind != "float":
            return 1
        span = self.high - self.low if self.low is not None and self.high is not None else 0.1
        ref = abs(self.default) if self.default else span
        return 10.0 ** (math.floor(math.log10(ref)) - 1) * (5 if ref >= 0.1 else 1)

    @property
    def format(self) -> str:
        """printf format with enough decimals for :attr:`step`."""
        if self.kind != "float":
            return "%d"
        return f"%.{max(2, -math.floor(math.log10(self.step)))}f"


def form_fields(config: type) -> list[FormField]:
    """The form of a technique config, generically from its dataclass fields and metadata.

    Example:
        >>> [f.name for f in form_fields(Quantize)]  # doctest: +SKIP
        ['bits', 'granularity', 'symmetric']
    """
    out = []
    for f in dataclasses.fields(config):
        meta, default = f.metadata, f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        hint = str(f.type)
        if isinstance(default, (tuple, list, dict)) or hint.startswith(("tuple", "dict")):
            continue  # structured fields (per-layer bits, rankings) keep their defaults
        low, high = meta.get("range", (None, None))
        if "choices" in meta:
            kind = "choice"
        elif isinstance(default, bool) or hint == "bool":
            kind = "bool"
        elif isinstance(default, int) or hint.startswith("int"):
            kind = "int"
        else:
            kind = "float"
        out.append(
            FormField(
                f.name,
                kind,
                None if default is dataclasses.MISSING else default,
                meta.get("help", ""),
                tuple(meta.get("choices", ())),
                low,
                high,
                "None" in hint,
            )
        )
    return out


def filled_fields(config: type, values: dict) -> dict[str, str]:
    """Fields a form fills from a measurement of the model instead of asking for them, and
    which measurement (``"sensitivity"``: :func:`optim.sensitivity.rank` of the model); a
    field with ``fill_if`` only when that other field's value is set."""
    return {
        f.name: f.metadata["fill"]
        for f in dataclasses.fields(config)
        if "fill" in f.metadata and values.get(f.metadata.get("fill_if", f.name), True)
    }


def count_configs(plan_list: Iterable[Sequence[object]]) -> int:
    """How many configs a run of ``plan_list`` measures (the baseline included, once each)."""
    from optim import plan as plans

    return len({plans.key(()), *(plans.key(p) for p in plan_list)})
