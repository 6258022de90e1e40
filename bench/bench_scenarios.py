"""Latency scenarios through a run's life cycle: a sample swept with int8 auto beside fp32,
each file built once and timed in every (threads, batch) scenario of the run's settings
(optim.scenario_runs), then one table per scenario: each config's p50 with its 95 % interval,
speed-up vs fp32 with its interval, items/s and verdict, and the configs whose verdict flips.

Usage: PYTHONPATH=. python bench/bench_scenarios.py [--model digits_cnn] [--threads 1,2]
    [--batches 1,8,32] [--rounds 20] [--seconds 0.5]
(A private OPTIM_HOME is used unless one is set; mobilenet_v3's placement search takes a few
minutes on 2 busy cores.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="digits_cnn")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--seconds", type=float, default=0.5)
    args = p.parse_args()
    os.environ.setdefault("OPTIM_HOME", tempfile.mkdtemp(prefix="bench-scenarios-"))
    os.environ.pop("OPTIM_DB_URL", None)

    from optim import runs, scenario_runs, scenarios
    from optim.build import Settings
    from optim.store import Store
    from optim.techniques import Int8Auto

    axes = scenarios.cross([int(t) for t in args.threads.split(",")],
                           [int(b) for b in args.batches.split(",")])  # fmt: skip
    settings = Settings(rounds=args.rounds, min_seconds=args.seconds, jobs=1, scenarios=axes)
    store = Store()
    t0 = time.perf_counter()
    run_id = runs.create(store, args.model, [(Int8Auto(),)], settings)
    print(runs.execute(store, run_id).sentence, f"in {time.perf_counter() - t0:.0f} s; load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    ok = store.results(run_id)
    t = scenario_runs.timings_of(ok).merge(ok[["key", "label"]], on="key")
    print(
        f"\n## {args.model}: latency scenarios ({args.rounds} interleaved rounds each, "
        f"{args.seconds} s of calls per config; {os.cpu_count()} cores)\n"
    )
    print("| scenario | config | p50 ms [95 % CI] | speed-up vs fp32 [95 % CI] | items/s | "
          "verdict |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in t.itertuples():
        print(f"| {r.scenario} | {r.label} | {r.p50_ms:.3f} [{r.p50_low:.3f}, {r.p50_high:.3f}] "
              f"| {r.speedup:.2f}x [{r.speedup_low:.2f}, {r.speedup_high:.2f}] | "
              f"{r.items_per_s:,.0f} | {r.speed_verdict} |")  # fmt: skip
    lines = scenario_runs.flip_lines(ok)
    print("\nverdict flips between scenarios:" if lines else "\nno verdict flips between "
          "scenarios")  # fmt: skip
    for line in lines:
        print(f"- {line}")
    print(f"\nint8 auto executes: {ok.loc[~ok['is_baseline'], 'precision'].iloc[0]}")


if __name__ == "__main__":
    main()
