"""The run store on SQLite and on a real PostgreSQL server (tests/pg.py): the same behaviour on
both, leases that two processes cannot both win, Alembic migrations of old stores, and sweeps
that share a store with other sweeps and a reader (SQLite) or survive server restarts
(PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event, select, text, update

from optim import migrations
from optim.rows import Row
from optim.store import Result, Store

ROOT = Path(__file__).resolve().parents[1]

# the run store as every optim before migrations created it (SQLAlchemy's create_all on SQLite)
OLD_DDL = """
CREATE TABLE runs (
    id INTEGER NOT NULL, model VARCHAR(500) NOT NULL, status VARCHAR(20) NOT NULL,
    spec JSON NOT NULL, env JSON NOT NULL, error TEXT, pid INTEGER,
    created DATETIME NOT NULL, updated DATETIME NOT NULL, PRIMARY KEY (id));
CREATE TABLE results (
    id INTEGER NOT NULL, run_id INTEGER NOT NULL, "key" TEXT NOT NULL, "plan" JSON NOT NULL,
    "row" JSON NOT NULL, accuracy FLOAT, size_bytes INTEGER, latency_p50_ms FLOAT,
    created DATETIME NOT NULL, PRIMARY KEY (id), UNIQUE (run_id, "key"),
    FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE);
CREATE INDEX ix_results_run_id ON results (run_id);
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    """An empty store's URL: a SQLite file, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    return request.getfixturevalue("postgres").new_database()


def _row(key: str, **kw) -> Row:
    return Row(key=key, label=key, family="quantize", **kw)


def _python(code: str, *args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)  # fmt: skip


def _finish(proc: subprocess.Popen, timeout: float = 180) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def test_store_behaves_alike_on_sqlite_and_postgresql(url):
    store = Store(url)
    run_id = store.create_run("digits_cnn", {"plans": [[]]}, {"cpu": "x"})
    assert store.run(run_id)["name"] is None
    store.rename(run_id, name="  int8 vs fp32 ", notes="first try")
    store.rename(run_id, notes="second try")  # name stays
    big = 5 * 2**30  # a 5 GiB model file: past 32-bit integers (migration 0003)
    assert store.add_result(
        run_id, [], _row("base", is_baseline=True, accuracy=0.9, size_bytes=big)
    )
    nan = float("nan")
    assert store.add_result(run_id, [{"Quantize": {"bits": 8}}], _row("q8", accuracy=nan))
    assert not store.add_result(run_id, [], _row("base", accuracy=0.1))  # a duplicate key
    store.update_rows(run_id, [_row("q8", accuracy=0.8, latency_p50_ms=1.5, extra={"k": [1]})])
    store.set_status(run_id, "done", pid=4242)

    run = store.run(run_id)
    assert (run["name"], run["notes"], run["status"], run["pid"]) == (
        "int8 vs fp32", "second try", "done", 4242)  # fmt: skip
    assert (run["lease_owner"], run["lease_until"], run["spec"]) == (None, None, {"plans": [[]]})
    rows = store.rows(run_id)
    assert [(r.key, r.accuracy, r.latency_p50_ms, r.extra) for r in rows] == [
        ("base", 0.9, None, {}), ("q8", 0.8, 1.5, {"k": [1]})]  # fmt: skip
    assert store.keys(run_id) == {"base", "q8"}
    with store.engine.connect() as conn:  # the indexed column, not only the row's JSON
        assert conn.execute(select(Result.size_bytes).where(Result.key == "base")).scalar() == big
    df = store.results(run_id)
    assert list(df["key"]) == ["base", "q8"] and df["plan"][1] == [{"Quantize": {"bits": 8}}]
    runs = store.runs()
    assert {"name", "notes", "lease_owner", "lease_until"} <= set(runs.columns)
    first = runs.iloc[0]
    assert (first["id"], first["name"], first["results"], first["pid"]) == (
        run_id, "int8 vs fp32", 2, 4242)  # fmt: skip

    store.delete_run(run_id)
    assert store.runs().empty and store.rows(run_id) == []
    with pytest.raises(ValueError, match=f"run {run_id} does not exist"):
        store.run(run_id)


def test_a_driver_on_another_machine_is_judged_by_its_lease_not_a_local_pid(url):
    """A run's pid means something only on its own machine (``runs.host``): elsewhere the
    lease says whether it is live, Resume is refused while it beats, and Cancel never signals
    the local process that happens to have that number."""
    from optim import runs
    from optim.store import Run, run_state

    store = Store(url)
    run_id = store.create_run("m", {"plans": [[]]})
    bystander = subprocess.Popen(["sleep", "120"])  # has the remote driver's pid, here
    try:
        store.set_status(run_id, "running", pid=bystander.pid)
        assert store.run(run_id)["host"] == socket.gethostname()
        assert run_state(store.run(run_id)) == "running"  # this machine's process: alive

        def remote(**values) -> None:
            with store.engine.begin() as conn:
                conn.execute(update(Run).where(Run.id == run_id).values(**values))

        remote(host="gpu-node-7")
        assert store.claim(run_id, "gpu-node-7:4242:beefcafe", ttl_s=30)
        for run in (store.run(run_id), store.runs().iloc[0].to_dict()):
            assert run_state(run) == "running"
        with pytest.raises(ValueError, match=r"is held by driver gpu-node-7:4242:beefcafe"):
            runs.launch(store, run_id)
        runs.cancel(store, run_id)  # the request, in the store, for the driver's heartbeat
        assert bystander.poll() is None, "a local process was signalled"
        assert store.run(run_id)["status"] == "cancelled"
        store.set_status(run_id, "running")
        remote(lease_until=dt.datetime(2020, 1, 1))  # it stopped beating
        for run in (store.run(run_id), store.runs().iloc[0].to_dict()):
            assert run_state(run) == "interrupted"
        store.release(run_id, "gpu-node-7:4242:beefcafe")
        assert run_state(store.run(run_id)) == "interrupted"
    finally:
        bystander.kill()
        bystander.wait()


def test_rename_states_its_rules(fresh_store):
    run_id = fresh_store.create_run("digits_cnn", {})
    for bad, rule in [("   ", "1 to 80 characters"), ("x" * 81, "1 to 80 characters")]:
        with pytest.raises(ValueError, match=rule):
            fresh_store.rename(run_id, name=bad)
    with pytest.raises(ValueError, match="at most 2000 characters, but got 2001"):
        fresh_store.rename(run_id, notes="n" * 2001)
    with pytest.raises(ValueError, match="run 99 does not exist"):
        fresh_store.rename(99, name="x")
    fresh_store.rename(run_id, name="x" * 80, notes="n" * 2000)  # the limits themselves pass
    assert fresh_store.run(run_id)["name"] == "x" * 80


def test_lease_claim_heartbeat_release_expiry(url):
    store = Store(url)
    run_id = store.create_run("digits_cnn", {})
    before = store.run(run_id)["updated"]
    assert store.claim(run_id, "a", ttl_s=0.5)
    assert store.claim(run_id, "a", ttl_s=0.5)  # already a's
    assert not store.claim(run_id, "b")
    assert store.heartbeat(run_id, "a", ttl_s=0.5) and not store.heartbeat(run_id, "b")
    assert store.run(run_id)["lease_owner"] == "a"
    time.sleep(0.7)  # a's lease expires: b may take it, and a has lost it
    assert store.claim(run_id, "b", ttl_s=60)
    assert not store.heartbeat(run_id, "a") and not store.claim(run_id, "a")
    store.release(run_id, "a")  # not a's: nothing happens
    assert store.run(run_id)["lease_owner"] == "b"
    store.release(run_id, "b")
    assert store.run(run_id)["lease_owner"] is None and store.claim(run_id, "a")
    assert store.run(run_id)["updated"] == before  # a lease is no change of the run
    with pytest.raises(ValueError, match="run 99 does not exist"):
        store.claim(99, "a")
    with pytest.raises(ValueError, match="ttl_s must be > 0"):
        store.claim(run_id, "a", ttl_s=0)


CLAIM_ALL = """
import json, os, sys, time
from optim.store import Result, Store
owner, n, go, urls = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
stores = [Store(url) for url in urls]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
print(json.dumps([[i for i in range(1, n + 1) if s.claim(i, owner)] for s in stores]))
"""


def test_two_processes_racing_for_a_lease_never_both_win(postgres, tmp_path):
    """On SQLite and on PostgreSQL: two processes claim the same 30 runs in the same order at
    the same moment; each run has exactly one winner, the one the store names."""
    urls = [f"sqlite:///{tmp_path / 'runs.db'}", postgres.new_database()]
    n, go = 30, tmp_path / "go"
    for url in urls:
        store = Store(url)
        for _ in range(n):
            store.create_run("digits_cnn", {})
    procs = [_python(CLAIM_ALL, owner, str(n), str(go), *urls) for owner in ("p1", "p2")]
    for p in procs:
        assert p.stdout.readline() == "ready\n"
    go.touch()
    p1, p2 = (json.loads(_finish(p)) for p in procs)
    for url, won1, won2 in zip(urls, p1, p2, strict=True):
        assert not set(won1) & set(won2) and set(won1) | set(won2) == set(range(1, n + 1))
        owners = Store(url).runs().set_index("id")["lease_owner"]
        assert all(owners[i] == ("p1" if i in won1 else "p2") for i in range(1, n + 1))


def _old_store(path: Path) -> None:
    """A store as optim wrote it before migrations, with a run and two rows."""
    db = sqlite3.connect(path)
    db.executescript(OLD_DDL)
    stamp = "2026-11-30 10:00:00.000000"
    db.execute("INSERT INTO runs VALUES (1, 'digits_cnn', 'done', ?, '{}', NULL, 77, ?, ?)",
               (json.dumps({"plans": [[]]}), stamp, stamp))  # fmt: skip
    for i, (key, acc) in enumerate([("base", 0.98), ("q4", None)], 1):
        row = json.dumps(_row(key, accuracy=acc, size_bytes=1000 * i).to_dict())
        db.execute("INSERT INTO results VALUES (?, 1, ?, '[]', ?, ?, ?, NULL, ?)",
                   (i, key, row, acc, 1000 * i, stamp))  # fmt: skip
    db.commit()
    db.close()


def test_an_old_store_is_upgraded_in_place_and_read_as_before(tmp_path):
    path = tmp_path / "runs.db"
    _old_store(path)
    store = Store(f"sqlite:///{path}")
    run = store.run(1)
    assert (run["model"], run["status"], run["pid"], run["name"], run["spec"]) == (
        "digits_cnn", "done", 77, None, {"plans": [[]]})  # fmt: skip
    assert [(r.key, r.accuracy, r.size_bytes) for r in store.rows(1)] == [
        ("base", 0.98, 1000), ("q4", None, 2000)]  # fmt: skip
    assert not store.add_result(1, [], _row("base"))  # its unique constraint survived
    store.rename(1, name="from last month")
    assert store.runs()["name"].tolist() == ["from last month"]
    db = sqlite3.connect(path)
    assert db.execute(f"SELECT version_num FROM {migrations.VERSION_TABLE}").fetchall() == [
        (migrations.HEAD,)]  # fmt: skip
    assert Store(f"sqlite:///{path}").run(1)["name"] == "from last month"  # reopened at head


def test_a_store_from_a_newer_optim_is_refused(tmp_path):
    path = tmp_path / "runs.db"
    Store(f"sqlite:///{path}")
    db = sqlite3.connect(path)
    db.execute(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '0099'")
    db.commit()
    with pytest.raises(ValueError) as e:
        Store(f"sqlite:///{path}")
    assert str(e.value) == (
        f"run store 'sqlite:///{path}' is at schema revision 0099, newer than this optim "
        f"(head {migrations.HEAD}): upgrade optim"
    )


def test_head_is_the_newest_script():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    assert ScriptDirectory.from_config(cfg).get_current_head() == migrations.HEAD


WRITE_MANY = """
import sys
from optim.rows import Row
from optim.store import Result, Store
url, tag = sys.argv[1], sys.argv[2]
store = Store(url)  # a fresh file: both writers migrate it at once
for i in range(15):
    run_id = store.create_run("m", {})
    row = Row(key=f"{tag}{i}", label="l", family="f", accuracy=0.5)
    assert store.add_result(run_id, [], row)
    store.update_rows(run_id, [Row(key=f"{tag}{i}", label="l", family="f", accuracy=0.6)])
    store.set_status(run_id, "done")
"""

READ_LOOP = """
import sys, time, json
from optim.store import Result, Store
url, stop = sys.argv[1], sys.argv[2]
store, seen = None, []
while True:
    last = __import__("os").path.exists(stop)
    if store is None:
        try:
            store = Store(url)
        except ValueError:  # PostgreSQL restarting before the first open
            time.sleep(0.1)
            continue
    runs = store.runs()
    seen.append([int(n) for n in runs["results"]])
    for run_id in runs["id"]:
        store.results(int(run_id))
    if last:
        break
    time.sleep(0.25)
print(json.dumps(seen))
"""


def test_sqlite_writers_and_a_reader_at_once_lose_nothing(tmp_path):
    """Store-level: two processes writing as fast as they can (each write reads first, the
    pattern that fails at once with a deferred BEGIN) and one reading."""
    url, stop = f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "stop"
    writers = [_python(WRITE_MANY, url, tag) for tag in ("a", "b")]
    reader = _python(READ_LOOP, url, str(stop))
    for w in writers:
        _finish(w)
    stop.touch()
    _finish(reader)
    store = Store(url)
    assert len(store.runs()) == 30 and set(store.runs()["status"]) == {"done"}
    keys = set().union(*(store.keys(i) for i in store.runs()["id"]))
    assert keys == {f"{t}{i}" for t in "ab" for i in range(15)}
    assert {r.accuracy for i in store.runs()["id"] for r in store.rows(int(i))} == {0.6}


def test_postgresql_writes_wait_out_server_restarts(postgres):
    store = Store(postgres.new_database())
    run_id = store.create_run("digits_cnn", {})
    lost = []
    event.listen(store.engine, "handle_error", lambda ctx: lost.append(ctx.is_disconnect))
    restarts = threading.Thread(target=lambda: [postgres.restart() for _ in range(3)])
    restarts.start()
    n = 0
    while restarts.is_alive() or n < 20:
        store.add_result(run_id, [], _row(f"k{n}"))
        n += 1
    restarts.join()
    assert any(lost)  # writes did meet the outage ...
    assert store.keys(run_id) == {f"k{i}" for i in range(n)}  # ... and none was lost
    assert len(store.rows(run_id)) == n


def _sweep(url: str, home: Path, bits: str = "8,32") -> subprocess.Popen:
    env = {**os.environ, "OPTIM_DB_URL": url, "OPTIM_HOME": str(home), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "optim", "sweep", "--model", "digits_cnn", "--bits", bits,
           "--sparsity", "0", "--jobs", "1", "--rounds", "2"]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _check_sweeps(store: Store, n_runs: int) -> None:
    runs = store.runs()
    assert len(runs) == n_runs and set(runs["status"]) == {"done"}
    for run_id in map(int, runs["id"]):
        rows = store.rows(run_id)
        assert len(rows) == len(store.run(run_id)["spec"]["plans"]) == len(store.keys(run_id))
        assert rows[0].label == "fp32 baseline"
        assert all(r.error is None and r.accuracy > 0.9 for r in rows)
        assert all(r.latency_p50_ms is not None for r in rows)  # the timing phase was stored


@pytest.mark.slow
def test_two_sweeps_and_a_reader_share_one_sqlite_store(tmp_path):
    url, stop = f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "stop"
    sweeps = [_sweep(url, tmp_path / "home"), _sweep(url, tmp_path / "home", "32")]
    reader = _python(READ_LOOP, url, str(stop))
    errs = [s.communicate(timeout=300)[1] for s in sweeps]
    stop.touch()
    _finish(reader)
    for s, err in zip(sweeps, errs, strict=True):
        assert s.returncode == 0 and "locked" not in err, err[-3000:]
    _check_sweeps(Store(url), 2)


@pytest.mark.slow
def test_a_sweep_on_postgresql_streams_rows_and_survives_restarts(postgres, tmp_path):
    """The dashboard's reads from another process see rows as they finish, while the server
    restarts again and again under the sweep and the reader: nothing lost, nothing doubled."""
    url, stop = postgres.new_database(), tmp_path / "stop"
    sweep = _sweep(url, tmp_path / "home")
    reader = _python(READ_LOOP, url, str(stop))
    store = Store(url)
    while store.runs().empty and sweep.poll() is None:  # the sweep has started
        time.sleep(0.2)
    postgres.restart()  # while the baseline is measured
    restarts = 1
    while not store.keys(1) and sweep.poll() is None:
        time.sleep(0.2)
    while sweep.poll() is None and restarts < 4:  # between rows, in the timing phase
        postgres.restart()
        restarts += 1
        time.sleep(1.5)
    err = sweep.communicate(timeout=300)[1]
    stop.touch()
    seen = json.loads(_finish(reader))
    assert sweep.returncode == 0, err[-3000:]
    assert restarts >= 2
    _check_sweeps(Store(url), 1)
    counts = [c[0] for c in seen if c]  # run 1's result count at each read
    assert 1 in counts and counts[-1] == 2  # the baseline showed up alone first, then the rest


@pytest.mark.slow
def test_the_dashboard_reads_a_postgresql_store_that_a_sweep_elsewhere_writes(
    postgres, tmp_path, monkeypatch
):
    """The dashboard and a sweep share only the database, each with its own OPTIM_HOME (as on
    two machines): Trade-offs shows the live run and its rows so far, then the finished run's
    recommendation, read from PostgreSQL."""
    from streamlit.testing.v1 import AppTest

    url = postgres.new_database()
    sweep = _sweep(url, tmp_path / "sweep-machine", bits="4,8,32")
    monkeypatch.setenv("OPTIM_DB_URL", url)
    monkeypatch.setenv("OPTIM_HOME", str(tmp_path / "dashboard-machine"))
    store = Store(url)

    def tradeoffs() -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
        at.query_params["page"], at.query_params["run"] = "tradeoffs", "1"
        at.run()
        assert not at.exception, at.exception
        return at

    deadline = time.time() + 240
    while not store.keys(1):  # the baseline row is in
        assert time.time() < deadline and sweep.poll() is None, "the sweep wrote no row"
        time.sleep(0.2)
    with store.engine.begin() as conn:  # the sweep's next write waits (its rows reference run 1)
        conn.execute(text("SELECT id FROM runs WHERE id = 1 FOR UPDATE"))
        live = tradeoffs()  # reads are not blocked
    assert any(i.value.startswith("Run #1 is still running: ") for i in live.info), [
        i.value for i in live.info
    ]
    assert len(live.get("plotly_chart")) == 2  # the rows so far are charted
    err = sweep.communicate(timeout=300)[1]
    assert sweep.returncode == 0, err[-3000:]
    done = tradeoffs()
    headline = [m.value for m in done.markdown if m.value.startswith("At a floor of")]
    assert headline and "still running" not in " ".join(i.value for i in done.info)
    assert not (tmp_path / "dashboard-machine" / "runs.db").exists()  # nothing read locally
