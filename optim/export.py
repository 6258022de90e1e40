"""What leaves a run: a config's shipped files with its JSON recipe, and the command that
rebuilds it (``python -m optim build``), which :func:`rebuild` runs.

Example:
    >>> files = export(store.run(3), store.results(3).iloc[1], Path("out"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from optim.artifact import write_atomic

SHIPPED = ("model.onnx", "model.onnx.zst")  # the file that runs, and its download when smaller
FIGURES = ("accuracy", "acc_low", "acc_high", "acc_delta", "acc_p", "agreement", "size_bytes",
           "download_bytes", "peak_rss_bytes", "latency_p50_ms", "latency_p90_ms", "speedup",
           "speed_verdict", "precision", "stored", "backend")  # fmt: skip


def export(run: dict, row: pd.Series, out_dir: Path) -> list[Path]:
    """Copy a config's ``model.onnx`` (and ``model.onnx.zst``) to ``out_dir`` and write
    ``recipe.json``; returns the files written."""
    src = Path(row["artifact"])
    if not (src / "model.onnx").is_file():
        raise ValueError(
            f"the model.onnx of {row['label']!r} is gone from {str(src)!r}; re-run the sweep"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name in SHIPPED:
        (out_dir / name).unlink(missing_ok=True)  # no stale download beside a new model
        if (src / name).is_file():
            shutil.copyfile(src / name, out_dir / f".{name}.tmp")
            (out_dir / f".{name}.tmp").replace(out_dir / name)
            files.append(out_dir / name)
    files.append(out_dir / "recipe.json")
    write_atomic(files[-1], json.dumps(recipe(run, row), indent=2).encode())
    return files


def recipe(run: dict, row: pd.Series) -> dict:
    """The JSON recipe: plan, model, settings, measured figures and the command that rebuilds it."""
    plan = row["plan"]
    figures = {k: row[k] for k in FIGURES if k in row}
    return {
        "model": run["spec"]["model"],
        "plan": plan,
        "label": row["label"],
        "settings": run["spec"]["settings"],
        "measured": {k: (v.item() if hasattr(v, "item") else v) for k, v in figures.items()},
        "env": run["env"],
        "reproduce": reproduce_command(run["spec"]["model"], plan, run["spec"]["settings"]),
    }


def reproduce_command(model: str, plan: list, settings: dict) -> str:
    """The shell command that rebuilds a config; every argument is quoted (users paste it)."""
    args = ["python", "-m", "optim", "build", "--model", model, "--plan",
            json.dumps(plan, separators=(",", ":")), "--threads", str(settings["threads"]),
            "--seed", str(settings.get("seed", 0))]  # fmt: skip
    return " ".join(shlex.quote(a) for a in args) + " --out DIR"


def rebuild(model: str, plan: Sequence[object], out_dir: Path, threads: int = 1, seed: int = 0):
    """Build and measure one plan into ``out_dir``, timed against a baseline built aside (what
    :func:`reproduce_command` runs); returns its :class:`~optim.rows.Row`."""
    from optim.build import Settings, evaluate, time_rows
    from optim.sources import get_source

    source = get_source(model)
    settings = Settings(threads=threads, seed=seed)
    with tempfile.TemporaryDirectory() as d:
        base, base_pred = evaluate(source, (), Path(d), settings, None)
        row, _ = evaluate(source, tuple(plan), out_dir, settings, base_pred)
        if plan:
            return time_rows([base, row], settings, source.example)[1]
        return time_rows([row], settings, source.example)[0]
