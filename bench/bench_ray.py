"""Ray vs the local process pool on a 32-config digits_cnn sweep (issue 12). Prints:

(a) wall time side by side, process pool (2 workers) vs Ray (2 workers, one node started for
    the run on 127.0.0.1), with per-phase times: start (Ray's cluster start is shown apart),
    baseline, builds (first to last config row), timing phase (on the driver); target: Ray's
    overhead <= 10 % of the pool's wall time;
(b) a two-node local cluster (two raylets of one CPU each, artifacts returned to the driver)
    on the same grid: its rows (accuracy, size bytes) against the single-node run's, as a table;
(c) per-config costs for the scaling estimate (docs/scaling.md): build (worker seconds per
    config), artifact transfer between nodes, a store write, the timing phase per config.

Usage: python bench/bench_ray.py [--repeats N]
Runs in a temporary OPTIM_HOME and SQLite store; the machine's load is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_once(store, plan_list, settings, executor) -> dict:
    """One run; its wall time and phases from the progress callback's clock."""
    from optim import runs

    marks: list[tuple[float, object]] = []
    t0 = time.perf_counter()
    run_id = runs.create(store, "digits_cnn", plan_list, settings)
    result = runs.execute(store, run_id, lambda d, n, row: marks.append((time.perf_counter(), row)),
                          executor=executor)  # fmt: skip
    wall = time.perf_counter() - t0
    rows = [t for t, r in marks if r is not None]
    timed = next(t for t, r in marks if r is None)
    return {"run": run_id, "wall s": wall, "baseline s": rows[0] - t0,
            "builds s": rows[-1] - rows[0], "timing s": timed - rows[-1],
            "failed": len(result.failed)}  # fmt: skip


def figures(store, run_id: int) -> pd.DataFrame:
    df = store.results(run_id)
    return df.set_index("label")[["accuracy", "size_bytes"]].sort_index()


def per_config(store, run_id: int) -> dict:
    df = store.results(run_id)
    return {"build s/config (worker)": float(df["seconds"].median()),
            "artifact KB/config": float((df["size_bytes"] + df["download_bytes"].fillna(0)).median() / 1024)}  # fmt: skip


def transfer_seconds(nbytes: int, n: int = 20) -> float:
    """Median seconds to bring ``nbytes`` from a task on the second node to the driver."""
    import ray

    @ray.remote(num_cpus=1, resources={"node2": 1})
    def payload(k: int) -> bytes:
        return os.urandom(k)

    ray.get(payload.remote(1))
    times = []
    for _ in range(n):
        t = time.perf_counter()
        ray.get(payload.remote(nbytes))
        times.append(time.perf_counter() - t)
    return float(pd.Series(times).median())


def store_write_seconds(store, row, n: int = 200) -> float:
    from dataclasses import replace

    run_id = store.create_run("bench", {"plans": []})
    t = time.perf_counter()
    for i in range(n):
        store.add_result(run_id, [], replace(row, key=f"bench-{i}"))
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1, help="pool/Ray pairs, alternated")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="optim-bench-ray-")
    os.environ["OPTIM_HOME"] = home
    from optim import ray_executor
    from optim.build import Settings
    from optim.pool import local
    from optim.ray_local import local_cluster
    from optim.store import Store
    from optim.sweep import grid

    store = Store(f"sqlite:///{home}/runs.db")
    plan_list = grid(bits=(2, 3, 4, 5, 6, 8, 16, 32), sparsity=(0.0, 0.5, 0.75, 0.9))
    settings = Settings(jobs=2)
    print(f"grid: {len(plan_list)} configs (the baseline among them); load average before: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)  # fmt: skip
    t = time.perf_counter()
    ray_executor.connect(num_cpus=2)
    ray_start = time.perf_counter() - t
    results, ray_runs = [], []
    pair = [("process pool", local), ("Ray, 1 node", ray_executor.RayFactory())]
    # untimed warm-up: the whole grid once, so that int8 auto's placement (chosen by timing,
    # cached in OPTIM_HOME) is paid before any timed run; then Ray's cold start on 3 configs
    r = run_once(store, plan_list, settings, local)
    results.append(
        {"executor": "process pool", "repeat": "warm-up", "load": os.getloadavg()[0], **r}
    )
    r = run_once(store, plan_list[:3], settings, pair[1][1])  # Ray's worker processes start
    results.append(
        {"executor": "Ray, 1 node", "repeat": "cold, 3 configs", "load": os.getloadavg()[0], **r}
    )
    for i in range(args.repeats):
        for name, executor in pair if i % 2 == 0 else pair[::-1]:  # ABBA: drift hits both
            load = os.getloadavg()[0]
            r = run_once(store, plan_list, settings, executor)
            results.append({"executor": name, "repeat": i + 1, "load": load, **r})
            if name.startswith("Ray"):
                ray_runs.append(r["run"])
            print(results[-1], flush=True)
    ray_executor.disconnect()
    table = pd.DataFrame(results)
    print(f"\n(a) 32-config digits_cnn sweep, 2 workers (Ray's local start, apart: "
          f"{ray_start:.1f} s)")  # fmt: skip
    print(table.drop(columns=["run"]).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    warm = table[table["repeat"].map(lambda x: isinstance(x, int))]
    mean = warm.groupby("executor")["wall s"].mean()
    overhead = mean["Ray, 1 node"] / mean["process pool"] - 1
    print(f"Ray's overhead: {100 * overhead:+.1f} % of the pool's wall time (target <= 10 %)")
    pool_run = int(warm.loc[warm["executor"] == "process pool", "run"].iloc[0])
    same = figures(store, pool_run).equals(figures(store, ray_runs[0]))
    print(f"rows (accuracy, size bytes) identical, pool vs Ray: {same}")

    with local_cluster([{"num_cpus": 1}, {"num_cpus": 1, "resources": {"node2": 1}}]) as addr:
        factory = ray_executor.RayFactory(addr)  # not shared: artifacts come back
        load = os.getloadavg()[0]
        two = run_once(store, plan_list, settings, factory)
        print(f"\n(b) two-node local cluster (load {load:.1f}): wall {two['wall s']:.1f} s, "
              f"builds {two['builds s']:.1f} s, timing {two['timing s']:.1f} s")  # fmt: skip
        one, both = figures(store, ray_runs[0]), figures(store, two["run"])
        side = one.add_suffix(" 1 node").join(both.add_suffix(" 2 nodes"))
        side["identical"] = (one == both).all(axis=1)
        print(side.to_string(float_format=lambda v: f"{v:.4f}"))
        nodes = store.results(two["run"])["built_on"].dropna().value_counts()
        print(f"rows identical: {bool(side['identical'].all())}; configs per node: "
              f"{dict(nodes)}")  # fmt: skip
        costs = per_config(store, two["run"])
        nbytes = int(costs["artifact KB/config"] * 1024)
        costs["transfer s/config (node2 -> driver)"] = transfer_seconds(nbytes)
        costs["transfer s for 100 MB"] = transfer_seconds(100 << 20, n=3)
    row = store.rows(two["run"])[1]
    costs["store write s/row (SQLite)"] = store_write_seconds(store, row)
    costs["timing s/config (driver)"] = two["timing s"] / len(plan_list)
    costs["builds s/config, 2 nodes (wall)"] = two["builds s"] / (len(plan_list) - 1)
    print("\n(c) per-config costs")
    for k, v in costs.items():
        print(f"  {k:>38}: {v:.4f}")


if __name__ == "__main__":
    main()
