"""Print the README's sample-model table: baseline figures measured by the engine.

Usage: python bench/baselines.py  (resnet18 trains on first use, ~3 minutes)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optim.frontier import fmt_bytes  # noqa: E402
from optim.profile import profile  # noqa: E402
from optim.sources import sample_names, sample_source  # noqa: E402


def _si(n: float) -> str:
    return (
        f"{n / 1e9:.2f} G" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"
    )


def main() -> None:
    print("| model | what | params | FLOPs | accuracy (95 % CI) | size | p50 / p90 (ms) |")
    print("|---|---|---|---|---|---|---|")
    for name in sample_names():
        s = profile(name).summary
        print(
            f"| `{name}` | {sample_source(name).description} | {s['params']:,} | "
            f"{_si(s['flops'])} | {s['accuracy']:.1%} ({s['acc_low']:.1%}-{s['acc_high']:.1%}) | "
            f"{fmt_bytes(s['size_bytes'])} | {s['latency_p50_ms']:.3f} / {s['latency_p90_ms']:.3f} |"
        )


if __name__ == "__main__":
    main()
