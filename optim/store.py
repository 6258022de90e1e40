"""The run store: runs and their result rows, in SQLAlchemy (a SQLite file by default).

``OPTIM_DB_URL`` (a SQLAlchemy URL, e.g. ``postgresql+psycopg://user@host/db``) overrides the
default ``sqlite:///$OPTIM_HOME/runs.db``; ``OPTIM_HOME`` (default ``~/.optim``) also holds
artifacts and caches. Opening a store migrates its schema (Alembic, :mod:`optim.migrations`).
Each result row is committed on its own, so a sweep killed at any point keeps every finished
row; a unique (run, key) constraint makes duplicates impossible, which also makes every write
safe to retry: on PostgreSQL a write that loses its connection (a server restart) is retried
until the server is back (:data:`RETRY_S`). On SQLite, writers take the lock up front
(``BEGIN IMMEDIATE``) and wait for it up to 30 s, so two sweeps and the dashboard share a file.
A run's *lease* (:meth:`Store.claim`) lets one driver at a time execute it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    case,
    create_engine,
    delete,
    event,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from optim import migrations
from optim.rows import COLUMNS as RESULT_COLUMNS
from optim.rows import Row


def home() -> Path:
    """``OPTIM_HOME`` (default ``~/.optim``): artifacts, caches and the default database."""
    return Path(os.environ.get("OPTIM_HOME") or Path.home() / ".optim")


def db_url() -> str:
    """``OPTIM_DB_URL``, else the SQLite file in :func:`home`; ``postgresql://`` means psycopg 3."""
    url = os.environ.get("OPTIM_DB_URL") or f"sqlite:///{home() / 'runs.db'}"
    return _driver(url)


def _driver(url: str) -> str:
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url.removeprefix(bare)
    return url


RETRY_S = 60.0  # how long a write waits for a lost database server (a restart) to come back
OPEN_RETRY_S = 10.0  # opening waits less: a wrong host or password should not hang a minute
NAME_MAX, NOTES_MAX = 80, 2000


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
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)  # the machine of pid
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    updated: Mapped[dt.datetime] = mapped_column(DateTime, default=_now, onupdate=_now)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)  # the user's label
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)  # its driver
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)  # UTC


class Result(Base):
    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("run_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(Text)
    plan: Mapped[list] = mapped_column(JSON)
    row: Mapped[dict] = mapped_column(JSON)  # the measured figures and labels (RESULT_COLUMNS)
    accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # > 2 GiB
    latency_p50_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)


def _retrying(method):
    """Retry ``method`` while the database server is unreachable (PostgreSQL restarting), up to
    :data:`RETRY_S`. Every store write is idempotent (rows are unique by (run, key)), so a write
    whose commit was lost with its connection is simply written again (except ``create_run``:
    a commit lost exactly then leaves an extra empty run)."""

    @functools.wraps(method)
    def retried(self: Store, *args, **kwargs):
        deadline, pause = time.monotonic() + self._patience, 0.1
        while True:
            try:
                return method(self, *args, **kwargs)
            except DBAPIError as e:
                lost = e.connection_invalidated or isinstance(e, OperationalError)
                if self.engine.dialect.name == "sqlite" or not lost:
                    raise  # SQLite waits for its lock itself (busy timeout); others are real
                if time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(2 * pause, 2.0)

    return retried


class Store:
    """A handle on the run store.

    Example:
        >>> store = Store("sqlite:///:memory:")
        >>> run_id = store.create_run("digits_cnn", {"plans": []})
        >>> store.rename(run_id, name="int8 baseline")
        >>> store.claim(run_id, "host:4242"), store.claim(run_id, "host:4343")
        (True, False)
    """

    def __init__(self, url: str | None = None) -> None:
        self.url = _driver(url or db_url())
        try:
            if self.url.startswith("sqlite:///") and not self.url.endswith(":memory:"):
                Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _engine(self.url)
            self._writer = sessionmaker(self.engine.execution_options(optim_write=True))
            self._patience = OPEN_RETRY_S
            self._migrate()
            self._patience = RETRY_S
        except (OSError, SQLAlchemyError) as e:
            reason = str(e.orig if hasattr(e, "orig") else e).splitlines()[0]
            raise ValueError(f"run store {self.url!r} is not writable ({reason})") from None

    @_retrying
    def _migrate(self) -> None:
        with self.engine.connect() as conn:  # the cheap check: already at head?
            if migrations.current(conn) == migrations.HEAD:
                return
        with self._writing() as s:
            migrations.upgrade(s.connection(), self.url)

    def _writing(self):
        """``with self._writing() as s``: a session in a writer's transaction (SQLite:
        ``BEGIN IMMEDIATE``), committed at the end."""
        return self._writer.begin()

    @_retrying
    def create_run(self, model: str, spec: dict, env: dict | None = None) -> int:
        with self._writing() as s:
            run = Run(model=model, spec=spec, env=env or {}, status="pending")
            s.add(run)
            s.flush()
            return run.id

    @_retrying
    def run(self, run_id: int) -> dict:
        with Session(self.engine) as s:
            return _as_dict(self._get(s, run_id))

    def _get(self, s: Session, run_id: int) -> Run:
        # SQL integers: a 20-digit id is no run, not a crash
        run = s.get(Run, run_id) if 0 < run_id < 1 << 63 else None
        if run is None:
            raise ValueError(f"run {run_id} does not exist in {self.url!r}")
        return run

    @_retrying
    def runs(self) -> pd.DataFrame:
        """All runs, newest first, with their result counts."""
        with Session(self.engine) as s:
            runs = s.scalars(select(Run).order_by(Run.id.desc())).all()
            counts = dict(_counts(s))
            rows = [{**_as_dict(r), "results": counts.get(r.id, 0)} for r in runs]
        df = pd.DataFrame(rows, columns=["id", "name", "model", "status", "created", "updated",
                                         "results", "error", "pid", "host", "spec", "env",
                                         "notes", "lease_owner", "lease_until"])  # fmt: skip
        return df.astype({"pid": "Int64"})  # integer pids, <NA> for a run never launched

    @_retrying
    def set_status(
        self, run_id: int, status: str, error: str | None = None, pid: int | None = None
    ) -> None:
        """Set the run's status; ``pid`` is a process of this machine (recorded with it)."""
        with self._writing() as s:
            run = self._get(s, run_id)
            run.status, run.error = status, error
            if pid is not None:
                run.pid, run.host = pid, this_host()

    @_retrying
    def launched(self, run_id: int, pid: int) -> None:
        """Record ``pid``, a driver just started on this machine: the run is "pending" until
        that driver holds it (one UPDATE, so a driver already "running" stays so)."""
        with self._writing() as s:
            self._get(s, run_id)
            status = case((Run.status == "running", Run.status), else_="pending")
            s.execute(update(Run).where(Run.id == run_id)
                      .values(pid=pid, host=this_host(), status=status))  # fmt: skip

    @_retrying
    def rename(self, run_id: int, name: str | None = None, notes: str | None = None) -> None:
        """Set the run's name (stripped, 1 to 80 characters) and/or notes (<= 2000 characters);
        ``None`` leaves that field as it is.

        Example:
            >>> store.rename(3, name="int4 vs int8", notes="before the retraining")  # doctest: +SKIP
        """
        if name is not None:
            name = name.strip()
            if not 1 <= len(name) <= NAME_MAX:
                raise ValueError(
                    f"a run's name must have 1 to {NAME_MAX} characters (stripped), "
                    f"but got {len(name)}: {name[:40]!r}"
                )
        if notes is not None and len(notes) > NOTES_MAX:
            raise ValueError(
                f"a run's notes must have at most {NOTES_MAX} characters, but got {len(notes)}"
            )
        with self._writing() as s:
            run = self._get(s, run_id)
            if name is not None:
                run.name = name
            if notes is not None:
                run.notes = notes or None

    @_retrying
    def claim(self, run_id: int, owner: str, ttl_s: float = 30.0) -> bool:
        """Take the run's lease for ``ttl_s`` seconds if it is free, expired or already
        ``owner``'s; returns whether ``owner`` holds it. One conditional UPDATE, so of two
        processes claiming at once exactly one wins. Keep it with :meth:`heartbeat`.

        Example:
            >>> store.claim(3, f"{socket.gethostname()}:{os.getpid()}")  # doctest: +SKIP
            True
        """
        now, until = _lease_times(owner, ttl_s)
        free = or_(Run.lease_owner.is_(None), Run.lease_until < now, Run.lease_owner == owner)
        return self._lease(run_id, free, lease_owner=owner, lease_until=until)

    @_retrying
    def heartbeat(self, run_id: int, owner: str, ttl_s: float = 30.0) -> bool:
        """Extend ``owner``'s lease by ``ttl_s`` from now; False if the lease was lost (another
        owner took it after it expired, or it was released)."""
        _, until = _lease_times(owner, ttl_s)
        return self._lease(run_id, Run.lease_owner == owner, lease_until=until)

    @_retrying
    def release(self, run_id: int, owner: str) -> None:
        """Give up ``owner``'s lease (nothing happens if ``owner`` does not hold it)."""
        self._lease(run_id, Run.lease_owner == owner, lease_owner=None, lease_until=None)

    def _lease(self, run_id: int, held, **values) -> bool:
        with self._writing() as s:
            self._get(s, run_id)
            done = s.execute(
                update(Run)
                .where(Run.id == run_id, held)
                .values(**values, updated=Run.updated)  # a lease is no change of the run
                .execution_options(synchronize_session=False)
            )
            return done.rowcount == 1

    @_retrying
    def delete_run(self, run_id: int) -> None:
        with self._writing() as s:
            s.execute(delete(Result).where(Result.run_id == run_id))
            s.execute(delete(Run).where(Run.id == run_id))

    @_retrying
    def add_result(self, run_id: int, plan: list, row: Row) -> bool:
        """Insert one row (committed at once); returns False if its key was already stored."""
        try:
            with self._writing() as s:
                s.add(Result(run_id=run_id, key=row.key, plan=plan, row=_jsonable(row.to_dict()),
                             accuracy=row.accuracy, size_bytes=row.size_bytes,
                             latency_p50_ms=row.latency_p50_ms))  # fmt: skip
        except IntegrityError:  # the (run, key) pair exists: a duplicate, not an error
            return False
        return True

    @_retrying
    def update_rows(self, run_id: int, rows: list[Row]) -> None:
        """Replace stored rows by key (one transaction): the timing phase adds latency."""
        by_key = {r.key: r for r in rows}
        with self._writing() as s:
            self._get(s, run_id).updated = _now()  # readers keyed on it reload the rows
            for res in s.scalars(select(Result).where(Result.run_id == run_id)):
                if (row := by_key.get(res.key)) is not None:
                    res.row = _jsonable(row.to_dict())
                    res.latency_p50_ms = row.latency_p50_ms

    @_retrying
    def rows(self, run_id: int) -> list[Row]:
        """The run's rows as :class:`Row` objects, in insertion order."""
        if not 0 < run_id < 1 << 63:  # no such SQL integer, so no such run
            return []
        with Session(self.engine) as s:
            found = s.scalars(
                select(Result.row).where(Result.run_id == run_id).order_by(Result.id)
            ).all()
        return [Row.from_dict(r) for r in found]

    @_retrying
    def keys(self, run_id: int) -> set[str]:
        if not 0 < run_id < 1 << 63:  # no such SQL integer, so no such run
            return set()
        with Session(self.engine) as s:
            return set(s.scalars(select(Result.key).where(Result.run_id == run_id)))

    @_retrying
    def results_stamp(self, run_id: int) -> tuple[int, int | None, float | None]:
        """(rows, highest row id, sum of their p50s) of the run: a cheap stamp that changes when
        a row is added or timed, so a reader can keep :meth:`results` until it does."""
        from sqlalchemy import func

        with Session(self.engine) as s:
            q = select(func.count(), func.max(Result.id), func.sum(Result.latency_p50_ms))
            n, last, p50s = s.execute(q.where(Result.run_id == run_id)).one()
        return int(n), last, p50s

    @_retrying
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


def _lease_times(owner: str, ttl_s: float) -> tuple[dt.datetime, dt.datetime]:
    if not owner or len(owner) > 200:
        raise ValueError(f"a lease owner must have 1 to 200 characters, but got {owner!r:.60}")
    if not 0 < ttl_s < 86400 * 365:
        raise ValueError(f"a lease's ttl_s must be > 0 seconds, but got {ttl_s}")
    now = _now()
    return now, now + dt.timedelta(seconds=ttl_s)


def _counts(s: Session) -> list[tuple[int, int]]:
    from sqlalchemy import func

    return list(s.execute(select(Result.run_id, func.count()).group_by(Result.run_id)).all())


def _as_dict(run: Run) -> dict[str, Any]:
    return {
        c: getattr(run, c)
        for c in ("id", "name", "model", "status", "created", "updated", "error", "pid", "host",
                  "spec", "env", "notes", "lease_owner", "lease_until")
    }  # fmt: skip


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


def _engine(url: str):
    """An engine for ``url``: PostgreSQL checks a pooled connection before use (a restarted
    server); SQLite waits up to 30 s for a lock and its writers take it up front."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30})
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_begin(conn) -> None:
    """SQLAlchemy's pysqlite recipe: the driver's own BEGIN is off (``_sqlite_pragmas``), so
    this one decides. A writer takes the write lock up front (``BEGIN IMMEDIATE``, waiting for
    it up to the busy timeout): a deferred transaction that reads and then writes gets "database
    is locked" at once, without waiting, when another writer committed in between."""
    write = conn.get_execution_options().get("optim_write")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _sqlite_pragmas(conn, _record) -> None:
    conn.isolation_level = None  # the driver issues no BEGIN of its own (see _sqlite_begin)
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


def this_host() -> str:
    """This machine's name, as runs (``host``) and leases (``host:pid:tag``) record it."""
    return socket.gethostname()


def lease_live(run: dict) -> bool:
    """Whether ``run``'s lease is unexpired: its driver beat less than a lease ago, wherever
    it runs (the expiry is written from the driver's clock)."""
    holder, until = run.get("lease_owner"), run.get("lease_until")
    if not isinstance(holder, str) or not holder or until is None or pd.isna(until):
        return False
    return until > _now()


def elsewhere(run: dict) -> bool:
    """Whether ``run``'s pid is a process of another machine (a driver there)."""
    host = run.get("host")
    return isinstance(host, str) and bool(host) and host != this_host()


def run_state(run: dict) -> str:
    """A run's state: "not started" (created, never launched), "pending", "running", "done",
    "failed", "cancelled", or "interrupted" (its process died without saying so).

    A driver on this machine is judged by its pid; one on another machine (a sweep writing a
    shared PostgreSQL store) by its lease: "interrupted" once it stopped beating.
    Works on :meth:`Store.run` dicts and rows of :meth:`Store.runs` (pid may be ``<NA>``).
    """
    pid = run.get("pid")
    pid = None if pid is None or pd.isna(pid) else int(pid)
    status = str(run["status"])
    if status == "pending" and pid is None:
        return "not started"
    if status not in ("running", "pending") or pid is None:
        return status
    if elsewhere(run):  # a pending run has no lease until its driver claims it
        return status if status == "pending" or lease_live(run) else "interrupted"
    return status if pid_alive(pid) else "interrupted"
