"""Faults survived by the run life cycle, with real processes and signals: a read-only run
folder mid-sweep, a truncated pred.npy, one pool worker killed, the driver killed (its workers
die with it) and two drivers resuming one run at once."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from optim import plan as plans
from optim import pool, runs
from optim.build import Settings
from optim.cli import main
from optim.context import load_pred
from optim.store import run_state
from optim.sweep import artifact_dir, grid, run_dir

ROOT = Path(__file__).resolve().parents[1]
FAST = Settings(min_seconds=0.02, jobs=1, rounds=3)


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(stat.parent.name))
    return out


def forkservers(pid: int) -> list[int]:
    """The multiprocessing forkservers among ``pid``'s children (the pool workers' parent);
    its other children may be anything this test process still runs, e.g. a Ray cluster of
    another test file, whose agents the raylet (and so this process) cannot outlive."""
    return [c for c in children(pid) if "multiprocessing.forkserver" in _cmdline(c)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def read_only(folder: Path, blocked: list[Path]):
    """Make ``folder`` read-only (chmod, or chattr +i for root, whom chmod does not stop); where
    neither holds (a file system without attributes), files at ``blocked`` stand in for it:
    the configs' folders cannot be created either way."""
    folder.mkdir(parents=True, exist_ok=True)
    probe, undo = folder / "probe", []
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo.append(lambda: folder.chmod(0o755))
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo.append(lambda: subprocess.run(["chattr", "-i", str(folder)], check=True))
    try:
        probe.mkdir()
        probe.rmdir()  # still writable: block the configs' folders instead
        for b in blocked:
            b.write_text("not a folder")
            undo.append(b.unlink)
    except OSError:
        pass
    try:
        yield
    finally:
        for u in undo[::-1]:
            u()


@pytest.mark.slow
def test_a_read_only_run_folder_fails_configs_for_the_environment_and_resume_retries(
    fresh_store, capsys
):
    store = fresh_store
    plan_list = grid(bits=(4, 32), sparsity=(0.0, 0.5))
    run_id = runs.create(store, "digits_cnn", plan_list, FAST)
    others = [artifact_dir(store.url, run_id, plans.key(p)) for p in plan_list if p]
    with contextlib.ExitStack() as stack:

        def progress(done, total, row):  # mid-sweep: once the baseline is stored
            if row is not None and row.is_baseline:
                stack.enter_context(read_only(run_dir(store.url, run_id), others))

        result = runs.execute(store, run_id, progress)
        assert result.measured == 1 and len(result.failed) == 3
        assert {r.error_kind for r in result.failed} == {"environment"}
        run = store.run(run_id)
        assert run["status"] == "failed" and "3 for the environment" in run["error"]
        assert runs.resumable(store, run_id)  # the page offers Resume
        # still read-only: the CLI retries, prints every failure and exits nonzero
        assert main(["sweep", "--resume", str(run_id)]) == 1
        out = capsys.readouterr().out
        assert out.count("FAILED (environment): ") == 3, out
        assert "1 of 4 configs measured; 3 failed (3 for the environment" in out
    # a truncated pred.npy (a kill mid-write before it was atomic) is measured again
    pred_file = artifact_dir(store.url, run_id, plans.key(())) / "pred.npy"
    before = np.load(pred_file)
    pred_file.write_bytes(pred_file.read_bytes()[:64])
    assert main(["sweep", "--resume", str(run_id)]) == 0
    df = store.results(run_id)
    assert len(df) == 4 and df["key"].is_unique and df["accuracy"].notna().all()
    assert df["error"].isna().all() and store.run(run_id)["status"] == "done"
    assert not runs.resumable(store, run_id)
    np.testing.assert_array_equal(load_pred(pred_file, len(before)), before)


def _die_once(marker: str, x: int) -> int:
    """Kill this worker with SIGKILL the first time it is called for ``marker``."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


def _die_always(x: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return x


def _noop() -> None:
    pass


def test_a_killed_worker_is_replaced_and_its_job_tried_once_more(tmp_path):
    jobs = [(str(tmp_path / f"m{i}"), i) for i in range(4)]
    for marker, i in jobs:
        if i != 1:  # only job 1 kills its worker, once
            Path(marker).write_text("lives")
    got = dict(pool.run_all(pool.local, 2, _noop, (), _die_once, jobs))
    assert {j[1]: r for j, r in got.items()} == {0: 0, 1: 10, 2: 20, 3: 30}
    (job, result), *rest = [
        (j, r) for j, r in pool.run_all(pool.local, 1, _noop, (), _die_always, [(7,)])
    ]  # fmt: skip
    assert isinstance(result, pool.WorkerDied) and not rest
    assert "its worker died on each of 2 tries" in str(result)


def test_a_sweep_survives_one_of_its_workers_killed(fresh_store):
    store = fresh_store
    plan_list = grid(bits=(2, 4, 32), sparsity=(0.0, 0.5))
    run_id = runs.create(store, "digits_cnn", plan_list, Settings(min_seconds=0.02, jobs=2))
    killed = []

    def progress(done, total, row):
        if row is not None and not row.is_baseline and not killed:
            workers = [w for fs in forkservers(os.getpid()) for w in children(fs)]
            os.kill(workers[0], signal.SIGKILL)  # a pool worker: never another test's process
            killed.append(workers[0])

    result = runs.execute(store, run_id, progress)  # no BrokenProcessPool
    assert killed and not result.failed and result.measured == 6
    df = store.results(run_id)
    assert len(df) == 6 and df["key"].is_unique and df["accuracy"].notna().all()
    assert store.run(run_id)["status"] == "done"


@pytest.mark.slow
def test_sigkill_of_the_driver_then_two_resumes_at_once(fresh_store, capsys):
    """The driver's forkserver and workers die with it; the run shows interrupted; the page's
    Resume finishes it while a second resume (the CLI's) is refused; every row is there once
    and the rows measured before the kill are kept."""
    store = fresh_store
    plan_list = grid(bits=(2, 4, 32), sparsity=(0.0, 0.5))
    run_id = runs.create(
        store, "digits_cnn", plan_list, Settings(min_seconds=0.02, jobs=2, rounds=3)
    )
    driver = runs.launch(store, run_id)  # python -m optim.runs RUN, in its own session
    try:
        deadline = time.time() + 180
        while len(store.keys(run_id)) < 2:
            assert time.time() < deadline and alive(driver), "the run did not start"
            time.sleep(0.2)
        family = descendants(driver)
        assert len(family) >= 3  # the forkserver and two workers
        os.kill(driver, signal.SIGKILL)  # the driver alone
        deadline = time.time() + 15
        while any(alive(p) for p in family):
            assert time.time() < deadline, "workers outlived their driver"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver, signal.SIGKILL)
    assert run_state(store.run(run_id)) == "interrupted"
    kept = store.results(run_id)
    assert 2 <= len(kept) < 6, "kill the run mid-way"
    # its dead driver's lease is released at once (its pid is gone on this host)
    second = runs.launch(store, run_id)  # the page's Resume button
    deadline = time.time() + 120
    while not str(store.run(run_id)["lease_owner"]).startswith(
        f"{socket.gethostname()}:{second}:"
    ):
        assert time.time() < deadline and alive(second), "the resumed run did not start"
        time.sleep(0.1)
    assert main(["sweep", "--resume", str(run_id)]) == 2  # a second driver at the same time
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"optim: error: run {run_id} is being executed by another driver")
    deadline = time.time() + 300
    while alive(second):
        assert time.time() < deadline
        time.sleep(0.2)
    after = store.results(run_id)
    assert len(after) == 6 and after["key"].is_unique and after["accuracy"].notna().all()
    merged = kept.merge(after, on="key", suffixes=("_before", "_after"))
    assert len(merged) == len(kept) and (merged["seconds_before"] == merged["seconds_after"]).all()
    assert store.run(run_id)["status"] == "done"


def test_a_lease_held_elsewhere_refuses_until_it_expires(fresh_store):
    from optim import lease

    run_id = fresh_store.create_run("digits_cnn", {"model": "digits_cnn", "plans": [[]]})
    assert fresh_store.claim(run_id, "another-host:4242:feed", ttl_s=1.0)  # a remote driver
    with pytest.raises(ValueError, match=rf"run {run_id} is being executed by another driver"):
        with lease.hold(fresh_store, run_id):
            pass
    with pytest.raises(ValueError, match=r"is held by driver another-host:4242:feed"):
        runs.launch(fresh_store, run_id)
    time.sleep(1.2)  # it stopped beating: expired
    with lease.hold(fresh_store, run_id, ttl_s=5.0) as me:
        assert fresh_store.run(run_id)["lease_owner"] == me
    assert fresh_store.run(run_id)["lease_owner"] is None  # released


def test_a_cancel_made_on_another_machine_reaches_the_driver_at_its_heartbeat(
    fresh_store, monkeypatch
):
    """A dashboard on another machine cannot signal the driver: its Cancel is the run's status
    in the store, which the driver's lease heartbeat reads and turns into its own SIGTERM."""
    monkeypatch.setenv("OPTIM_LEASE_TTL_S", "1.5")  # a beat every 0.5 s
    store = fresh_store
    run_id = runs.create(store, "digits_cnn", grid(bits=(2, 4, 32), sparsity=(0.0, 0.5)), FAST)
    driver = runs.launch(store, run_id)
    try:
        deadline = time.time() + 180
        while not store.keys(run_id):  # the driver holds the run and has measured the baseline
            assert time.time() < deadline and alive(driver), "the run did not start"
            time.sleep(0.1)
        store.set_status(run_id, "cancelled")  # all a remote runs.cancel can do
        deadline = time.time() + 20
        while alive(driver):
            assert time.time() < deadline, "the driver did not stop at its heartbeat"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver, signal.SIGKILL)
    run = store.run(run_id)
    assert run["status"] == "cancelled" and run["lease_owner"] is None
    assert 1 <= len(store.keys(run_id)) < 6  # the rows measured before the cancel are kept
    log = (run_dir(store.url, run_id) / "sweep.log").read_text()
    assert "optim: cancelled; finished rows are kept" in log
