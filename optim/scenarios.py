"""Latency scenarios: intra-op threads x batch size as measurement axes of already built files.

Each file is built once; every scenario times all of them again, interleaved with the baseline
(:func:`optim.measure.time_interleaved`, ORT's full graph optimizations), on a batch of that
size taken from the given inputs. Batched scenarios report throughput (items/s) next to the
p50. :func:`flips` lists configs whose verdict against the baseline changes between scenarios
(int8 that wins at batch 32 but loses at batch 1), so a recommendation for one scenario is not
read as one for another.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from optim import measure


@dataclass(frozen=True)
class Scenario:
    """One measurement condition: ``threads`` intra-op threads, ``batch`` examples per call.

    Example:
        >>> Scenario(2, 8).label
        '2 threads, batch 8'
    """

    threads: int = 1
    batch: int = 1

    def __post_init__(self) -> None:
        cores = os.cpu_count() or 1
        if not 1 <= self.threads <= cores:
            raise ValueError(
                f"`1 <= threads <= {cores}` (this machine's cores) must hold, but got "
                f"threads={self.threads}"
            )
        if self.batch < 1:
            raise ValueError(f"`batch >= 1` must hold, but got batch={self.batch}")

    @property
    def label(self) -> str:
        return f"{self.threads} thread{'s' * (self.threads > 1)}, batch {self.batch}"


def grid(threads: Sequence[int] = (1, 2, 0), batches: Sequence[int] = (1, 8, 32)) -> list:
    """The cross product as scenarios; threads 0 means all cores (duplicates dropped).

    Example:
        >>> [s.label for s in grid((1,), (1, 8))]
        ['1 thread, batch 1', '1 thread, batch 8']
    """
    cores = os.cpu_count() or 1
    out = {Scenario(min(t or cores, cores), b): None for t in threads for b in batches}
    return list(out)


def batch_of(x: measure.Inputs, batch: int) -> measure.Inputs:
    """``batch`` examples from ``x`` (repeated when it has fewer)."""
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
) -> pd.DataFrame:
    """Time every file in ``files`` under every scenario (files as they are: built once).

    Returns:
        One row per (scenario, file): ``scenario``, ``threads``, ``batch``, ``key``, ``p50_ms``,
        ``p50_low``, ``p50_high``, ``speedup``, ``speedup_low``, ``speedup_high``,
        ``speed_verdict`` (against the baseline in the same scenario) and ``items_per_s``.

    Example:
        >>> df = time_scenarios({"fp32": a, "int8": b}, x, "fp32", grid())  # doctest: +SKIP
    """
    rows = []
    for s in scenarios:
        inputs = batch_of(x, s.batch)
        t = measure.time_interleaved(files, inputs, baseline, threads=s.threads, rounds=rounds,
                                     min_seconds=min_seconds, seed=seed)  # fmt: skip
        for key, timing in t.items():
            rows.append({
                "scenario": s.label, "threads": s.threads, "batch": s.batch, "key": key,
                "p50_ms": timing.p50_ms, "p50_low": timing.p50_low, "p50_high": timing.p50_high,
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


def in_scenario(rows: pd.DataFrame, timings: pd.DataFrame, scenario: str) -> pd.DataFrame:
    """``rows`` (result rows by ``key``) with their latency columns from ``scenario``'s timings
    (:func:`time_scenarios`), so :func:`optim.frontier.frontier` and
    :func:`optim.frontier.recommend` answer for that scenario; keys not timed there get NaN.

    Example:
        >>> rec = recommend(in_scenario(df, timings, "2 threads, batch 32"), c)  # doctest: +SKIP
    """
    t = timings[timings["scenario"] == scenario].set_index("key")
    if t.empty:
        known = sorted(timings["scenario"].unique())
        raise ValueError(f"`scenario` must be one of {known}, but got {scenario!r}")
    out = rows.copy()
    for col, src in (("latency_p50_ms", "p50_ms"), ("p50_low", "p50_low"),
                     ("p50_high", "p50_high"), ("speedup", "speedup"),
                     ("speedup_low", "speedup_low"), ("speedup_high", "speedup_high"),
                     ("speed_verdict", "speed_verdict"), ("items_per_s", "items_per_s")):  # fmt: skip
        out[col] = out["key"].map(t[src])
    out["threads"] = int(t["threads"].iloc[0])
    return out
