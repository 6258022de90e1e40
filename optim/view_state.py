"""The dashboard's view state and the shared link that carries it (no streamlit import).

A page's state (run, floor, budgets, picked configs, page) round-trips through the URL's query
params: :func:`parse_params` reads them (a bad value is dropped and named), :func:`encode_params`
writes only what differs from :data:`DEFAULTS`, and :func:`constraints` turns the state into the
:class:`~optim.frontier.Constraints` that the recommendation uses.

Example:
    >>> state, bad = parse_params({"floor": "0.97", "prefer": "latency"})
    >>> encode_params(state)
    {'floor': '0.97', 'prefer': 'latency'}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from optim import frontier as fr
from optim.charts import short_id

PAGES = (
    "models",
    "sweep",
    "tradeoffs",
    "sensitivity",
    "compare",
    "export",
    "glossary",
)  # url paths
PREFER = {"size": "Smallest", "latency": "Fastest"}
DEFAULTS: dict[str, Any] = {
    "run": None,  # None: the newest run
    "floor": None,  # None: the default for the run's rows (optim.frontier.default_floor)
    "relative": False,
    "worst": False,  # the floor applies to the worst class's accuracy instead of the mean
    "max_size_mb": None,
    "max_latency_ms": None,
    "prefer": "size",
    "scenario": None,  # None: the run's own timing (optim.scenario_runs.labels)
    "selected": (),  # short ids (see short_id) of the configs picked on the charts
    "page": "tradeoffs",
    "present": False,
}
_BOOL = {"1": True, "true": True, "0": False, "false": False}


def _number(text: str, kind: type = float, low: float = -math.inf) -> Any:
    if len(text) > 40:  # a 310-digit run id: not a number anyone meant
        raise ValueError(f"a number of at most 40 characters is expected, but got {len(text)}")
    value = kind(text)
    if not math.isfinite(float(value)) or value < low:
        raise ValueError(f"`{low} <= value < inf` must hold, but got value={text!r}")
    return value


def _text(text: str) -> str:
    if not 0 < len(text) <= 100:
        raise ValueError(f"a text of 1 to 100 characters is expected, but got {len(text)}")
    return text


def parse_params(params: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Parse URL query params into view state; returns (state, names of the bad params).

    Unknown params are ignored; a bad value is dropped (and reported) so the default applies.

    Example:
        >>> parse_params({"floor": "0.97", "relative": "1", "run": "x"})
        ({'floor': 0.97, 'relative': True}, ['run'])
    """
    parsers = {
        "run": lambda v: _number(v, int, 1),
        "floor": lambda v: _number(v, float, 0.0),
        "relative": lambda v: _BOOL[v.lower()],
        "worst": lambda v: _BOOL[v.lower()],
        "max_size_mb": lambda v: _number(v, float, 1e-9),
        "max_latency_ms": lambda v: _number(v, float, 1e-9),
        "prefer": lambda v: {p: p for p in PREFER}[v],
        "scenario": lambda v: _text(v),
        "selected": lambda v: tuple(s for s in v.split(",") if s),
        "page": lambda v: {p: p for p in PAGES}[v],
        "present": lambda v: _BOOL[v.lower()],
    }
    state, bad = {}, []
    for name, parse in parsers.items():
        if name in params:
            try:
                state[name] = parse(str(params[name]))
            except (ValueError, KeyError):
                bad.append(name)
    return state, bad


def encode_params(state: Mapping[str, Any]) -> dict[str, str]:
    """The query params of ``state``: only values that differ from :data:`DEFAULTS`.

    Example:
        >>> encode_params({"run": 3, "floor": 0.975, "relative": False, "selected": ("ab12",)})
        {'run': '3', 'floor': '0.975', 'selected': 'ab12'}
    """
    out = {}
    for name, default in DEFAULTS.items():
        value = state.get(name, default)
        if value is None or value == default or (name == "selected" and not value):
            continue
        if isinstance(value, bool):
            out[name] = "1" if value else "0"
        elif isinstance(value, float):
            out[name] = f"{round(value, 6):g}"
        elif name == "selected":
            out[name] = ",".join(value)
        else:
            out[name] = str(value)
    return out


def keys_for(ids: Iterable[str], keys: Iterable[str]) -> list[str]:
    """The keys among ``keys`` whose :func:`~optim.charts.short_id` is in ``ids``, in ``keys``
    order (a URL and the trade-off charts carry short ids)."""
    ids = set(ids)
    return [k for k in keys if short_id(k) in ids]


def default_floor(ok: pd.DataFrame, relative: bool) -> float:
    """:func:`optim.frontier.default_floor` for the rows ``ok`` (against their baseline)."""
    return fr.default_floor(fr.floor_reference(ok), relative)


def constraints(state: Mapping[str, Any], ok: pd.DataFrame) -> fr.Constraints:
    """The :class:`~optim.frontier.Constraints` of the view state (MB -> bytes)."""
    relative = bool(state.get("relative")) and fr.baseline_index(ok) is not None
    floor = state.get("floor")
    floor = default_floor(ok, relative) if floor is None else float(floor)
    size_mb, lat = state.get("max_size_mb"), state.get("max_latency_ms")
    return fr.Constraints(
        floor=fr.clamp_floor(floor, relative),
        relative=relative,
        max_size_bytes=size_mb * 1e6 if size_mb else None,
        max_latency_ms=lat or None,
        prefer=state.get("prefer") or "size",
        on="worst_class_acc" if state.get("worst") and "worst_class_acc" in ok else "accuracy",
    )
