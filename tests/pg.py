"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster, loopback only.

The suite starts one per session (``postgres`` fixture in conftest.py). As root the server runs
as the ``postgres`` user (else ``nobody``): initdb refuses root. It listens on 127.0.0.1 at a free
port, its unix socket in its own folder; trust authentication, fsync off (a throwaway cluster).

Example:
    >>> with PostgresServer() as pg:  # doctest: +SKIP
    ...     url = pg.new_database()
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "optim"  # the cluster's superuser


def binaries() -> Path:
    """The newest /usr/lib/postgresql/*/bin with initdb and pg_ctl; a clear error if none."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if not found and shutil.which("initdb"):
        found = [shutil.which("initdb")]
    if not found:
        raise RuntimeError(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: "
            "`apt-get install -y postgresql` (scripts/test.sh does it on CI)"
        )
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A throwaway PostgreSQL cluster: ``start()``, ``new_database()``, ``restart()``, ``stop()``."""

    def __init__(self) -> None:
        self.bin = binaries()
        self.dir = Path(tempfile.mkdtemp(prefix="optim-pg-"))
        self.port = _free_port()
        self._names = itertools.count(1)
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = "postgres" if _has_user("postgres") else "nobody"
            info = pwd.getpwnam(user)
            os.chown(self.dir, info.pw_uid, info.pw_gid)
            self._as = ["runuser", "-u", user, "--"]
        os.chmod(self.dir, 0o700)

    def _run(self, *cmd: str) -> None:
        res = subprocess.run([*self._as, *cmd], capture_output=True, text=True, cwd=self.dir)
        if res.returncode:
            log = self.dir / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{cmd[0]} failed: {res.stderr or res.stdout}\n{tail}")

    def start(self) -> PostgresServer:
        data = str(self.dir / "data")
        self._run(str(self.bin / "initdb"), "-D", data, "-U", USER, "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")  # fmt: skip
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off "
                "-c full_page_writes=off -c max_connections=50")  # fmt: skip
        self._pg_ctl("start", "-o", opts, "-l", str(self.dir / "log"))
        return self

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-w", "-t", "60", *args)

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every open connection is cut."""
        self._pg_ctl("restart", "-m", "fast", "-l", str(self.dir / "log"))

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._pg_ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
