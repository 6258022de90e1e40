"""Latency scenarios: intra-op threads x batch size (x ORT's graph optimization level) as
measurement axes of already built files.

Each file is built once; every scenario times all of them again, interleaved with the baseline
(:func:`optim.measure.time_interleaved`), on a batch of that size taken from the given inputs.
Batched scenarios report throughput (items/s) next to the p50. :func:`flips` lists configs whose
verdict against the baseline changes between scenarios (int8 that wins at batch 32 but loses at
batch 1), so a recommendation for one scenario is not read as one for another. A run stores
each row's figures per scenario in ``row.extra["scenarios"]`` (:mod:`optim.scenario_runs`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from optim import session

if TYPE_CHECKING:  # the timing code imports onnxruntime: only when it runs
    from optim import measure

SYNTAX = "THREADSxBATCH[:LEVEL], e.g. 1x1,2x8,0x32 (threads 0 = all cores)"
_ENTRY = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*(?::\s*([a-z]+))?\s*$")
# per-scenario figures of a row, as time_scenarios returns and a row stores them
FIGURES = ("threads", "batch", "level", "p50_ms", "p90_ms", "p50_low", "p50_high", "cv",
           "speedup", "speedup_low", "speedup_high", "speed_verdict", "items_per_s")  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    """One measurement condition: ``threads`` intra-op threads, ``batch`` examples per call,
    ORT's graph optimizations at ``level`` (:data:`optim.session.LEVEL_NAMES`).

    Example:
        >>> Scenario(2, 8).label, Scenario(1, 1, "basic").label
        ('2 threads, batch 8', '1 thread, batch 1, basic graph optimizations')
    """

    threads: int = 1
    batch: int = 1
    level: str = "all"

    def __post_init__(self) -> None:
        cores = os.cpu_count() or 1
        if not 1 <= self.threads <= cores:
            raise ValueError(
                f"`1 <= threads <= {cores}` (this machine's cores) must hold, but got "
                f"threads={self.threads}"
            )
        if self.batch < 1:
            raise ValueError(f"`batch >= 1` must hold, but got batch={self.batch}")
        session.check_level(self.level)

    @property
    def label(self) -> str:
        return label(self.threads, self.batch, self.level)

    @classmethod
    def of(cls, axes: Sequence) -> Scenario:
        """``[threads, batch]`` or ``[threads, batch, level]`` as stored in
        :class:`optim.build.Settings` (threads 0: all of this machine's cores)."""
        threads, batch, *level = axes
        cores = os.cpu_count() or 1
        return cls(min(int(threads) or cores, cores), int(batch), *level)


def label(threads: int, batch: int, level: str = "all") -> str:
    """A scenario's name, e.g. ``"2 threads, batch 8"`` (the level only when not ``"all"``)."""
    text = f"{threads} thread{'s' * (threads > 1)}, batch {batch}"
    return text if level == "all" else f"{text}, {level} graph optimizations"


def check_axes(axes: Sequence[Sequence]) -> tuple[tuple, ...]:
    """``axes`` as a tuple of ``(threads, batch[, level])`` tuples, each checked; ValueError
    (one line, the value and the rule) for a bad one."""
    out = []
    for a in axes:
        if not isinstance(a, Sequence) or isinstance(a, str) or len(a) not in (2, 3):
            raise ValueError(f"a scenario must be [threads, batch] or [threads, batch, level], "
                             f"but got {a!r}")  # fmt: skip
        cores = os.cpu_count() or 1
        if not 0 <= int(a[0]) <= cores:
            raise ValueError(f"`0 <= threads <= {cores}` (0: all cores) must hold in a scenario, "
                             f"but got threads={a[0]}")  # fmt: skip
        Scenario.of(a)  # batch and level
        out.append(tuple(a))
    return tuple(out)


def parse(text: str) -> tuple[tuple, ...]:
    """Scenario axes from ``THREADSxBATCH[:LEVEL]`` entries separated by commas.

    Example:
        >>> parse("1x1, 2x8, 0x32:basic")
        ((1, 1), (2, 8), (0, 32, 'basic'))
    """
    out = []
    for entry in text.split(","):
        m = _ENTRY.match(entry)
        if m is None:
            raise ValueError(f"a scenario must read {SYNTAX}, but got {entry.strip()!r}")
        t, b, level = m.groups()
        out.append((int(t), int(b)) if level is None else (int(t), int(b), level))
    return check_axes(out)


def cross(threads: Sequence[int], batches: Sequence[int]) -> tuple[tuple, ...]:
    """Axes for every (threads, batch) pair; empty when either list is (a form left blank).

    Example:
        >>> cross([1, 2], [1, 8])
        ((1, 1), (1, 8), (2, 1), (2, 8))
    """
    return check_axes([(int(t), int(b)) for t in threads for b in batches])


BATCHES = (1, 8, 32, 64)  # the sweep form's batch sizes: single requests, small and large batches


def thread_choices() -> list[int]:
    """The sweep form's thread counts: powers of two below this machine's cores, then 0 (all).

    Example:
        >>> thread_choices()[0], thread_choices()[-1]
        (1, 0)
    """
    cores = os.cpu_count() or 1
    return [t for t in (1, 2, 4, 8, 16, 32, 64) if t < cores] + [0]


def threads_name(threads: int) -> str:
    """``"all cores"`` for 0, else the number."""
    return "all cores" if threads == 0 else str(threads)


def grid(threads: Sequence[int] = (1, 2, 0), batches: Sequence[int] = (1, 8, 32)) -> list:
    """The cross product as scenarios; threads 0 means all cores (duplicates dropped).

    Example:
        >>> [s.label for s in grid((1,), (1, 8))]
        ['1 thread, batch 1', '1 thread, batch 8']
    """
    return list(dict.fromkeys(Scenario.of((t, b)) for t in threads for b in batches))


def batch_of(x: measure.Inputs, batch: int) -> measure.Inputs:
    """``batch`` examples from ``x`` (repeated when it has fewer)."""
    from optim import measure

    n = measure.count(x)
    if n == 0:
        raise ValueError("`x` must hold at least one example, but got none")
    rows = np.arange(batch) % n
    if isinstance(x, Mapping):
        return {
            k: v if isinstance(v, measure.Fixed) else np.asarray(v)[rows] for k, v in x.items()
        }
    return np.asarray(x)[rows]


def time_scenarios(
    files: Mapping[str, Path],
    x: measure.Inputs,
    baseline: str,
    scenarios: Sequence[Scenario],
    rounds: int = 20,
    min_seconds: float = 0.5,
    seed: int = 0,
    graph_ids: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Time every file in ``files`` under every scenario (files as they are: built once).

    ``graph_ids`` (the files' :func:`optim.measure.graph_id`, taken at full optimizations)
    mark configs that execute the baseline's graph in the scenarios at level ``"all"``.

    Returns:
        One row per (scenario, file): ``scenario``, ``key`` and :data:`FIGURES` (``speed_verdict``
        against the baseline in the same scenario; ``items_per_s`` = batch / p50).

    Example:
        >>> df = time_scenarios({"fp32": a, "int8": b}, x, "fp32", grid())  # doctest: +SKIP
    """
    from optim import measure

    rows = []
    for s in scenarios:
        if measure.batch_of(x, s.batch) != s.batch:
            raise ValueError(f"a model fed a fixed input (a state) runs one example per call, "
                             f"but the scenario asks for batch {s.batch}")  # fmt: skip
        t = measure.time_interleaved(
            files, batch_of(x, s.batch), baseline, threads=s.threads, rounds=rounds,
            min_seconds=min_seconds, seed=seed, level=s.level,
            graph_ids=graph_ids if s.level == "all" else None,
        )  # fmt: skip
        for key, timing in t.items():
            rows.append({
                "scenario": s.label, "key": key, "threads": s.threads, "batch": s.batch,
                "level": s.level, "p50_ms": timing.p50_ms, "p90_ms": timing.p90_ms,
                "p50_low": timing.p50_low, "p50_high": timing.p50_high, "cv": timing.cv,
                "speedup": timing.speedup, "speedup_low": timing.speedup_low,
                "speedup_high": timing.speedup_high, "speed_verdict": timing.verdict,
                "items_per_s": 1000.0 * s.batch / timing.p50_ms,
            })  # fmt: skip
    return pd.DataFrame(rows)


def flips(df: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Configs whose verdict against the baseline differs between scenarios: key -> scenario
    -> verdict ("faster", "same", "slower"), for those faster somewhere and not everywhere.

    Example:
        >>> df = pd.DataFrame({"key": ["int8", "int8"], "scenario": ["batch 1", "batch 32"],
        ...                    "speed_verdict": ["slower", "faster"]})
        >>> flips(df)
        {'int8': {'batch 1': 'slower', 'batch 32': 'faster'}}
    """
    out = {}
    for key, rows in df.groupby("key", sort=False):
        verdicts = dict(zip(rows["scenario"], rows["speed_verdict"], strict=True))
        if "faster" in verdicts.values() and set(verdicts.values()) - {"faster"}:
            out[str(key)] = verdicts
    return out


def flip_lines(flipped: Mapping[str, Mapping[str, str]], labels: Mapping[str, str]) -> list:
    """:func:`flips` in plain words, one line per config, scenarios grouped by verdict.

    Example:
        >>> flip_lines({"k": {"1 thread, batch 1": "same", "2 threads, batch 32": "faster",
        ...                   "2 threads, batch 8": "faster"}}, {"k": "int8 auto"})
        ['int8 auto: faster at 2 threads, batch 32 and at 2 threads, batch 8; same at 1 thread, batch 1']
    """
    order = ("faster", "same", "same graph", "slower")
    out = []
    for key, verdicts in flipped.items():
        parts = []
        for v in sorted(set(verdicts.values()), key=lambda v: order.index(v) if v in order else 9):
            where = [s for s, w in verdicts.items() if w == v]
            if len(where) > 1:  # labels hold commas: "at" starts each one
                where = [", at ".join(where[:-1]), where[-1]]
            parts.append(f"{v} at {' and at '.join(where)}")
        out.append(f"{labels.get(key, key)}: {'; '.join(parts)}")
    return out


_IN_SCENARIO = (("latency_p50_ms", "p50_ms"), ("latency_p90_ms", "p90_ms"),
                ("p50_low", "p50_low"), ("p50_high", "p50_high"), ("latency_cv", "cv"),
                ("speedup", "speedup"), ("speedup_low", "speedup_low"),
                ("speedup_high", "speedup_high"), ("speed_verdict", "speed_verdict"),
                ("items_per_s", "items_per_s"), ("batch", "batch"))  # fmt: skip


def in_scenario(rows: pd.DataFrame, timings: pd.DataFrame, scenario: str) -> pd.DataFrame:
    """``rows`` (result rows by ``key``) with their latency columns from ``scenario``'s timings
    (:func:`time_scenarios`), so :func:`optim.frontier.frontier` and
    :func:`optim.frontier.recommend` answer for that scenario; keys not timed there get NaN.
    ``scenario`` and ``session`` (the ORT settings that timed it) say which it is.

    Example:
        >>> rec = recommend(in_scenario(df, timings, "2 threads, batch 32"), c)  # doctest: +SKIP
    """
    t = timings[timings["scenario"] == scenario].set_index("key")
    if t.empty:
        known = list(dict.fromkeys(timings["scenario"])) if len(timings) else []
        raise ValueError(f"`scenario` must be one of {known}, but got {scenario!r}")
    out = rows.copy()
    for col, src in _IN_SCENARIO:
        out[col] = out["key"].map(t[src])
    threads, level = int(t["threads"].iloc[0]), str(t["level"].iloc[0]) if "level" in t else "all"
    out["threads"] = threads
    out["scenario"] = scenario
    out["session"] = session.session_text(threads, level)
    return out
