"""The CLI: a real small sweep, frontier, export, and every bad input -> one line, exit 2."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

import sample_models
from optim.cli import main
from optim.store import Store

SMALL = ["sweep", "--model", "digits_cnn", "--bits", "4,8,32", "--sparsity", "0,0.5"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPTIM_DB_URL", f"sqlite:///{home / 'runs.db'}")
        out = home / "results.csv"
        assert main([*SMALL, "--out", str(out), "--jobs", "1"]) == 0
        yield home, out, int(Store().runs().iloc[0]["id"])


@pytest.fixture
def cli_env(cli_run, monkeypatch):
    monkeypatch.setenv("OPTIM_DB_URL", f"sqlite:///{cli_run[0] / 'runs.db'}")
    return cli_run


def test_sweep_writes_csv_with_pareto_flag(cli_env):
    _, out, _ = cli_env
    df = pd.read_csv(out)
    assert len(df) == 6
    for col in ("label", "accuracy", "acc_low", "acc_high", "agreement", "size_bytes",
                "latency_p50_ms", "latency_p90_ms", "latency_cv", "backend", "precision", "pareto"):  # fmt: skip
        assert col in df.columns, col
    assert df["pareto"].any() and not df["pareto"].all()


def test_frontier_recommends(cli_env, capsys):
    _, _, run_id = cli_env
    assert main(["frontier", str(run_id), "--floor", "0.98", "--relative"]) == 0
    assert "ship" in capsys.readouterr().out


def test_export_writes_onnx_download_and_recipe(cli_env, tmp_path, capsys):
    _, _, run_id = cli_env
    assert main(["export", str(run_id), "1", "--out", str(tmp_path / "x")]) == 0
    recipe = json.loads((tmp_path / "x" / "recipe.json").read_text())
    assert recipe["model"] == "digits_cnn" and "python -m optim build" in recipe["reproduce"]
    assert (tmp_path / "x" / "model.onnx").stat().st_size > 0
    # the recipe rebuilds the same artifact
    plan = json.dumps(recipe["plan"])
    assert (
        main(["build", "--model", "digits_cnn", "--plan", plan, "--out", str(tmp_path / "y")]) == 0
    )
    assert (tmp_path / "y" / "model.onnx").read_bytes() == (
        tmp_path / "x" / "model.onnx"
    ).read_bytes()  # byte-identical


def _fails(argv, capsys, match):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("optim: error: "), err
    assert match in err, err


@pytest.mark.parametrize(
    "argv, match",
    [
        (["sweep", "--model", "nope"], "unknown model 'nope'"),
        ([*SMALL[:3], "--bits", "1"], "but got bits=1"),
        ([*SMALL[:3], "--bits", "33"], "but got bits=33"),
        ([*SMALL[:3], "--sparsity", "1.0"], "`0 <= sparsity < 1` must hold, but got sparsity=1.0"),
        ([*SMALL[:3], "--sparsity", "-0.5"], "but got sparsity=-0.5"),
        ([*SMALL[:3], "--bits", ","], "the grid is empty"),
        ([*SMALL, "--distill", "1.5"], "`0 < student width < 1` must hold, but got width=1.5"),
        ([*SMALL, "--order", "sideways"], "`order` must be one of"),
        (["sweep", "--model", "digits_cnn", "--plan", "[{"], "`--plan` must be JSON"),
        (["sweep", "--model", "digits_cnn", "--plan", '{"x": 1}'], "must hold a 'plan'"),
        (
            ["sweep", "--model", "digits_cnn", "--plan", '[{"technique": "Quantize", "bitz": 3}]'],
            "`Quantize` has no field 'bitz'",
        ),
        (["sweep", "--model", "digits_cnn", "--plan", "[3]"], "each plan step must be an object"),
        (
            ["sweep", "--model", "digits_cnn", "--plan", "[]", "--structured"],
            "`--structured` shapes the grid, but only `--plan` was given",
        ),
        (["sweep", "--model", "digits_cnn", "--plan", "@/no/such.json"], "cannot be read"),
        (
            [
                "sweep",
                "--model",
                "digits_cnn",
                "--plan",
                '[{"technique": "Int8"}, {"technique": "Prune"}]',
            ],
            "`Int8` must be the plan's last step",
        ),
        (
            [*SMALL[:3], "--out", "/nonexistent-dir/x.csv"],
            "`--out` must be a file in an existing folder",
        ),
        ([*SMALL, "--scenarios", "1x1,2y8"], "a scenario must read THREADSxBATCH[:LEVEL]"),
        ([*SMALL, "--scenarios", "1x0"], "`batch >= 1` must hold, but got batch=0"),
        (["sweep", "--resume", "999"], "run 999 does not exist"),
        (["frontier", "999", "--floor", "0.9"], "run 999 has no results"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, match, capsys, fresh_store):
    _fails(argv, capsys, match)
    assert len(fresh_store.runs()) == 0


def test_sweep_hand_built_plans_and_sensitivity_mixed_precision(fresh_store, capsys):
    """--plan alone measures just those plans (and the baseline); --keep-8bit adds mixed
    precision that keeps the layers most sensitive to 3-bit rounding at 8 bits."""
    from optim.sensitivity import rank, sensitivity

    plan = '[{"technique": "Prune", "amount": 0.5}, {"technique": "Quantize", "bits": 3}]'
    assert main(["sweep", "--model", "cancer_mlp", "--plan", plan, "--jobs", "1"]) == 0
    df = fresh_store.results(int(fresh_store.runs()["id"].max()))
    assert sorted(df["label"]) == ["fp32 baseline", "prune 50% + int3 w/channel"]
    argv = ["sweep", "--model", "cancer_mlp", "--bits", "3,32", "--sparsity", "0"]
    assert main([*argv, "--keep-8bit", "1", "--jobs", "1"]) == 0
    df = fresh_store.results(int(fresh_store.runs()["id"].max()))
    assert len(df) == 3
    (mixed,) = [p for p in df["plan"] if p and p[0]["technique"] == "MixedQuantize"]
    ranking = rank(sensitivity("cancer_mlp", bits=(3,), sparsities=()))
    assert mixed[0]["keep_8bit"] == 1 and list(mixed[0]["sensitivity"]) == ranking
    assert mixed[0]["default_bits"] == 3


def test_floor_above_every_config(cli_env, capsys):
    _, _, run_id = cli_env
    _fails(["frontier", str(run_id), "--floor", "0.9999"], capsys, "0.9999")


def test_unwritable_store(monkeypatch, capsys):
    monkeypatch.setenv("OPTIM_DB_URL", "sqlite:////proc/no/such/runs.db")
    _fails(SMALL, capsys, "is not writable")


def test_corrupted_weights(tmp_path, monkeypatch, capsys, fresh_store):
    bad = tmp_path / "weights"
    shutil.copytree(sample_models.WEIGHTS_DIR, bad)
    (bad / "digits_cnn.safetensors").write_bytes(b"\x00" * 100)
    monkeypatch.setattr(sample_models, "WEIGHTS_DIR", bad)
    _fails(SMALL, capsys, "is corrupted")
    assert len(fresh_store.runs()) == 0


def test_bad_onnx_source(tmp_path, capsys, fresh_store):
    import numpy as np

    (tmp_path / "m.onnx").write_bytes(b"garbage")
    np.savez(
        tmp_path / "d.npz",
        x_test=np.zeros((4, 3), np.float32),
        x_calib=np.zeros((4, 3), np.float32),
    )
    _fails(
        ["sweep", "--model", f"{tmp_path}/m.onnx:{tmp_path}/d.npz"],
        capsys,
        "m.onnx is not an ONNX model",
    )
    assert len(fresh_store.runs()) == 0


def test_the_rebuild_command_quotes_every_argument(tmp_path):
    import shlex

    hostile = "m;touch X;.onnx:d.npz"
    cmd = cli_reproduce(hostile, [{"technique": "Quantize", "bits": 4}], {"threads": 1})
    assert shlex.split(cmd)[5] == hostile  # one argument, nothing runs
    assert "'m;touch X;.onnx:d.npz'" in cmd


def cli_reproduce(model, plan, settings):
    from optim.export import reproduce_command

    return reproduce_command(model, plan, settings)


@pytest.mark.parametrize(
    "flag, value, rule",
    [("--threads", "10000", "`1 <= threads <= "), ("--jobs", "999", "`0 <= jobs <= "),
     ("--seed", "-1", "`seed >= 0` must hold, but got seed=-1")],
)  # fmt: skip
def test_threads_jobs_and_seed_are_bounded(flag, value, rule, capsys, fresh_store):
    _fails(["sweep", "--model", "digits_cnn", "--bits", "4", "--sparsity", "0", flag, value],
           capsys, rule)  # fmt: skip
    assert len(fresh_store.runs()) == 0


@pytest.mark.parametrize(
    "plan, rule",
    [('[{"technique": ["Quantize"]}]', 'unknown technique "[\'Quantize\']"'),
     ('[{"technique": "Quantize", "bits": "4"}]', "`Quantize.bits` must be int, but got '4' (str)"),
     ('[{"technique": "Quantize", "bits": 4.5}]', "`Quantize.bits` must be int, but got '4.5' (float)"),
     ("[" * 2000 + "]" * 2000, "nests too deep")],
)  # fmt: skip
def test_malformed_plans_are_one_line(plan, rule, capsys, fresh_store):
    _fails(["sweep", "--model", "digits_cnn", "--plan", plan], capsys, rule)
    assert len(fresh_store.runs()) == 0


def test_outputs_runs_and_budgets_are_checked(cli_env, tmp_path, capsys):
    _, _, run_id = cli_env
    (tmp_path / "file").write_text("x")
    _fails(["export", str(run_id), "0", "--out", str(tmp_path / "file")], capsys, "is a file")
    _fails(["build", "--model", "digits_cnn", "--plan", "[]", "--out", str(tmp_path / "file")],
           capsys, "is a file")  # fmt: skip
    _fails(["frontier", str(10**20), "--floor", "0.9"], capsys, f"run {10**20} ")
    _fails(["frontier", str(run_id), "--floor", "0.9", "--max-size-mb", "0"], capsys,
           "`max_size_bytes > 0` must hold")  # fmt: skip
