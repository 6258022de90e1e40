"""The Pareto mask: which rows no other row beats in every objective (pure numpy, fast)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_CHUNK = 128  # candidates resolved per step of the n-D sweep


def _leq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``m[i, j]``: row ``b[j]`` is <= row ``a[i]`` in every column but the first."""
    return np.logical_and.reduce([b[None, :, d] <= a[:, None, d] for d in range(1, a.shape[1])])


def _sweep3(u: np.ndarray) -> np.ndarray:
    """3 columns: a row is dominated when an earlier front row is <= in columns 1 and 2."""
    on, c1, c2 = np.ones(len(u), dtype=bool), np.array([-np.inf]), np.array([np.nan])
    for s in range(0, len(u), _CHUNK):
        a = u[s : s + _CHUNK]
        k = np.searchsorted(c1, a[:, 1], side="right") - 1  # earlier rows with c1 <= own
        dom = np.tril(_leq(a, a), -1).any(axis=1) | (np.fmin.accumulate(c2)[k] <= a[:, 2])
        on[s : s + _CHUNK] = ~dom
        c1, c2 = np.append(c1, a[~dom, 1]), np.append(c2, a[~dom, 2])
        c1, c2 = c1[o := np.argsort(c1, kind="stable")], c2[o]
    return on


def _front(u: np.ndarray) -> np.ndarray:
    """Non-dominated mask of unique, lexsorted, minimized rows: only earlier rows can dominate
    later ones, so resolve a block of leading rows, then drop the later rows it dominates."""
    if u.shape[1] <= 2:  # O(n log n): optimal rows set a new running minimum of the last column
        cummin = np.minimum.accumulate(u[:, -1])
        return np.concatenate([[True], cummin[1:] < cummin[:-1]])
    on, rem = np.zeros(len(u), dtype=bool), np.arange(len(u))
    while rem.size:
        if u.shape[1] == 3 and on.sum() > 2 * _CHUNK:  # big front: switch to a bounded cost
            on[rem] = _sweep3(u[rem])
            break
        head, rest = rem[:_CHUNK], rem[_CHUNK:]
        front = head[~np.tril(_leq(u[head], u[head]), -1).any(axis=1)]
        on[front] = True
        rem = rest[~_leq(u[rest], u[front]).any(axis=1)]
    return on


def pareto_mask(values: np.ndarray, minimize: Sequence[bool]) -> np.ndarray:
    """Mask of the non-dominated rows of ``values`` (rows are points, columns objectives).

    Objectives are turned into lower-is-better, as in Optuna. A dominated row is no better than
    another anywhere and worse somewhere, so identical rows are all non-dominated. NaN raises.

    Args:
        values: Array of shape ``(n_rows, n_objectives)``.
        minimize: One flag per column, ``True`` where lower is better.

    Example:
        >>> pareto_mask(np.array([[0.9, 10.0], [0.8, 20.0], [0.95, 30.0]]), [False, True])
        array([ True, False,  True])
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or len(minimize) != v.shape[1]:
        raise ValueError(
            "`values.shape == (n_rows, len(minimize))` must hold, but got "
            f"values.shape={v.shape}, len(minimize)={len(minimize)}"
        )
    if (nan := np.isnan(v)).any():
        row, col = (int(i) for i in np.argwhere(nan)[0])
        raise ValueError(f"`values` must not contain NaN, but got NaN at row {row}, column {col}")
    if v.size == 0:
        return np.ones(v.shape[0], dtype=bool)
    w = np.where(minimize, v, -v)
    order = np.lexsort(w.T[::-1])  # by column 0, then 1, ...
    s = w[order]
    new = np.concatenate([[True], (s[1:] != s[:-1]).any(axis=1)])  # first of equal rows
    return _front(s[new])[np.cumsum(new) - 1][np.argsort(order)]
