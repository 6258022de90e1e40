"""Scores of a config's outputs on the test split: against the labels, or against the baseline's
outputs on the same examples, always with an interval and a paired comparison to the baseline.

Three metrics, named on every row (:data:`METRICS`):

- ``top1``: the share of test examples whose top class is the label (a labeled classifier);
- ``agreement``: the share whose top class is the baseline's (a classifier without labels);
- ``fidelity``: the mean cosine similarity of each example's output to the baseline's (outputs
  that are not class scores: embeddings, detection heads); for one value per example
  (regression, a probability such as Silero VAD's), where a cosine says only the sign,
  ``1 - |error| / the range of the baseline's outputs``.

Every row also carries ``agreement``, ``top5`` (where there are more than 5 classes), ``cosine``
and ``rel_l2`` (the relative L2 error of all outputs against the baseline's).
"""

from __future__ import annotations

import numpy as np

from optim.measure import accuracy_ci, class_accuracy, paired

METRICS = {
    "top1": "top-1 accuracy",
    "agreement": "top-1 agreement with the baseline",
    "fidelity": "similarity to the baseline's outputs (cosine; 1 - |error| / range for one "
    "value per example)",
}
ROUNDING = 1e-6  # cosine differences below this are float rounding, not a change


def predictions(outputs: np.ndarray) -> np.ndarray:
    """The class of each example: an integer output as it is, class scores by their argmax.

    Example:
        >>> predictions(np.array([[0.1, 0.9], [2.0, -1.0]])).tolist()
        [1, 0]
    """
    if outputs.ndim == 1:
        return outputs.astype(np.int64)
    return outputs.reshape(len(outputs), -1).argmax(axis=1)


def cosine(outputs: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Per example, the cosine similarity of its (flattened) output to the baseline's; two zero
    outputs are identical (1), a zero against a non-zero one is 0.

    Example:
        >>> cosine(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 0.0]])).tolist()
        [1.0, 1.0]
    """
    a = outputs.reshape(len(outputs), -1).astype(np.float64)
    b = base.reshape(len(base), -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.sum(a * b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where((na == 0) & (nb == 0), 1.0, dot / (na * nb))
    return np.clip(np.nan_to_num(cos, nan=0.0), -1.0, 1.0)


def similarity(outputs: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Per example, the fidelity metric's score: :func:`cosine` for vector outputs, else
    ``1 - |outputs - base| / (max(base) - min(base))`` clipped to [0, 1].

    Example:
        >>> similarity(np.array([0.5, 0.9]), np.array([0.5, 0.7])).tolist()
        [1.0, 0.0]
    """
    if outputs.size > len(outputs):
        return cosine(outputs, base)
    a, b = outputs.astype(np.float64).ravel(), base.astype(np.float64).ravel()
    spread = float(np.ptp(b)) or float(np.max(np.abs(b))) or 1.0
    return np.clip(1 - np.abs(a - b) / spread, 0.0, 1.0)


def rel_l2(outputs: np.ndarray, base: np.ndarray) -> float:
    """``||outputs - base|| / ||base||`` over all examples (0 when both are zero).

    Example:
        >>> rel_l2(np.array([[3.0, 4.0]]), np.array([[3.0, 0.0]]))
        1.3333333333333333
    """
    a, b = outputs.astype(np.float64).ravel(), base.astype(np.float64).ravel()
    norm = float(np.linalg.norm(b))
    diff = float(np.linalg.norm(a - b))
    return diff / norm if norm else (0.0 if diff == 0 else float("inf"))


def top_k(outputs: np.ndarray, target: np.ndarray, k: int = 5) -> float | None:
    """The share of examples whose ``target`` class is among their ``k`` highest scores; None
    when the outputs are not scores over more than ``k`` classes."""
    if outputs.ndim != 2 or outputs.shape[1] <= k:
        return None
    top = np.argpartition(-outputs, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == np.asarray(target)[:, None], axis=1)))


def score(
    outputs: np.ndarray,
    base: np.ndarray | None,
    labels: np.ndarray | None,
    metric: str,
    seed: int = 0,
) -> dict:
    """The row's accuracy fields for ``outputs`` on the test split.

    Args:
        outputs: the config's outputs (N, ...) (the chosen output of the shipped file).
        base: the baseline's outputs on the same examples (its class per example in stores
            written before outputs were kept); None when ``outputs`` are the baseline's.
        labels: the test labels (N,), needed by ``top1``.
        metric: one of :data:`METRICS`.
        seed: the bootstrap's seed.

    Returns:
        ``metric, n_test, accuracy, acc_low, acc_high, acc_delta, delta_low, delta_high, acc_p,
        acc_verdict, agreement, top5, cosine, rel_l2, class_acc, worst_class, worst_class_acc``.
    """
    if metric not in METRICS:
        raise ValueError(f"`metric` must be one of {list(METRICS)}, but got metric={metric!r}")
    is_base = base is None
    base = outputs if base is None else base
    pred = predictions(outputs)
    base_pred = base if base.ndim == 1 and outputs.ndim > 1 else predictions(base)
    comparable = base.shape == outputs.shape
    out = {
        "metric": metric, "n_test": len(outputs),
        "agreement": float(np.mean(pred == base_pred)),
        "cosine": float(np.mean(cosine(outputs, base)))
        if comparable and outputs.size > len(outputs)
        else None,
        "rel_l2": rel_l2(outputs, base) if comparable else None,
    }  # fmt: skip
    if metric == "fidelity":
        if not comparable:
            raise ValueError(
                f"metric 'fidelity' needs the baseline's outputs of shape {outputs.shape}, but "
                f"got shape {base.shape}: re-run the baseline"
            )
        return out | _fidelity(outputs, base, is_base, seed) | {"top5": None}
    target = labels if metric == "top1" else base_pred
    if target is None:
        raise ValueError("metric 'top1' needs test labels, but got none")
    correct, base_correct = pred == target, base_pred == target
    acc, lo, hi = accuracy_ci(correct, seed=seed)
    vs = paired(correct, base_correct, seed=seed)
    per_class = class_accuracy(correct, target)
    worst = int(np.nanargmin(per_class)) if per_class else None
    return out | {
        "accuracy": acc, "acc_low": lo, "acc_high": hi, "acc_delta": vs.delta,
        "delta_low": vs.low, "delta_high": vs.high, "acc_p": vs.p,
        "acc_verdict": "baseline" if is_base else vs.verdict,
        "top5": top_k(outputs, target), "class_acc": per_class, "worst_class": worst,
        "worst_class_acc": per_class[worst] if worst is not None else None,
    }  # fmt: skip


def _fidelity(outputs: np.ndarray, base: np.ndarray, is_base: bool, seed: int) -> dict:
    """Mean :func:`similarity` with its bootstrap interval; the paired difference to the
    baseline (whose similarity with itself is 1 on every example) with its interval and a Wilcoxon signed-rank test."""
    from scipy.stats import wilcoxon

    cos = similarity(outputs, base)
    acc, lo, hi = accuracy_ci(cos, seed=seed)
    diff = np.where(np.abs(cos - 1) < ROUNDING, 0.0, cos - 1)
    idx = np.random.default_rng(seed).integers(0, diff.size, size=(2000, diff.size))
    d_lo, d_hi = np.quantile(diff[idx].mean(axis=1), [0.025, 0.975])
    p = float(wilcoxon(diff).pvalue) if np.any(diff) else 1.0
    verdict = "baseline" if is_base else ("worse" if p < 0.05 and diff.mean() < 0 else "same")
    return {
        "accuracy": acc, "acc_low": lo, "acc_high": hi, "acc_delta": float(diff.mean()),
        "delta_low": float(d_lo), "delta_high": float(d_hi), "acc_p": p, "acc_verdict": verdict,
        "class_acc": None, "worst_class": None, "worst_class_acc": None,
    }  # fmt: skip
