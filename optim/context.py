"""What every kind of run works with while it executes: :class:`Context` (the run, its source
and settings, the baseline's row and predictions, how to store a row), and :class:`Outcome`,
how it went. :mod:`optim.runs` makes one; :mod:`optim.sweep`, :mod:`optim.search` and
:mod:`optim.tune` plan their configs with it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from optim import build as builder
from optim import plan as plans
from optim.artifact import write_atomic
from optim.build import Settings, evaluate
from optim.pool import Factory
from optim.rows import Row, error_kind
from optim.sources import ModelSource, get_source
from optim.store import Store
from optim.sweep import artifact_dir

Progress = Callable[[int, int, "Row | None"], None]  # (done, total, the row; None: timed)
BASELINE = plans.key(())


def retryable(row: Row) -> bool:
    """Whether a stored row is a failure of the environment (a resume builds it again)."""
    if row.error is None:
        return False
    return (row.error_kind or error_kind(row.error)) == "environment"


@dataclass
class Context:
    store: Store
    run_id: int
    spec: dict
    source: ModelSource
    settings: Settings
    executor: Factory
    progress: Progress | None
    options: dict
    rows: dict[str, Row] = field(default_factory=dict)  # stored rows by key
    base_row: Row | None = None
    base_pred: np.ndarray | None = None

    @classmethod
    def start(cls, store: Store, run_id: int, spec: dict, progress: Progress | None,
              executor: Factory, options: dict) -> Context:  # fmt: skip
        """The context of a run about to execute, its baseline measured first (every other
        row is compared with its predictions) or, on a resume, read back and verified."""
        ctx = cls(store, run_id, spec, get_source(spec["model"]),
                  Settings.from_json(spec["settings"]), executor, progress, dict(options))  # fmt: skip
        ctx.rows = {r.key: r for r in store.rows(run_id)}
        ctx.base_row, ctx.base_pred = ctx._baseline()
        return ctx

    def out_dir(self, key: str) -> Path:
        return artifact_dir(self.store.url, self.run_id, key)

    def todo(self, key: str) -> bool:
        """Whether config ``key`` still needs building (no row, or an environment failure)."""
        row = self.rows.get(key)
        return row is None or retryable(row)

    def record(self, plan_json: list, row: Row) -> bool:
        """Store ``row`` (replacing an environment failure of its config); False if a row of
        this config was stored already (a duplicate: nothing changes)."""
        old = self.rows.get(row.key)
        if old is not None and retryable(old):
            self.store.update_rows(self.run_id, [row])
        elif not self.store.add_result(self.run_id, plan_json, row):
            return False
        self.rows[row.key] = row
        return True

    def report(self, done: int, total: int, row: Row | None) -> None:
        if self.progress:
            self.progress(done, total, row)

    def _baseline(self) -> tuple[Row, np.ndarray]:
        row = self.rows.get(BASELINE)
        pred_file = self.out_dir(BASELINE) / "pred.npy"
        if row is not None and row.error is None:
            pred = load_pred(pred_file, len(self.source.splits["test"]))
            if pred is not None:
                return row, pred
        new, pred = evaluate(self.source, (), self.out_dir(BASELINE), self.settings, None)
        save_pred(pred_file, pred)
        if row is None or row.error is not None:  # else: the stored row stands (same figures)
            self.record([], new)
            row = new
            self.report(len(self.rows), planned(self.spec), new)
        return row, pred

    def calib_accuracy(self, out_dir: Path) -> float:
        """Top-1 of the artifact in ``out_dir`` on the calib split, against its labels (or,
        without labels, the baseline's calib predictions): a search's or tuning's objective,
        so that the test split never steers one."""
        ref = self.source.splits["calib"].y
        if ref is None:
            ref = self._calib_pred(self.out_dir(BASELINE))
        return float(np.mean(self._calib_pred(out_dir) == ref))

    def _calib_pred(self, out_dir: Path) -> np.ndarray:
        from optim import measure
        from optim.metrics import predictions

        sess = measure.session(out_dir / "model.onnx", self.settings.threads)
        calib = self.source.splits["calib"].x
        return predictions(measure.predict(sess, calib, output=self.source.output))

    def trial(self, plan: tuple, extra: dict) -> Row:
        """Build and measure ``plan`` here (a search or tuning trial): its row, with its calib
        accuracy and ``extra``; a failure is a row that says why."""
        out_dir = self.out_dir(plans.key(plan))
        try:
            row, _ = evaluate(self.source, plan, out_dir, self.settings, self.base_pred)
            extra = {**extra, "calib_accuracy": self.calib_accuracy(out_dir)}
        except Exception as e:  # noqa: BLE001 - a failing config becomes a row that says why
            row = Row.failed(plan, e)
        return replace(row, extra={**row.extra, **extra})

    def time_all(self) -> None:
        """Time every file of the run together, the baseline in every round (a resumed run
        re-times everything, so its latencies stay comparable)."""
        rows = self.store.rows(self.run_id)
        self.store.update_rows(
            self.run_id, builder.time_rows(rows, self.settings, self.source.example)
        )
        self.report(len(rows), len(rows), None)

    def time_scenarios(self) -> None:
        """Time every file again in each of the run's latency scenarios (after
        :meth:`time_all`; :func:`optim.scenario_runs.time_run`): each scenario is stored once
        timed, and one a resumed run already holds for all its rows is not timed again."""
        from optim import scenario_runs

        def save(rows: list[Row]) -> None:
            self.store.update_rows(self.run_id, rows)

        rows = self.store.rows(self.run_id)
        scenario_runs.time_run(rows, self.settings, self.source.splits["test"].x, save)

    def study(self, name: str, **kwargs):
        """The run's Optuna study in the run store's database, created or loaded; a trial left
        RUNNING by a killed driver (this one holds the run's lease now) is failed, and queued
        again if it came from the queue."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = optuna.storages.RDBStorage(url=self.store.url)
        study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True,
                                    **kwargs)  # fmt: skip
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            if "fixed_params" in t.system_attrs:
                study.enqueue_trial(t.system_attrs["fixed_params"])
        return study


def delete_study(store: Store, name: str) -> None:
    """Delete the Optuna study ``name`` of a deleted run (none if it never started)."""
    import optuna

    try:
        optuna.delete_study(study_name=name, storage=store.url)
    except KeyError:
        pass


def save_pred(path: Path, pred: np.ndarray) -> None:
    """Write ``pred`` to ``path`` atomically: a killed write leaves the old file or none."""
    buf = io.BytesIO()
    np.save(buf, pred, allow_pickle=False)
    write_atomic(path, buf.getvalue())


def load_pred(path: Path, n_test: int) -> np.ndarray | None:
    """The baseline's predictions, or None if the file is missing or not what
    :func:`save_pred` wrote for ``n_test`` examples (truncated, wrong shape or dtype, not
    finite): the caller measures the baseline again."""
    try:
        pred = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if pred.ndim == 0 or len(pred) != n_test or pred.dtype.kind not in "fiub":
        return None
    if pred.dtype.kind == "f" and (pred.dtype != np.float32 or not np.isfinite(pred).all()):
        return None
    return pred


@dataclass(frozen=True)
class Outcome:
    """How a run went: configs planned and measured, and every failure row."""

    run_id: int
    planned: int
    measured: int
    failed: tuple[Row, ...]

    @property
    def sentence(self) -> str:
        """E.g. ``"16 of 18 configs measured; 2 failed (2 for the environment: resume retries
        them)"``."""
        text = f"{self.measured} of {self.planned} configs measured"
        if not self.failed:
            return text
        env = sum(retryable(r) for r in self.failed)
        why = f" ({env} for the environment: resume retries them)" if env else ""
        return f"{text}; {len(self.failed)} failed{why}"


def outcome(store: Store, run_id: int) -> Outcome:
    """The :class:`Outcome` of a run, from its stored rows."""
    spec, rows = store.run(run_id)["spec"], store.rows(run_id)
    failed = tuple(r for r in rows if r.error is not None)
    return Outcome(run_id, max(planned(spec), len(rows)), len(rows) - len(failed), failed)


def planned(spec: dict) -> int:
    """Configs a run plans: its plans, or a search's or tuning's baseline plus its trials."""
    for kind in ("search", "tune"):
        if kind in spec:
            return 1 + int(spec[kind]["trials"])
    return len(spec["plans"])
