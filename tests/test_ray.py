"""Ray as the run's executor, on a real two-node Ray cluster on this machine (127.0.0.1 only):
the same rows as the local process pool, artifacts returned to the driver, the initializer once
per worker, nothing listening beyond loopback, and a worker killed mid-config."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from optim import plan as plans
from optim import runs
from optim import sweep as sw
from optim.build import Settings
from optim.pool import local
from optim.ray_executor import MAX_MB_ENV, RayExecutor, RayFactory, max_bytes
from optim.ray_local import local_cluster
from optim.techniques import Int8, Prune, Quantize

pytestmark = pytest.mark.slow
FAST = Settings(min_seconds=0.02, rounds=3, jobs=2)


@pytest.fixture(scope="session")
def cluster():
    """Two Ray nodes of one CPU each (the second with a custom resource), driver connected;
    its workers import this module's helpers as ``test_ray``, as pytest does."""
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p
    )
    with local_cluster([{"num_cpus": 1}, {"num_cpus": 1, "resources": {"node2": 1}}]) as address:
        RayFactory(address).capacity()  # connects this process as the driver
        yield address


def _ray_processes() -> list[psutil.Process]:
    """This process (the driver) and every Ray process it started: raylets, GCS, workers."""
    me = psutil.Process()
    kids = [p for p in me.children(recursive=True) if _is_ray(p)]
    return [me, *kids]


def _is_ray(p: psutil.Process) -> bool:
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return False
    return "ray" in cmd


def _figures(store, run_id: int) -> dict:
    df = store.results(run_id)
    return {k: (a, s) for k, a, s in zip(df["key"], df["accuracy"], df["size_bytes"], strict=True)}


def test_a_two_node_cluster_gives_the_local_pools_rows(cluster, fresh_store):
    plan_list = [(Int8(),), (Prune(0.5), Quantize(4))]
    local_run = runs.create(fresh_store, "digits_cnn", plan_list, FAST)
    runs.execute(fresh_store, local_run, executor=local)
    ray_run = runs.create(fresh_store, "digits_cnn", plan_list, FAST)
    result = runs.execute(fresh_store, ray_run, executor=RayFactory(cluster))
    assert not result.failed and result.measured == 3
    assert _figures(fresh_store, ray_run) == _figures(fresh_store, local_run)
    rows = [r for r in fresh_store.rows(ray_run) if not r.is_baseline]
    assert len({r.extra["built_on"] for r in rows}) == 2  # both nodes built configs
    for r in fresh_store.rows(ray_run):
        # the file came back to the driver's OPTIM_HOME: the store holds no worker path
        shipped = Path(r.artifact) / "model.onnx"
        assert shipped.is_relative_to(sw.run_dir(fresh_store.url, ray_run))
        assert shipped.stat().st_size == r.size_bytes
        assert r.latency_p50_ms is not None and r.extra["timed_on"]  # timed here, after all


def test_nothing_the_cluster_starts_listens_beyond_loopback(cluster):
    import ray

    ray.get([ray.remote(_pid).remote() for _ in range(2)])  # workers up on both nodes
    listening = [
        (p.name(), c.laddr.ip, c.laddr.port)
        for p in _ray_processes()
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert len({name for name, _, _ in listening} & {"raylet", "gcs_server"}) == 2, listening
    assert {ip for _, ip, _ in listening} <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening


def _pid() -> int:
    return os.getpid()


INITS = "init-pids.txt"


def _count_init(folder: str) -> None:
    with open(Path(folder) / INITS, "a") as f:
        f.write(f"{os.getpid()}\n")


def test_the_initializer_runs_once_per_worker_process_and_big_files_are_refused(
    cluster, tmp_path, monkeypatch
):
    ex = RayExecutor(_count_init, (str(tmp_path),), shared=True)
    pids = [f.result() for f in [ex.submit(os.getpid) for _ in range(8)]]
    ex.shutdown()
    inits = (tmp_path / INITS).read_text().split()
    assert sorted(inits) == sorted({str(p) for p in pids})  # one init per worker, not per task

    monkeypatch.setenv(MAX_MB_ENV, "0")
    with pytest.raises(ValueError, match=f"`{MAX_MB_ENV} > 0` .* must hold, but got '0'"):
        max_bytes()
    run_id, plan = 1, (Quantize(4),)
    out = sw.artifact_dir("sqlite://", run_id, plans.key(plan))
    ex = _sweep_executor(tmp_path, limit=10_000)  # digits_cnn at 4 bits is ~33 KB
    row = ex.submit(sw._work, plans.to_json(plan), str(out)).result()
    ex.shutdown()
    assert row.error.startswith(f"ArtifactTooLarge: `artifact bytes <= 10000` ({MAX_MB_ENV}) ")
    assert re.search(r"but got \d{5,} bytes; or share OPTIM_HOME", row.error), row.error
    assert row.artifact is None and not out.exists()  # nothing on the driver for it


def _sweep_executor(tmp_path: Path, **kwargs) -> RayExecutor:
    import numpy as np

    from optim import build as builder
    from optim.sources import get_source

    graph, flops = builder.torch_graph("digits_cnn", plans.key(()))
    pred = np.zeros((len(get_source("digits_cnn").splits["test"]), 10), np.float32)
    base = (graph.model.SerializeToString(), flops)
    return RayExecutor(sw._init_worker, ("digits_cnn", FAST, pred, base, str(tmp_path / "cache")),
                       **kwargs)  # fmt: skip


def _kill_tasks(times: int, stop: threading.Event, killed: list) -> None:
    """SIGKILL the Ray worker running a config, ``times`` times (a new process each try)."""

    def busy(p: psutil.Process) -> bool:  # running a task (an idle worker is "ray::IDLE")
        try:
            return p.cmdline()[:1] == ["ray::task"] and p.pid not in killed
        except psutil.Error:
            return False

    while len(killed) < times and not stop.is_set():
        for p in psutil.Process().children(recursive=True):
            if busy(p):
                time.sleep(0.2)  # mid-config: it has started
                if busy(p):  # still at it
                    p.send_signal(signal.SIGKILL)
                    killed.append(p.pid)
                break
        time.sleep(0.02)


@pytest.mark.parametrize("kills", [1, 2])
def test_a_worker_killed_mid_config_is_retried_once_then_a_failure_row(
    cluster, fresh_store, kills
):
    run_id = runs.create(fresh_store, "digits_cnn", [(Quantize(4),)], FAST)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_tasks, args=(kills, stop, killed))
    killer.start()
    try:
        result = runs.execute(fresh_store, run_id, executor=RayFactory(cluster))
    finally:
        stop.set()
        killer.join()
    assert len(killed) == kills
    rows = {r.label: r for r in fresh_store.rows(run_id)}
    assert rows["fp32 baseline"].latency_p50_ms is not None  # the run completed: timed
    if kills == 1:  # Ray's max_retries=1: the second try builds it
        assert not result.failed and rows["int4 w/channel"].accuracy is not None
    else:
        (row,) = result.failed
        assert row.error.startswith("WorkerDied: its Ray worker died on each of 2 tries (")
        assert row.error_kind == "environment"  # a resume builds it again


def test_a_search_runs_one_optuna_study_on_workers_of_both_nodes(cluster, fresh_store):
    import optuna

    from optim.search import study_name

    run_id = runs.create(fresh_store, "digits_cnn", settings=FAST,
                         search={"trials": 2, "warm": False})  # fmt: skip
    result = runs.execute(fresh_store, run_id, executor=RayFactory(cluster, shared=True))
    assert not result.failed
    study = optuna.load_study(study_name=study_name(run_id), storage=fresh_store.url)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= 2  # the budget; a worker may finish one more in flight
    rows = [r for r in fresh_store.rows(run_id) if not r.is_baseline]
    assert {t.user_attrs["key"] for t in complete} <= {r.key for r in rows}
    assert all("127.0.0.1 node" in r.extra["built_on"] for r in rows)  # built by the workers
    assert all(r.latency_p50_ms is not None for r in rows)  # timed here, together, at the end


def test_a_tuning_runs_one_optuna_study_on_the_workers(cluster, fresh_store):
    """Recovery training is what a cluster is for: a tuning's trials train on the workers."""
    import optuna

    from optim.techniques import FineTune, StructuredPrune
    from optim.tune import result, study_name

    plan = plans.to_json((StructuredPrune(0.5), FineTune(epochs=2)))
    run_id = runs.create(fresh_store, "digits_cnn", settings=FAST,
                         tune={"plan": plan, "trials": 2, "sampler": "random"})  # fmt: skip
    outcome = runs.execute(fresh_store, run_id, executor=RayFactory(cluster, shared=True))
    assert not outcome.failed
    study = optuna.load_study(study_name=study_name(run_id), storage=fresh_store.url)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= 2
    rows = [r for r in fresh_store.rows(run_id) if not r.is_baseline]
    assert len(rows) >= 2 and all("127.0.0.1 node" in r.extra["built_on"] for r in rows)
    assert all(r.latency_p50_ms is not None for r in rows)  # timed here, at the end
    best = result(fresh_store, run_id)
    assert 0 < best.accuracy <= 1 and isinstance(best.plan[1], FineTune)


def test_the_cli_sends_a_sweep_to_the_cluster_named_by_optim_ray_address(
    cluster, fresh_store, monkeypatch, capsys
):
    from optim.cli import main

    monkeypatch.setenv("OPTIM_RAY_ADDRESS", cluster)
    argv = ["sweep", "--model", "digits_cnn", "--bits", "4", "--sparsity", "0", "--rounds", "2",
            "--executor", "ray"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    (run,) = fresh_store.runs().to_dict("records")
    assert run["spec"]["settings"]["executor"] == "ray"  # a resume goes to Ray too
    rows = fresh_store.rows(int(run["id"]))
    assert [r.label for r in rows if "built_on" in r.extra] == ["int4 w/channel"]


def test_the_sweep_page_offers_the_cluster_when_one_is_configured(cluster, fresh_store,
                                                                   monkeypatch):  # fmt: skip
    from streamlit.testing.v1 import AppTest

    def sweep_page() -> AppTest:
        at = AppTest.from_file(str(Path(__file__).parents[1] / "app.py"), default_timeout=90)
        at.session_state["model"] = "digits_cnn"
        at.query_params["page"] = "sweep"
        return at.run()

    monkeypatch.delenv("OPTIM_RAY_ADDRESS", raising=False)
    assert not [c for c in sweep_page().checkbox if c.key == "sweep_ray"]  # no cluster: none
    monkeypatch.setenv("OPTIM_RAY_ADDRESS", cluster)
    at = sweep_page()
    assert not at.exception, at.exception
    (box,) = [c for c in at.checkbox if c.key == "sweep_ray"]
    assert box.label == f"Build on the Ray cluster at {cluster}"
    box.check().run()
    at.multiselect(key="sweep_bits").set_value([4])
    at.multiselect(key="sweep_sparsity").set_value([0.0]).run()
    at.button[[b.label for b in at.button].index("Run sweep")].click().run()
    (run,) = fresh_store.runs().to_dict("records")
    runs.cancel(fresh_store, int(run["id"]))  # the launched driver: not needed here
    assert run["spec"]["settings"]["executor"] == "ray"
