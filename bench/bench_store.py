"""Print the run store's throughput: result rows committed per second by 1 and 4 writer
processes at once (each row its own transaction, as a sweep writes them), on a SQLite file and
on a local PostgreSQL server (tests/pg.py starts a throwaway one: fsync off, so an upper
bound for a durable server), and the cost of opening a
store (``Store()``: engine plus the schema revision check).

Usage: python bench/bench_store.py [rows per writer, default 300]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optim.store import Store  # noqa: E402
from tests.pg import PostgresServer  # noqa: E402

WRITER = """
import os, sys, time
from optim.rows import Row
from optim.store import Store
url, run_id, tag, n, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
store = Store(url)
store.keys(run_id)  # connected
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
for i in range(n):
    store.add_result(run_id, [], Row(key=f"{tag}{i}", label="l", family="f", accuracy=0.5))
"""


def _rows_per_s(url: str, writers: int, n: int, go: Path) -> float:
    store = Store(url)
    run_id = store.create_run("bench", {})
    go.unlink(missing_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(run_id), f"w{w}-", str(n), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for w in range(writers)
    ]
    for p in procs:  # every writer imported and connected before the clock starts
        p.stdout.readline()
    start = time.perf_counter()
    go.touch()
    for p in procs:
        p.wait()
    seconds = time.perf_counter() - start
    assert len(store.keys(run_id)) == writers * n, "rows were lost"
    return writers * n / seconds


def _open_ms(url: str, times: int = 30) -> float:
    Store(url)
    start = time.perf_counter()
    for _ in range(times):
        Store(url).engine.dispose()
    return (time.perf_counter() - start) / times * 1e3


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    print(f"| store | writers | rows/s (each its own commit, {n} per writer) | Store() ms |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp, PostgresServer() as pg:
        for name, new_url in [("SQLite (WAL)", lambda w: f"sqlite:///{tmp}/runs{w}.db"),
                              ("PostgreSQL 127.0.0.1", lambda w: pg.new_database())]:  # fmt: skip
            for writers in (1, 4):
                url = new_url(writers)
                print(f"| {name} | {writers} | {_rows_per_s(url, writers, n, Path(tmp) / 'go'):,.0f} | "
                      f"{_open_ms(url):.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
