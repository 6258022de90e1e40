"""The run life cycle (optim.runs): summaries, techniques, rename and delete, refused input,
failure kinds and the baseline's predictions on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optim import plan as plans
from optim import runs
from optim.cli import main
from optim.context import load_pred, save_pred
from optim.rows import error_kind
from optim.sweep import grid, run_dir
from optim.techniques import FineTune, LowRank, Prune, Quantize, StructuredPrune

ROOT = Path(__file__).resolve().parents[1]
PATH = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"  # this venv's python


def _spec(plan_list) -> dict:
    return {"plans": [plans.to_json(()), *(plans.to_json(p) for p in plan_list)]}


def test_summary_says_what_each_kind_of_run_measures():
    assert runs.summary(_spec(grid(bits=(4, 8, 32), sparsity=(0.0, 0.5)))) == (
        "bits 4,8,32 x sparsity 0,0.5"
    )
    structured = grid(bits=(4, 32), sparsity=(0.0, 0.5), structured=True, students=(0.5,))
    assert runs.summary(_spec(structured)) == (
        "bits 4,32 x sparsity 0,0.5 x students 0.5, structured"
    )
    hand = [(LowRank(0.5),), (Prune(0.5), Quantize(4)), (StructuredPrune(0.5), FineTune())]
    text = runs.summary(_spec(hand))
    assert text.startswith("3 plans: low-rank 50%; prune 50% + int4"), text
    mixed = _spec([*grid(bits=(4, 32), sparsity=(0.0,)), (LowRank(0.5),)])
    assert runs.summary(mixed) == "bits 4,32 x sparsity 0 + 1 plan: low-rank 50%"
    assert runs.summary({"plans": [[]]}) == "the baseline only"
    assert runs.summary({"plans": [[]], "search": {"trials": 20}}) == "search, 20 trials"
    tune = {"plan": plans.to_json((FineTune(),)), "trials": 5, "sampler": "tpe"}
    assert runs.summary({"plans": [[]], "tune": tune}).endswith(", 5 trials (tpe)")


def test_techniques_lists_every_technique_with_fields_ranges_and_a_plan(capsys):
    import optim.techniques  # noqa: F401 - registers every technique

    assert main(["techniques"]) == 0
    out = capsys.readouterr().out
    for name in plans.REGISTRY:
        assert f"\n{name} (" in f"\n{out}", name
    assert "rank_ratio: float, default 0.5, in [0.05, 1.0] fraction of each layer's" in out
    examples = [line.split("--plan ", 1)[1].strip("'") for line in out.splitlines()
                if "example: --plan" in line]  # fmt: skip
    assert len(examples) == len(plans.REGISTRY)
    for text in examples:  # every example is a plan the sweep accepts
        plans.from_json(json.loads(text))
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    assert "python -m optim techniques" in capsys.readouterr().out
    piped = subprocess.run("python -m optim techniques | head -1", shell=True, text=True,
                           capture_output=True, cwd=ROOT, env={**os.environ, "PATH": PATH})  # fmt: skip
    assert piped.stdout.startswith("BiasCorrect (") and piped.stderr == ""  # no BrokenPipeError


def test_error_kinds_tell_the_environment_from_the_config():
    from concurrent.futures.process import BrokenProcessPool

    from optim.pool import WorkerDied

    for e in (OSError(30, "Read-only file system"), MemoryError(), BrokenProcessPool("x"),
              WorkerDied("its worker died"), PermissionError(1, "no")):  # fmt: skip
        assert error_kind(e) == "environment", e
    for e in (ValueError("`2 <= bits <= 8`"), RuntimeError("ORT"), KeyError("w")):
        assert error_kind(e) == "config", e
    # rows an older version stored carry only the error text
    assert error_kind("OSError: [Errno 30] Read-only file system") == "environment"
    assert error_kind("ValueError: bits") == "config"


def test_pred_npy_is_written_atomically_and_checked_when_read(tmp_path):
    pred = np.random.default_rng(0).standard_normal((20, 10)).astype(np.float32)
    path = tmp_path / "base" / "pred.npy"
    save_pred(path, pred)
    assert [p.name for p in path.parent.iterdir()] == ["pred.npy"]  # no temp file left
    np.testing.assert_array_equal(load_pred(path, 20), pred)
    assert load_pred(path, 21) is None  # another test split
    path.write_bytes(path.read_bytes()[:100])  # truncated by a kill
    assert load_pred(path, 20) is None
    save_pred(path, np.where(np.eye(20, 10) > 0, np.nan, pred).astype(np.float32))
    assert load_pred(path, 20) is None  # not finite
    save_pred(path, pred.astype(np.float64))
    assert load_pred(path, 20) is None  # not what the build writes
    assert load_pred(tmp_path / "missing.npy", 20) is None


@pytest.mark.parametrize(
    "argv, match",
    [
        (["sweep", "--model", "digits_cnn", "--bits", "4", "--sparsity", "0", "--seed", "-1"],
         "`seed >= 0` must hold, but got seed=-1"),
        (["search", "--model", "digits_cnn", "--trials", "0"], "`trials >= 1` must hold"),
        (["search", "--model", "digits_cnn", "--seed", "-1"], "`seed >= 0` must hold"),
        (["search", "--model", "digits_cnn", "--timeout", "-1"], "`--timeout > 0` must hold"),
        (["tune", "--model", "cancer_mlp", "--plan", '[{"technique": "Quantize"}]'],
         "must contain a training step"),
        (["tune", "--model", "cancer_mlp", "--plan", '[{"technique": "FineTune"}]', "--trials",
          "0"], "`trials >= 1` must hold"),
        (["search", "--resume", "12345"], "run 12345 does not exist"),
    ],
)  # fmt: skip
def test_refused_input_creates_no_run(argv, match, fresh_store, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert len(fresh_store.runs()) == 0


def test_empty_data_creates_no_run(fresh_store, tmp_path, capsys):
    from tests.corpus import shared_weight_mlp

    arrays = shared_weight_mlp(tmp_path)
    np.savez(tmp_path / "d.npz", x_test=arrays["x_test"][:0], y_test=arrays["y_test"][:0],
             x_calib=arrays["x_calib"])  # fmt: skip
    assert main(["sweep", "--model", f"{tmp_path}/model.onnx:{tmp_path}/d.npz"]) == 2
    assert "non-empty" in capsys.readouterr().err
    assert len(fresh_store.runs()) == 0


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: no process has this pid now
    return proc.pid


def test_rename_list_cancel_and_delete_a_run(fresh_store, capsys):
    store = fresh_store
    run_id = runs.create(store, "digits_cnn", grid(bits=(4, 32), sparsity=(0.0,)))
    runs.rename(store, run_id, name="  int4 for the edge  ", notes="first try")
    run = store.run(run_id)
    assert run["name"] == "int4 for the edge" and run["notes"] == "first try"
    assert main(["runs", "rename", str(run_id), "--name", "int4, edge"]) == 0
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "int4, edge" in out and "bits 4,32 x sparsity 0" in out and "not started" in out
    with pytest.raises(ValueError, match=r"a run's name must be one line"):
        runs.rename(store, run_id, name="a\nb")
    with pytest.raises(ValueError, match=r"a run's name must have 1 to"):
        runs.rename(store, run_id, name=" ")
    folder = run_dir(store.url, run_id)
    (folder / "x").mkdir(parents=True)
    store.set_status(run_id, "running", pid=__import__("os").getpid())  # a live driver
    assert main(["runs", "delete", str(run_id)]) == 2
    assert "is running in process" in capsys.readouterr().err
    store.set_status(run_id, "failed", pid=dead_pid())  # a crashed driver: interrupted
    assert main(["runs", "cancel", str(run_id)]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            f"run {run_id} is failed: only a pending, running or interrupted run can be cancelled"
        )
    )
    store.set_status(run_id, "running")
    assert main(["runs", "cancel", str(run_id)]) == 0  # given up: nothing is signalled
    assert store.run(run_id)["status"] == "cancelled"
    assert main(["runs", "delete", str(run_id)]) == 0
    assert len(store.runs()) == 0 and not folder.exists()
    assert main(["runs", "delete", str(run_id)]) == 2  # gone: one line
