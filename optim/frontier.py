"""Frontiers, the floor's rules and the "which config ships" recommendation, in numbers and in
the one sentence every screen, the CLI and the report show (pure numpy, fast)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from optim.pareto import pareto_mask

MAXIMIZED = frozenset({"accuracy", "acc_low", "acc_high", "agreement", "worst_class_acc"})
PREFER = ("size", "latency")
FLOOR_ON = {"accuracy": "mean accuracy", "worst_class_acc": "worst class's accuracy"}


def fmt_bytes(n: float | None) -> str:
    """Format bytes in SI units, like the chart axis: ``fmt_bytes(58_200)`` is ``"58.2 KB"``."""
    if n is None or not math.isfinite(n):
        return "n/a"
    exp = min(int(math.log10(max(abs(n), 1) / 0.99995) // 3), 3)
    return f"{n:.0f} B" if exp == 0 else f"{n / 1000**exp:.1f} {('KB', 'MB', 'GB')[exp - 1]}"


def fmt_pct(x: float | None, digits: int = 1) -> str:
    """Format a fraction as a percentage: ``fmt_pct(0.9725)`` is ``"97.2 %"``."""
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f} %"


def fmt_ms(x: float) -> str:
    """Format milliseconds: ``fmt_ms(3.14)`` is ``"3.1 ms"``."""
    return f"{x:.2f} ms" if x < 1 else f"{x:.1f} ms" if x < 100 else f"{x:.0f} ms"


def _cols(df: pd.DataFrame, cols: Sequence[str], also: Sequence[str] = ()) -> list[np.ndarray]:
    if missing := [c for c in (*also, *cols) if c not in df.columns]:
        raise ValueError(f"`df` must have columns {[*also, *cols]}, but got missing={missing}")
    return [df[c].to_numpy(dtype=float, na_value=np.nan) for c in cols]


SAME_SPEED = ("same", "same graph")  # speed verdicts that claim no difference to the baseline


def compared_latency(df: pd.DataFrame) -> np.ndarray:
    """The p50 that comparisons use: the baseline's for a row whose speed-up interval includes
    1 (``speed_verdict`` "same") or that executes the baseline's graph ("same graph"); for
    any other row with a measured ``speedup``, the baseline's p50 over that paired speed-up
    (the median of per-round ratios, which the verdict is drawn from: a "faster" row always
    compares below the baseline, even when other work on the machine inflated its p50 over all
    calls); else the row's own p50. So no config wins or loses on latency by timing noise.

    Example:
        >>> df = pd.DataFrame({"latency_p50_ms": [1.0, 0.9, 0.5], "is_baseline": [True, False,
        ...     False], "speed_verdict": ["baseline", "same", "faster"]})
        >>> compared_latency(df).tolist()
        [1.0, 1.0, 0.5]
    """
    (lat,) = _cols(df, ["latency_p50_ms"])
    b = baseline_index(df)
    if b is None or "speed_verdict" not in df.columns:
        return lat
    same = df["speed_verdict"].isin(SAME_SPEED).to_numpy() & ~np.isnan(lat)
    if "speedup" in df.columns:
        speedup = df["speedup"].to_numpy(dtype=float, na_value=np.nan)
        paired = np.isfinite(speedup) & (speedup > 0) & ~np.isnan(lat)
        lat = np.where(paired, lat[b] / np.where(paired, speedup, 1.0), lat)
    return np.where(same, lat[b], lat)


def frontier(
    df: pd.DataFrame, objectives: Sequence[str] = ("accuracy", "size_bytes", "latency_p50_ms")
) -> np.ndarray:
    """Mask of the rows of ``df`` on the Pareto frontier of ``objectives``.

    Columns in ``MAXIMIZED`` (accuracy, its CI bounds, agreement) are maximized, all others
    minimized; latency is :func:`compared_latency`. Rows with a NaN objective (e.g. latency not
    timed yet) are never on the frontier.

    Args:
        df: Result rows.
        objectives: Column names; two give a 2-D projection, e.g. ``("accuracy", "size_bytes")``.

    Example:
        >>> frontier(df, ("accuracy", "latency_p50_ms"))  # doctest: +SKIP
    """
    cols = _cols(df, objectives)
    cols = [
        compared_latency(df) if o == "latency_p50_ms" else c
        for o, c in zip(objectives, cols, strict=True)
    ]
    v = np.array(cols, dtype=float).T.reshape(len(df), len(objectives))
    ok = ~np.isnan(v).any(axis=1)
    mask = np.zeros(len(df), dtype=bool)
    mask[ok] = pareto_mask(v[ok], [c not in MAXIMIZED for c in objectives])
    return mask


# ------------------------------------------------------------------ the floor's rules
# One home for them: the Trade-offs and Compare pages, the CLI and Constraints all ask here.

FLOOR_LIMITS = {False: (0.0, 1.0), True: (0.01, 1.5)}  # (absolute, relative): widest range
FLOOR_REACH = 0.10  # the slider's default range reaches this far (accuracy) below the baseline
NEAR_CHANCE = 0.05  # a recommendation this close to chance accuracy gets a warning
FAR_BELOW = 0.10  # ... and so does one this far below the baseline's accuracy


def floor_reference(df: pd.DataFrame) -> float | None:
    """The accuracy the floor is set against: the baseline's, else the best row's, else None."""
    b = baseline_index(df)
    acc = df["accuracy"].to_numpy(dtype=float) if "accuracy" in df.columns else np.zeros(0)
    ref = acc[b] if b is not None else (np.nanmax(acc) if np.isfinite(acc).any() else math.nan)
    return float(ref) if math.isfinite(ref) else None


def clamp_floor(floor: float, relative: bool) -> float:
    """``floor`` inside :data:`FLOOR_LIMITS`: ``clamp_floor(1.2, False)`` is ``1.0``."""
    lo, hi = FLOOR_LIMITS[relative]
    return float(min(max(floor, lo), hi))


def default_floor(base_acc: float | None, relative: bool) -> float:
    """99 % of the baseline (relative), else one point under ``base_acc`` (rounded to 0.1 pt).

    Example:
        >>> default_floor(0.9731, relative=False), default_floor(0.9731, relative=True)
        (0.963, 0.99)
    """
    if relative or base_acc is None:
        return 0.99
    return round(clamp_floor(base_acc - 0.01, False), 3)


def floor_range(
    base_acc: float | None, relative: bool, current: float | None = None, full: bool = False
) -> tuple[float, float]:
    """Slider bounds: from :data:`FLOOR_REACH` below the baseline up to 100 % accuracy (with
    ``full``, or without a baseline, the whole of :data:`FLOOR_LIMITS`); always ``current``.

    Example:
        >>> floor_range(0.9725, False), floor_range(0.9725, True)
        ((0.87, 1.0), (0.89, 1.03))
    """
    lo, hi = FLOOR_LIMITS[relative]
    if base_acc is not None and base_acc > 0:
        scale = base_acc if relative else 1.0
        hi = min(hi, math.ceil(round(100 / scale, 9)) / 100)  # 100 % accuracy, in the unit
        if not full:
            lo = max(lo, math.floor(round(100 * (base_acc - FLOOR_REACH) / scale, 9)) / 100)
    if current is not None:
        current = clamp_floor(current, relative)
        lo, hi = min(lo, current), max(hi, current)
    return round(lo, 3), round(hi, 3)


def convert_floor(floor: float, base_acc: float | None, to_relative: bool) -> float:
    """The same floor in the other unit (absolute accuracy <-> share of the baseline's).

    Example:
        >>> convert_floor(0.96, 0.96, to_relative=True), convert_floor(0.9, 0.96, False)
        (1.0, 0.864)
    """
    if base_acc is None or not base_acc > 0:
        return default_floor(None, True) if to_relative else clamp_floor(floor, False)
    value = floor / base_acc if to_relative else floor * base_acc
    return round(clamp_floor(value, to_relative), 3)


def class_shares(class_acc: np.ndarray, accuracy: np.ndarray) -> np.ndarray | None:
    """Each class's share of the test set, from rows measured on the same examples: a row's
    accuracy is its per-class accuracies weighted by the shares, so enough independent rows
    determine them (least squares with the shares summing to 1). ``None`` when they do not.

    Args:
        class_acc: Per-class accuracy, shape ``(n_rows, n_classes)``.
        accuracy: Mean accuracy, shape ``(n_rows,)``.

    Example:
        >>> class_shares(np.array([[1.0, 0.0], [0.5, 1.0]]), np.array([0.7, 0.65])).round(3)
        array([0.7, 0.3])
    """
    a = np.vstack([np.asarray(class_acc, dtype=float), np.ones(np.shape(class_acc)[1])])
    y = np.append(np.asarray(accuracy, dtype=float), 1.0)
    if not np.isfinite(a).all() or not np.isfinite(y).all():
        return None
    w, _, rank, _ = np.linalg.lstsq(a, y, rcond=None)
    if rank < a.shape[1] or not np.allclose(a @ w, y, atol=1e-6) or (w < -1e-6).any():
        return None
    return np.clip(w, 0, None)


def chance_accuracy(df: pd.DataFrame) -> tuple[float, str] | None:
    """What a model scores without looking at its input, and how: guessing (1 / classes) or
    always answering the commonest class (its share of the test set), whichever is higher.
    ``None`` without per-class accuracies (e.g. a fidelity metric)."""
    if "class_acc" not in df.columns:
        return None
    per = [c for c in df["class_acc"] if isinstance(c, (list, tuple, np.ndarray)) and len(c)]
    if not per or len({len(c) for c in per}) != 1:
        return None
    k = len(per[0])
    chance, how = 1 / k, f"guessing among {k} classes"
    ok = df["class_acc"].map(lambda c: isinstance(c, (list, tuple, np.ndarray)) and len(c) == k)
    shares = class_shares(np.array(list(df.loc[ok, "class_acc"])), df.loc[ok, "accuracy"])
    if shares is not None and shares.max() > chance + 1e-9:
        chance, how = float(shares.max()), f"always answering class {int(shares.argmax())}"
    return chance, how


def floor_warning(
    acc: float, base_acc: float | None, chance: tuple[float, str] | None = None
) -> str | None:
    """One sentence when a recommended accuracy ``acc`` is near chance (within
    :data:`NEAR_CHANCE`) or far below the baseline's (more than :data:`FAR_BELOW`), else None.

    Example:
        >>> floor_warning(0.347, 0.97, (0.333, "guessing among 3 classes"))[:34]
        'This config scores 34.7 %, barely '
    """
    if not math.isfinite(acc):
        return None
    if chance is not None and acc < chance[0] + NEAR_CHANCE:
        return (f"This config scores {fmt_pct(acc)}, barely above the {fmt_pct(chance[0])} "
                f"of {chance[1]}: it has learned next to nothing. Raise the floor.")  # fmt: skip
    if base_acc is not None and base_acc - acc > FAR_BELOW:
        return (f"This config scores {fmt_pct(acc)}, {100 * (base_acc - acc):.1f} points below "
                f"the baseline's {fmt_pct(base_acc)}. Is the floor meant to be this low?")  # fmt: skip
    return None


@dataclass(frozen=True)
class Constraints:
    """What the product manager asks for.

    Args:
        floor: Accuracy floor in ``[0, 1]``; with ``relative``, a fraction of the baseline's
            accuracy in ``(0, 1.5]`` (``0.99`` = 99 % of baseline).
        relative: Whether ``floor`` is relative to the baseline row.
        max_size_bytes: Size budget (bytes on disk), ``None`` for none.
        max_latency_ms: p50 latency budget (ms), ``None`` for none.
        prefer: What the recommendation minimizes, ``"size"`` or ``"latency"``.
        on: What the floor applies to: ``"accuracy"`` (the mean) or ``"worst_class_acc"`` (the
            accuracy of the config's worst class, e.g. a classifier's recall on the rare class).

    Example:
        >>> c = Constraints(floor=0.99, relative=True, max_latency_ms=5.0, prefer="latency")
    """

    floor: float
    relative: bool = False
    max_size_bytes: float | None = None
    max_latency_ms: float | None = None
    prefer: str = "size"
    on: str = "accuracy"

    def __post_init__(self) -> None:
        top = FLOOR_LIMITS[self.relative][1]
        if self.relative and not 0 < self.floor <= top:
            raise ValueError(f"`0 < floor <= {top:g}` must hold, but got floor={self.floor}")
        if not self.relative and not 0 <= self.floor <= top:
            raise ValueError(f"`0 <= floor <= {top:g}` must hold, but got floor={self.floor}")
        for name in ("max_size_bytes", "max_latency_ms"):
            if (budget := getattr(self, name)) is not None and not budget > 0:
                raise ValueError(f"`{name} > 0` must hold, but got {name}={budget}")
        if self.prefer not in PREFER:
            raise ValueError(f"`prefer in {PREFER}` must hold, but got prefer={self.prefer!r}")
        if self.on not in FLOOR_ON:
            raise ValueError(f"`on in {tuple(FLOOR_ON)}` must hold, but got on={self.on!r}")


SAME_SIZE = 0.05  # sizes within 5 % of the baseline's are "the same size"
METRIC_NAMES = {"top1": "accuracy", "agreement": "agreement with the baseline",
                "fidelity": "cosine similarity to the baseline"}  # fmt: skip


def times(base: float, val: float, more: str, less: str, same: str) -> tuple[float | None, str]:
    """Ratio ``base / val`` and its wording: ``times(9, 1, "smaller", "larger", "same size")``
    is ``(9.0, "9.0× smaller")``; within :data:`SAME_SIZE` of 1 it is ``same``."""
    ok = base is not None and val is not None and math.isfinite(base) and math.isfinite(val)
    r = base / val if ok and val > 0 else None
    if r is None:
        return None, ""
    if abs(r - 1) < SAME_SIZE:
        return r, same
    return r, f"{r:.1f}× {more}" if r > 1 else f"{1 / r:.1f}× {less}"


def speed_text(row: Mapping[str, Any]) -> str:
    """How a row's speed compares with the baseline's, in words that claim nothing beyond noise:
    "2.9× faster (2.70–3.10)", "same speed as baseline (within noise)", "timing…"."""
    verdict, ratio = row.get("speed_verdict"), row.get("speedup")
    if not isinstance(verdict, str):
        return "timing…"
    if verdict == "baseline":
        return "baseline"
    if verdict == "same graph":
        return "same speed (runs the baseline's graph)"
    if verdict == "same":
        return "same speed as baseline (within noise)"
    lo, hi = (float(row.get(k, math.nan) or math.nan) for k in ("speedup_low", "speedup_high"))
    known = math.isfinite(lo + hi) and lo > 0
    if verdict == "faster":
        return f"{ratio:.1f}× faster" + (f" ({lo:.2f}–{hi:.2f})" if known else "")
    return f"{1 / ratio:.1f}× slower" + (f" ({1 / hi:.2f}–{1 / lo:.2f})" if known else "")


def accuracy_text(row: Mapping[str, Any]) -> str:
    """The paired accuracy change in words: "-1.2 points (p = 0.01)" only when McNemar's test
    says so, else "same as baseline (within noise)"."""
    verdict = row.get("acc_verdict")
    if verdict == "same":
        return "same as baseline (within noise)"
    if verdict in ("better", "worse"):
        return f"{100 * float(row['acc_delta']):+.1f} points (p = {float(row['acc_p']):.2g})"
    return "baseline" if bool(row.get("is_baseline")) else ""


@dataclass(frozen=True)
class Headline:
    """The recommendation in words, written once (:func:`recommend`) for the Trade-offs card,
    the CLI (:attr:`plain`) and the report.

    Args:
        text: The sentence, markdown: the config in **bold**.
        config: The config's label, ``None`` when nothing qualifies.
        smaller: "9.0× smaller", "same size", ... (vs the baseline).
        faster: "2.9× faster", "same speed", ... (paired, beyond noise only).
        accuracy: "97.2 %".
        ci: "95 % CI 96.0–98.8 %".
        detail: How many configs qualify, the paired differences, caveats.
    """

    text: str
    config: str | None = None
    smaller: str | None = None
    faster: str | None = None
    accuracy: str | None = None
    ci: str | None = None
    detail: str = ""

    @property
    def plain(self) -> str:
        """Text and detail for a terminal: the config in `backticks`."""
        text = self.text.replace(f"**{self.config}**", f"`{self.config}`")
        return f"{text} {self.detail}".strip()


@dataclass(frozen=True, eq=False)
class Recommendation:
    """The outcome of :func:`recommend`.

    Args:
        key: The config to ship, ``None`` when nothing qualifies.
        feasible: Read-only bool mask over the rows: reaches the floor and fits every budget.
        floor_value: The absolute accuracy floor applied (NaN when there are no rows).
        closest_key: When nothing qualifies, the config that comes closest.
        message: One or two plain-English sentences for a non-engineer.
        size_ratio: Baseline size / recommended size (``11.3`` = 11.3x smaller), or ``None``.
        speedup: The recommended config's paired speed-up over the baseline (``2.9`` = 2.9x
            faster), 1.0 when it is the same speed within noise, ``None`` when not timed.
        constraints: The constraints it answers (charts draw the budgets from them).
        headline: The same in parts, for the Trade-offs card and the report.

    Example:
        >>> recommend(df, Constraints(0.97)).message  # doctest: +SKIP
    """

    key: str | None
    feasible: np.ndarray
    floor_value: float
    closest_key: str | None
    message: str
    size_ratio: float | None = None
    speedup: float | None = None
    constraints: Constraints | None = None
    headline: Headline = Headline("")

    def __post_init__(self) -> None:
        if not self.headline.text:  # nothing to ship: the message is the whole headline
            object.__setattr__(self, "headline", Headline(self.message))


def baseline_index(df: pd.DataFrame) -> int | None:
    """Position of the first ``is_baseline`` row of ``df``, ``None`` when there is none."""
    if "is_baseline" not in df.columns or not len(df):
        return None
    hits = np.flatnonzero(df["is_baseline"].fillna(False).to_numpy(dtype=bool))
    return int(hits[0]) if hits.size else None


def _pick(mask: np.ndarray, primary: np.ndarray, acc: np.ndarray, keys: np.ndarray) -> int:
    """Index minimizing ``primary`` among ``mask``, then maximizing accuracy, then by key."""
    idx = np.flatnonzero(mask)
    for col in (primary, -acc):
        if not np.isnan(v := col[idx]).all():
            idx = idx[v == np.nanmin(v)]
    return int(min(idx, key=lambda i: keys[i]))


def _speed(df: pd.DataFrame, i: int, b: int | None) -> tuple[float | None, str]:
    """Row ``i``'s paired speed-up and its wording: "2.9× faster" only when the speed-up's 95 %
    interval excludes 1 (``speed_verdict``), else "same speed"."""
    if b is None or i == b or "speedup" not in df.columns:
        return None, ""
    verdict, ratio = df["speed_verdict"].iloc[i], df["speedup"].iloc[i]
    if not isinstance(verdict, str) or ratio is None or not math.isfinite(float(ratio)):
        return None, ""  # not timed yet
    if verdict in SAME_SPEED:
        return 1.0, "same speed"
    ratio = float(ratio)
    return ratio, f"{ratio:.1f}× faster" if ratio > 1 else f"{1 / ratio:.1f}× slower"


def _ratios(df: pd.DataFrame, i: int, b: int | None, size: np.ndarray) -> tuple:
    """(size ratio, speed-up) of row ``i`` over the baseline row ``b``."""
    return times(size[b] if b is not None else math.nan, size[i], "", "", "")[0], _speed(df, i, b)[
        0
    ]


def _headline(
    df: pd.DataFrame, i: int, b: int | None, c: Constraints, where: str, k: int, floor: float
) -> Headline:
    """The one sentence for shipping row ``i``: "At a floor of F, ship **X**: 9.0× smaller, 2.9×
    faster, accuracy 97.2 % (95 % CI 96.0–98.8 %)." and its detail."""
    row, label = (
        df.iloc[i],
        str(df["label"].iloc[i] if "label" in df.columns else df["key"].iloc[i]),
    )
    if i == b:
        text = f"{where}, no optimized config beats the baseline: keep **{label}**."
        return Headline(text, label, detail=f"{k} of {len(df)} configs reach the floor.")
    base_size = float(df["size_bytes"].iloc[b]) if b is not None else math.nan
    smaller = times(base_size, float(row["size_bytes"]), "smaller", "larger", "same size")[1]
    faster = _speed(df, i, b)[1]
    acc = float(row[c.on])
    lo, hi = (float(row[k]) if k in row and row[k] is not None else math.nan
              for k in ("acc_low", "acc_high"))  # fmt: skip
    ci = f"95 % CI {100 * lo:.1f}–{fmt_pct(hi)}" if math.isfinite(lo + hi) else None
    plain = [fmt_bytes(row["size_bytes"]), f"{fmt_ms(float(row['latency_p50_ms']))} p50"]
    facts = ", ".join([t for t in (smaller, faster) if t] or plain)
    metric = METRIC_NAMES.get(row.get("metric"), "accuracy") if c.on == "accuracy" else (
        "worst-class accuracy")  # fmt: skip
    text = f"{where}, ship **{label}**: {facts}, {metric} {fmt_pct(acc)}"
    text += f" ({ci})." if ci and c.on == "accuracy" else "."
    best = "smallest" if c.prefer == "size" else "fastest"
    detail = f"{k} of {len(df)} configs reach the floor; this is the {best} of them."
    vs = [f"{what}: {t}" for what, t in (("Accuracy vs baseline", accuracy_text(row)),
                                           ("speed", speed_text(row))) if t]  # fmt: skip
    if b is not None and vs:
        detail += f" {'; '.join(vs)}."
    if ci and lo < floor and c.on == "accuracy":
        detail += " Its 95 % CI dips below the floor, so the margin is within noise."
    if c.on != "accuracy":
        detail += (" The floor applies to each config's worst class, measured on that class's "
                   "few examples.")  # fmt: skip
    return Headline(text, label, smaller or None, faster or None, fmt_pct(acc), ci, detail)


def recommend(df: pd.DataFrame, constraints: Constraints) -> Recommendation:
    """Recommend the config to ship under ``constraints``.

    Feasible rows reach the accuracy floor and fit every budget; among them the smallest
    (``prefer="size"``) or fastest (``prefer="latency"``) wins, ties broken by higher accuracy
    then by key. When nothing is feasible, ``closest_key`` is the row with the least normalized
    shortfall (sum of the relative misses of the floor and of each budget).

    Args:
        df: Result rows; ``label``, ``is_baseline``, ``acc_low``, ``acc_high`` are optional.
        constraints: Floor, budgets and preference.

    Example:
        >>> rec = recommend(df, Constraints(floor=0.99, relative=True))  # doctest: +SKIP
    """
    c, n = constraints, len(df)
    if not n:
        msg = "No results yet: run an optimization to get a recommendation."
        floor = math.nan if c.relative else float(c.floor)
        return Recommendation(None, np.zeros(0, dtype=bool), floor, None, msg, constraints=c)
    acc, size, p50 = _cols(df, ["accuracy", "size_bytes", "latency_p50_ms"], also=["key"])
    lat = compared_latency(df)
    if c.on != "accuracy":
        (acc,) = _cols(df, [c.on])
    keys = df["key"].astype(str).to_numpy()
    labels = df["label"].astype(str).to_numpy() if "label" in df.columns else keys
    b = baseline_index(df)
    floor, floor_txt = float(c.floor), fmt_pct(c.floor)
    if c.relative:
        if b is None or not math.isfinite(acc[b]):
            raise ValueError("a relative floor needs a baseline row with a measured accuracy")
        floor = float(c.floor * acc[b])
        floor_txt = f"{fmt_pct(floor)} ({100 * c.floor:g} % of baseline)"
    if c.on != "accuracy":
        floor_txt += f" on the {FLOOR_ON[c.on]}"
    budgets = [(size, c.max_size_bytes, "size", fmt_bytes)] if c.max_size_bytes else []
    budgets += [(p50, c.max_latency_ms, "latency", fmt_ms)] if c.max_latency_ms else []
    acc_ok = acc >= floor - 1e-12
    over = np.zeros(n)  # summed relative overshoot of the budgets
    for v, lim, *_ in budgets:
        over += np.where(np.isnan(v), np.inf, np.clip(v / lim - 1, 0, None))
    feasible = acc_ok & (over == 0)
    feasible.setflags(write=False)
    budget_txt = " and ".join(f"{fmt(lim)} {name} budget" for _, lim, name, fmt in budgets)
    if feasible.any() and c.prefer == "latency" and np.isnan(lat[feasible]).all():
        msg = (f"{int(feasible.sum())} of {n} configs reach {floor_txt}; their latency is not "
               "timed yet (every config is timed together once all are built).")  # fmt: skip
        return Recommendation(None, feasible, floor, None, msg, constraints=c)
    if feasible.any():
        i = _pick(feasible, size if c.prefer == "size" else lat, acc, keys)
        where = f"At a floor of {floor_txt}" + (f" within the {budget_txt}" if budgets else "")
        head = _headline(df, i, b, c, where, int(feasible.sum()), floor)
        rec = (keys[i], feasible, floor, None, head.plain)
        return Recommendation(*rec, *_ratios(df, i, b, size), c, head)

    miss = np.clip(1 - acc / floor, 0, None) if floor else np.zeros(n)
    short = over + np.where(np.isnan(acc), np.inf, miss)  # normalized shortfall
    if not np.isfinite(short).any():
        msg = f"No config has a complete measurement to compare against {floor_txt} yet."
        return Recommendation(None, feasible, floor, None, msg, constraints=c)
    j = _pick(np.isfinite(short), short, acc, keys)
    gap = 100 * (floor - acc[j])
    misses = [] if acc_ok[j] else [f"{gap:.{2 if gap < 0.1 else 1}f} points short"]
    for v, lim, name, fmt in budgets:
        if not v[j] <= lim:
            misses.append(f"{fmt(v[j] - lim)} over the {name} budget")
    head = f"No config reaches {floor_txt}"
    if acc_ok.any():
        head = f"{acc_ok.sum()} of {n} configs reach {floor_txt}, none within the {budget_txt}"
    msg = (
        f"{head}; the closest is `{labels[j]}` at {fmt_pct(acc[j])}, {fmt_bytes(size[j])}, "
        f"{fmt_ms(p50[j])} p50 ({', '.join(misses)}). "
        f"Relax the floor{' or a budget' if budgets else ''} to get a recommendation."
    )
    return Recommendation(None, feasible, floor, keys[j], msg, constraints=c)
