"""Typed result rows: one :class:`Row` per measured config, and :class:`Stored`, how its weights
are stored in the file that ships.

A row owns its column list (:data:`COLUMNS`): the build, failure rows, the store, the CSV and the
UI all read it from here. Every figure in it was measured on the shipped ``model.onnx``; fields
stay None (NaN in a DataFrame) until measured, e.g. latency until the run's timing phase.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Width:
    """A share of the parameters stored at one width: ``bits``-bit values in ``container``."""

    bits: int  # levels actually used, e.g. 3 for 3-bit codes in INT4 storage
    container: str  # the ONNX element type that holds them, e.g. "INT4", "fp32", "MatMulNBits"
    share: float  # fraction of all parameters

    def __str__(self) -> str:
        if self.container in ("fp32", "fp16"):
            name = self.container
        elif self.container == "MatMulNBits" or str(self.bits) in self.container:
            name = f"{self.bits}-bit ({self.container})"
        else:
            name = f"{self.bits}-bit in {self.container}"
        share = "<1" if self.share < 0.005 else f"{100 * self.share:.0f}"
        return f"{name}: {share} %"


@dataclass(frozen=True)
class Stored:
    """How the shipped file stores its parameters: widths by share, and the share of zeros.

    Example:
        >>> str(Stored((Width(4, "INT4", 0.97), Width(32, "fp32", 0.03)), 0.5, 1000))
        '4-bit (INT4): 97 % of parameters, fp32: 3 %; 50 % zeros'
    """

    widths: tuple[Width, ...]
    sparsity: float  # share of weights (tensors of rank >= 2) that are exactly zero
    params: int

    def __str__(self) -> str:
        parts = [str(w) for w in self.widths]
        if parts:
            parts[0] += " of parameters"
        text = ", ".join(parts) or "no parameters"
        return text + (f"; {100 * self.sparsity:.0f} % zeros" if self.sparsity >= 0.01 else "")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Stored:
        return cls(tuple(Width(**w) for w in d["widths"]), d["sparsity"], d["params"])


@dataclass(frozen=True)
class Row:
    """One measured config (or one that failed, with ``error``). Fields say their unit."""

    key: str
    label: str
    family: str
    is_baseline: bool = False
    # the plan's main fields, plain, so a spreadsheet can pivot on them
    technique: str = ""
    bits: int | None = None  # weight bits of the plan's rounding step (32: none)
    sparsity: float | None = None  # pruning amount asked for
    # accuracy of the shipped file's outputs on the test split
    metric: str = "top1"  # "top1", "agreement" or "fidelity": optim.metrics.METRICS
    n_test: int | None = None  # test examples the accuracy is measured on
    accuracy: float | None = None
    acc_low: float | None = None  # 95 % percentile bootstrap interval
    acc_high: float | None = None
    agreement: float | None = None  # share of test inputs predicted as the baseline predicts
    top5: float | None = None  # share whose target class is among the 5 highest scores
    cosine: float | None = None  # mean cosine similarity of the outputs to the baseline's
    rel_l2: float | None = None  # ||outputs - baseline's|| / ||baseline's||
    acc_delta: float | None = None  # accuracy - baseline's, paired on the same examples
    delta_low: float | None = None  # 95 % paired bootstrap interval of acc_delta
    delta_high: float | None = None
    acc_p: float | None = None  # McNemar's exact test against the baseline
    acc_verdict: str | None = None  # "better" / "worse" (p < 0.05) or "same"
    class_acc: list | None = None  # per-class accuracy, by class index
    worst_class: int | None = None
    worst_class_acc: float | None = None
    # the file that ships
    size_bytes: int | None = None  # model.onnx, the file that runs
    download_bytes: int | None = None  # model.onnx.zst, when smaller
    peak_rss_bytes: int | None = None  # peak resident memory of a fresh process running it
    stored: str | None = None  # str(Stored)
    storage: dict | None = None  # Stored.to_json()
    backend: str | None = None
    precision: str | None = None  # what executes
    graph_id: str | None = None  # fingerprint of the graph ONNX Runtime executes
    # latency, from the run's interleaved timing phase
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    p50_low: float | None = None  # 95 % interval on the p50 (bootstrap over rounds)
    p50_high: float | None = None
    latency_cv: float | None = None  # robust CV of single calls: 1.4826 * MAD / median
    latency_rounds: int | None = None
    speedup: float | None = None  # baseline time / this time, median of per-round ratios
    speedup_low: float | None = None
    speedup_high: float | None = None
    speed_verdict: str | None = None  # "faster" / "slower" / "same" / "same graph"
    params: int | None = None
    flops: float | None = None  # counted on the torch model (None for ONNX sources)
    threads: int | None = None
    session: str | None = None  # the ORT session settings that timed it (measure.session_text)
    seconds: float | None = None  # build + accuracy measurement wall time
    measured: str = (
        "accuracy, size, memory and latency measured on model.onnx; flops counted on the "
        "torch model"
    )
    artifact: str | None = None
    error: str | None = None
    # "environment" (disk, memory, a dead worker: a resume retries it) or "config" (the config
    # itself cannot be built or measured: retrying gives the same error); see error_kind()
    error_kind: str | None = None
    extra: dict = field(default_factory=dict)  # technique-specific figures (e.g. calib_accuracy)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {**d.pop("extra"), **d}

    @classmethod
    def from_dict(cls, d: dict) -> Row:
        """Inverse of :meth:`to_dict`; keys that are not columns go to ``extra``."""
        names = set(COLUMNS)
        return cls(**{k: v for k, v in d.items() if k in names},
                   extra={k: v for k, v in d.items() if k not in names})  # fmt: skip

    @classmethod
    def failed(cls, plan: Sequence[object], error: BaseException) -> Row:
        """The row of a config that could not be built or measured: it says why, in one line."""
        from optim import plan as plans

        return cls(
            key=plans.key(plan), label=plans.label(plan), family=plans.family(plan),
            **plan_fields(plan), error=f"{type(error).__name__}: {error}".splitlines()[0],
            error_kind=error_kind(error),
        )  # fmt: skip


ENVIRONMENT = (OSError, MemoryError, EOFError, BrokenExecutor)  # not the config's fault
_ENVIRONMENT_NAMES = ("OSError", "PermissionError", "MemoryError", "EOFError", "BrokenProcessPool",
                      "FileNotFoundError", "TimeoutError", "WorkerDied")  # fmt: skip


def error_kind(error: BaseException | str) -> str:
    """``"environment"`` for an exception of the machine (:data:`ENVIRONMENT`, or a worker
    that died: :class:`optim.pool.WorkerDied`), else ``"config"``. A stored error text (a row
    an older version wrote without its kind) is judged by its exception's name.

    Example:
        >>> error_kind(OSError(30, "Read-only file system")), error_kind(ValueError("bits"))
        ('environment', 'config')
    """
    if isinstance(error, str):
        return "environment" if error.split(":")[0] in _ENVIRONMENT_NAMES else "config"
    env = isinstance(error, ENVIRONMENT) or type(error).__name__ == "WorkerDied"
    return "environment" if env else "config"


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Row) if f.name != "extra")
LATENCY_FIELDS = (
    "latency_p50_ms", "latency_p90_ms", "p50_low", "p50_high", "latency_cv", "latency_rounds",
    "speedup", "speedup_low", "speedup_high", "speed_verdict",
)  # fmt: skip


def plan_fields(plan: Sequence[object]) -> dict:
    """``technique``, ``bits`` and ``sparsity`` of a plan, for the CSV's plain columns."""
    names = [type(c).__name__ for c in plan]
    bits = 32
    sparsity: float | None = 0.0
    for c in plan:
        name = type(c).__name__
        if name in ("Int8", "Int8Auto", "Int8Fallback", "DynamicInt8"):
            bits = 8
        elif name == "Int4MatMul":
            bits = 4
        elif hasattr(c, "bits") and isinstance(c.bits, int) and name != "QAT":
            bits = c.bits
        elif name == "MixedQuantize":
            bits = c.default_bits
        if name in ("Prune", "StructuredPrune", "GradualPrune"):
            sparsity = float(c.amount) if c.amount is not None else None  # by threshold
    return {"technique": " + ".join(names) or "baseline", "bits": bits, "sparsity": sparsity}
