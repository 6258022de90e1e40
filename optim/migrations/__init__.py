"""Schema migrations of the run store (Alembic), run by :class:`optim.store.Store` on open.

The revisions live in ``versions/`` next to this file, so a cloned or installed optim finds them
without an ``alembic.ini``. The version is kept in its own table, ``optim_alembic_version``:
Optuna's RDB storage (searches keep their studies in the same database) owns ``alembic_version``.

On open: an empty database is upgraded to :data:`HEAD`; a store written before migrations (its
tables, no version) is stamped ``0001`` and upgraded in place; a store at a revision this optim
does not know (written by a newer optim) is refused, never misread.

A new revision: copy the newest file in ``versions/``, bump ``revision``/``down_revision``, and
set :data:`HEAD` (a test checks it against the scripts).

Example:
    >>> from sqlalchemy import create_engine
    >>> engine = create_engine("sqlite://")
    >>> with engine.begin() as conn:
    ...     upgrade(conn, "sqlite://")
    >>> with engine.connect() as conn:
    ...     current(conn) == HEAD
    True
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import OperationalError, ProgrammingError

HEAD = "0004"  # the newest revision in versions/
VERSION_TABLE = "optim_alembic_version"
LEGACY = "0001"  # the schema of every store written before migrations
_LOCK = 0x6F7074696D  # "optim": PostgreSQL advisory lock that serializes concurrent upgrades


def current(conn: Connection) -> str | None:
    """The store's schema revision (None: no version table yet): one cheap query."""
    try:
        with conn.begin_nested() if conn.in_transaction() else nullcontext():
            return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    except (OperationalError, ProgrammingError):  # no such table
        return None


def upgrade(conn: Connection, url: str) -> None:
    """Bring the database of ``conn`` to :data:`HEAD`, inside the caller's write transaction
    (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock), so two processes opening a new
    store at once migrate it once."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # no "setup plugin" on stderr
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    cfg.attributes["connection"] = conn
    known = {r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()}
    rev = current(conn)
    if rev is None and inspect(conn).has_table("runs"):  # written before migrations
        command.stamp(cfg, LEGACY)
        rev = LEGACY
    if rev is not None and rev not in known:
        raise ValueError(
            f"run store {url!r} is at schema revision {rev}, newer than this optim "
            f"(head {HEAD}): upgrade optim"
        )
    if rev != HEAD:
        command.upgrade(cfg, HEAD)
