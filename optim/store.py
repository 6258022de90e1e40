"""The run store: runs and their result rows, in SQLAlchemy (a SQLite file by default).

``OPTIM_DB_URL`` (a SQLAlchemy URL) overrides the default ``sqlite:///$OPTIM_HOME/runs.db``;
``OPTIM_HOME`` (default ``~/.optim``) also holds artifacts and caches. Each result row is
committed on its own, so a sweep killed at any point keeps every finished row; a unique
(run, key) constraint makes duplicates impossible.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    select,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from optim.rows import COLUMNS as RESULT_COLUMNS
from optim.rows import Row


def home() -> Path:
    """``OPTIM_HOME`` (default ``~/.optim``): artifacts, caches and the default database."""
    return Path(os.environ.get("OPTIM_HOME") or Path.home() / ".optim")


def db_url() -> str:
    return os.environ.get("OPTIM_DB_URL") or f"sqlite:///{home() / 'runs.db'}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(
        String(20), default="pending"
    )  # pending|running|done|failed|cancelled
    spec: Mapped[dict] = mapped_column(JSON)  # plans, threads, seed, jobs: everything to resume
    env: Mapped[dict] = mapped_column(JSON, default=dict)  # cpu flags, library versions
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    updated: Mapped[dt.datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class Result(Base):
    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("run_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(Text)
    plan: Mapped[list] = mapped_column(JSON)
    row: Mapped[dict] = mapped_column(JSON)  # the measured figures and labels (RESULT_COLUMNS)
    accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    size_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)


class Store:
    """A handle on the run store.

    Example:
        >>> store = Store("sqlite:///:memory:")
        >>> run_id = store.create_run("digits_cnn", {"plans": []})
    """

    def __init__(self, url: str | None = None) -> None:
        self.url = url or db_url()
        try:
            if self.url.startswith("sqlite:///") and not self.url.endswith(":memory:"):
                Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(self.url, connect_args=_connect_args(self.url))
            if self.url.startswith("sqlite"):
                event.listen(self.engine, "connect", _sqlite_pragmas)
            Base.metadata.create_all(self.engine)
        except (OSError, SQLAlchemyError) as e:
            reason = str(e.orig if hasattr(e, "orig") else e).splitlines()[0]
            raise ValueError(f"run store {self.url!r} is not writable ({reason})") from None

    def create_run(self, model: str, spec: dict, env: dict | None = None) -> int:
        with Session(self.engine) as s, s.begin():
            run = Run(model=model, spec=spec, env=env or {}, status="pending")
            s.add(run)
            s.flush()
            return run.id

    def run(self, run_id: int) -> dict:
        if not 0 < run_id < 1 << 63:  # SQL integers: a 20-digit id is no run, not a crash
            raise ValueError(f"run {run_id} does not exist in {self.url!r}")
        with Session(self.engine) as s:
            run = s.get(Run, run_id)
            if run is None:
                raise ValueError(f"run {run_id} does not exist in {self.url!r}")
            return _as_dict(run)

    def runs(self) -> pd.DataFrame:
        """All runs, newest first, with their result counts."""
        with Session(self.engine) as s:
            runs = s.scalars(select(Run).order_by(Run.id.desc())).all()
            counts = dict(_counts(s))
            rows = [{**_as_dict(r), "results": counts.get(r.id, 0)} for r in runs]
        df = pd.DataFrame(rows, columns=["id", "model", "status", "created", "updated", "results",
                                         "error", "pid", "spec", "env"])  # fmt: skip
        return df.astype({"pid": "Int64"})  # integer pids, <NA> for a run never launched

    def set_status(
        self, run_id: int, status: str, error: str | None = None, pid: int | None = None
    ) -> None:
        with Session(self.engine) as s, s.begin():
            run = s.get(Run, run_id)
            if run is None:
                raise ValueError(f"run {run_id} does not exist in {self.url!r}")
            run.status, run.error = status, error
            if pid is not None:
                run.pid = pid

    def delete_run(self, run_id: int) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(delete(Result).where(Result.run_id == run_id))
            s.execute(delete(Run).where(Run.id == run_id))

    def add_result(self, run_id: int, plan: list, row: Row) -> bool:
        """Insert one row (committed at once); returns False if its key was already stored."""
        with Session(self.engine) as s:
            s.add(Result(run_id=run_id, key=row.key, plan=plan, row=_jsonable(row.to_dict()),
                         accuracy=row.accuracy, size_bytes=row.size_bytes,
                         latency_p50_ms=row.latency_p50_ms))  # fmt: skip
            try:
                s.commit()
            except IntegrityError:  # the (run, key) pair exists: a duplicate, not an error
                s.rollback()
                return False
        return True

    def update_rows(self, run_id: int, rows: list[Row]) -> None:
        """Replace stored rows by key (one transaction): the timing phase adds latency."""
        by_key = {r.key: r for r in rows}
        with Session(self.engine) as s, s.begin():
            for res in s.scalars(select(Result).where(Result.run_id == run_id)):
                if (row := by_key.get(res.key)) is not None:
                    res.row = _jsonable(row.to_dict())
                    res.latency_p50_ms = row.latency_p50_ms

    def rows(self, run_id: int) -> list[Row]:
        """The run's rows as :class:`Row` objects, in insertion order."""
        if not 0 < run_id < 1 << 63:  # no such SQL integer, so no such run
            return []
        with Session(self.engine) as s:
            found = s.scalars(
                select(Result.row).where(Result.run_id == run_id).order_by(Result.id)
            ).all()
        return [Row.from_dict(r) for r in found]

    def keys(self, run_id: int) -> set[str]:
        if not 0 < run_id < 1 << 63:  # no such SQL integer, so no such run
            return set()
        with Session(self.engine) as s:
            return set(s.scalars(select(Result.key).where(Result.run_id == run_id)))

    def results(self, run_id: int) -> pd.DataFrame:
        """The run's rows as a DataFrame with :data:`RESULT_COLUMNS` plus ``plan``."""
        if not 0 < run_id < 1 << 63:  # no such SQL integer, so no such run
            return pd.DataFrame(columns=[*RESULT_COLUMNS, "plan"])
        with Session(self.engine) as s:
            found = s.execute(
                select(Result.row, Result.plan).where(Result.run_id == run_id).order_by(Result.id)
            ).all()
        df = pd.DataFrame([{**row, "plan": plan} for row, plan in found])
        for col in RESULT_COLUMNS:
            if col not in df:
                df[col] = pd.Series(dtype=object)
        return df


def _counts(s: Session) -> list[tuple[int, int]]:
    from sqlalchemy import func

    return list(s.execute(select(Result.run_id, func.count()).group_by(Result.run_id)).all())


def _as_dict(run: Run) -> dict[str, Any]:
    return {
        c: getattr(run, c)
        for c in ("id", "model", "status", "created", "updated", "error", "pid", "spec", "env")
    }


def _jsonable(row: dict) -> dict:
    """``row`` as strict JSON (PostgreSQL's JSON refuses NaN: a missing figure is null)."""

    def clean(v):
        if isinstance(v, float) and v != v:
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    text = json.dumps(row, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    return clean(json.loads(text))


def _connect_args(url: str) -> dict:
    return {"timeout": 30} if url.startswith("sqlite") else {}


def _sqlite_pragmas(conn, _record) -> None:
    cur = conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (the dashboard) never block the sweep
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is alive (a zombie child of this process counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def run_state(run: dict) -> str:
    """A run's state: "not started" (created, never launched), "pending", "running", "done",
    "failed", "cancelled", or "interrupted" (its process died without saying so).

    Works on :meth:`Store.run` dicts and rows of :meth:`Store.runs` (pid may be ``<NA>``).
    """
    pid = run.get("pid")
    pid = None if pid is None or pd.isna(pid) else int(pid)
    if run["status"] == "pending" and pid is None:
        return "not started"
    if run["status"] in ("running", "pending") and pid is not None and not pid_alive(pid):
        return "interrupted"
    return str(run["status"])
