"""Models an engineer registers in code they own (``optim.toml``, ``module:callable``): listed,
resolved, their specs round-tripped, swept with torch-stage techniques, shown in the dashboard,
and every bad entry refused in one line. A real project in ``tmp_path``; no mocks."""

from __future__ import annotations

import re
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from streamlit.testing.v1 import AppTest

import optim.sweep as sw
from optim import project
from optim.cli import main
from optim.sources import describe, get_source, model_names, source_spec
from optim.techniques import (
    QAT,
    Distill,
    FineTune,
    GradualPrune,
    Int8,
    LowRank,
    Quantize,
    StructuredPrune,
)
from optim.train import seeded

APP = Path(__file__).resolve().parents[1] / "app.py"
MODELS_PY = '''
from torch import nn


def build() -> nn.Module:
    """A small CNN for 8x8 digits: (N, 1, 8, 8) -> (N, 10)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 2 * 2, 10),
    )


def not_a_model():
    return {"weights": 1}


def broken():
    raise RuntimeError("no GPU here")


NOT_CALLABLE = 3
'''
TOML = """
[models.tiny_cnn]
build = "mymodels:build"
weights = "weights/tiny.safetensors"
data = "data/digits.npz"
description = "Tiny CNN on 8x8 digits"
"""


def _digits() -> dict[str, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32).reshape(-1, 1, 8, 8)  # (N, 1, 8, 8) in [0, 1]
    y = y.astype(np.int64)
    return {"x_train": x[:500], "y_train": y[:500], "x_calib": x[500:700],
            "x_test": x[700:1000], "y_test": y[700:1000]}  # fmt: skip


def _write(root: Path, toml: str = TOML, train: bool = False) -> Path:
    """A project in ``root``: mymodels.py, data/digits.npz, weights/tiny.safetensors, optim.toml."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "weights").mkdir(exist_ok=True)
    (root / "mymodels.py").write_text(MODELS_PY)
    arrays = _digits()
    np.savez(root / "data" / "digits.npz", **arrays)
    with seeded(0):
        model = runpy.run_path(str(root / "mymodels.py"))["build"]()
        if train:  # ~1 s: full-batch Adam on 500 digits, to ~90 % test accuracy
            x, y = torch.tensor(arrays["x_train"]), torch.tensor(arrays["y_train"])
            opt = torch.optim.Adam(model.parameters(), lr=1e-2)
            for _ in range(60):
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
    save_file(model.state_dict(), root / "weights" / "tiny.safetensors")
    (root / "optim.toml").write_text(toml)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("project"), train=True)


@pytest.fixture
def proj(trained, tmp_path, monkeypatch) -> Path:
    """A copy of the trained project as the current directory."""
    root = tmp_path / "proj"
    shutil.copytree(trained, root)
    monkeypatch.chdir(root)
    monkeypatch.delenv(project.ENV, raising=False)
    return root


def test_listed_resolved_and_round_tripped(proj, tmp_path, monkeypatch):
    assert "tiny_cnn" in model_names()
    assert describe("tiny_cnn") == "Tiny CNN on 8x8 digits"
    src = get_source("tiny_cnn")
    assert (src.name, src.family, src.metric) == ("tiny_cnn", "custom", "top1")
    assert sorted(src.splits) == ["calib", "test", "train"]
    assert src.input_shape == (1, 8, 8) and src.splits["train"].x.dtype == np.float32
    spec = source_spec(src)
    assert spec == f"tiny_cnn?project={proj / 'optim.toml'}"
    a, b = src.build(), src.build()
    assert a is not b and not a.training  # a fresh model in eval mode on every call
    x = torch.from_numpy(src.splits["test"].x)
    with torch.no_grad():
        acc = float((a(x).argmax(1).numpy() == src.splits["test"].y).mean())
    assert acc > 0.8  # the trained weights were loaded, not a random init
    monkeypatch.chdir(tmp_path)  # a worker or a launched run elsewhere: the spec still resolves
    assert "tiny_cnn" not in model_names()
    again = get_source(spec)
    assert source_spec(again) == spec and again.name == "tiny_cnn"


def test_project_file_from_env(proj, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(project.ENV, str(proj / "optim.toml"))
    assert "tiny_cnn" in model_names()
    assert get_source("tiny_cnn").meta["spec"].endswith(f"project={proj / 'optim.toml'}")
    monkeypatch.setenv(project.ENV, str(tmp_path / "missing.toml"))
    with pytest.raises(ValueError, match=r"`\$OPTIM_PROJECT` must name an existing project file"):
        model_names()


def test_command_line_spec_round_trips(proj, tmp_path, monkeypatch, capsys):
    w, d = proj / "weights" / "tiny.safetensors", proj / "data" / "digits.npz"
    spec = project.spec("mymodels:build", "weights/tiny.safetensors", "data/digits.npz")
    assert spec == f"mymodels:build?root={proj}&weights={w}&data={d}"
    src = get_source(spec)
    assert src.name == "mymodels:build" and source_spec(src) == spec
    monkeypatch.chdir(tmp_path)
    assert source_spec(get_source(spec)) == spec  # absolute: any folder resolves it
    monkeypatch.chdir(proj)
    argv = ["profile", "--model", "mymodels:build", "--weights", str(w), "--data", str(d)]
    assert main(argv) == 0
    assert "params" in capsys.readouterr().out
    assert main(["profile", "--model", "digits_cnn", "--weights", str(w)]) == 2
    assert (
        "`--weights` and `--data` go with a `module:callable` --model, but got 'digits_cnn'"
        in (capsys.readouterr().err)
    )
    with pytest.raises(ValueError, match=r"model 'mymodels:build': `data` \(an .npz"):
        get_source("mymodels:build")


def test_onnx_entry(proj):
    from onnx import save

    from optim.artifact import export_onnx

    src = get_source("tiny_cnn")
    save(export_onnx(src.build(), src.example), proj / "tiny.onnx")
    toml = TOML + '\n[models.tiny_onnx]\nonnx = "tiny.onnx"\ndata = "data/digits.npz"\n'
    (proj / "optim.toml").write_text(toml)
    assert model_names()[-2:] == ["tiny_cnn", "tiny_onnx"]
    onnx_src = get_source("tiny_onnx")
    assert onnx_src.onnx_path is not None and onnx_src.name == "tiny_onnx"
    assert source_spec(onnx_src) == f"tiny_onnx?project={proj / 'optim.toml'}"


@pytest.mark.slow
def test_sweep_of_torch_stage_techniques(proj, fresh_store):
    """Every torch-stage technique runs on the engineer's model as on a sample: rows, no errors."""
    plans = [
        (StructuredPrune(0.5), FineTune(1), Int8()),
        (LowRank(0.5),),
        (QAT(4, epochs=1), Quantize(4)),
        (GradualPrune(0.5, steps=2),),
        (Distill(0.5, epochs=2),),
    ]
    run_id = sw.sweep("tiny_cnn", plans, sw.Settings(min_seconds=0.05, jobs=1), store=fresh_store)
    assert fresh_store.run(run_id)["spec"]["model"] == f"tiny_cnn?project={proj / 'optim.toml'}"
    df = fresh_store.results(run_id)
    assert len(df) == len(plans) + 1
    assert df["error"].isna().all(), df["error"].dropna().tolist()
    assert df["accuracy"].notna().all() and (df["latency_p50_ms"] > 0).all()
    base = df.loc[df["label"] == "fp32 baseline"].iloc[0]
    assert base["accuracy"] > 0.8
    pruned = df.loc[df["label"].str.startswith("channels -50%")].iloc[0]
    assert pruned["size_bytes"] < base["size_bytes"] and "int8" in pruned["precision"]


@pytest.mark.slow
def test_models_page_lists_the_project_model(proj, fresh_store):
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.session_state["model"] = "tiny_cnn"
    at.query_params["page"] = "models"
    at.run()
    assert not at.exception, at.exception
    picker = at.selectbox(key="model")
    assert "tiny_cnn — Tiny CNN on 8x8 digits" in picker.options  # (shown as name — description)
    assert picker.value == "tiny_cnn"
    table = at.dataframe[0].value
    row = table.loc[table["model"] == "tiny_cnn"].iloc[0]
    assert row["description"] == "Tiny CNN on 8x8 digits"
    params = sum(p.numel() for p in get_source("tiny_cnn").build().parameters())
    assert at.metric[0].value == f"{params:,}"  # its profile was taken: the Parameters metric


# ------------------------------------------------------------------ bad entries: one line each


def _bad(root: Path, entry: str, monkeypatch) -> str:
    """The one-line error of resolving model ``bad`` given by ``entry`` (a [models.bad] body)."""
    _write(root, toml=f"[models.bad]\n{entry}\n")
    monkeypatch.chdir(root)
    monkeypatch.delenv(project.ENV, raising=False)
    with pytest.raises(ValueError) as info:
        get_source("bad")
    assert "\n" not in str(info.value)
    return str(info.value)


OK = 'weights = "weights/tiny.safetensors"\ndata = "data/digits.npz"'


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        (f'build = "nomodule:build"\n{OK}',
         r"^model 'bad': `build` must name an importable module, but importing 'nomodule' "
         r"from '.*' failed \(ModuleNotFoundError: No module named 'nomodule'\)$"),
        (f'build = "mymodels:nothing"\n{OK}',
         r"^model 'bad': `build` must name a callable of module 'mymodels' \(.*mymodels.py\), "
         r"but 'nothing' is missing$"),
        (f'build = "mymodels:NOT_CALLABLE"\n{OK}', r"but 'NOT_CALLABLE' is int$"),
        (f'build = "mymodels:not_a_model"\n{OK}',
         r"^model 'bad': `build` must return a torch.nn.Module, but 'mymodels:not_a_model' "
         r"returned dict$"),
        (f'build = "mymodels:broken"\n{OK}',
         r"^model 'bad': `build` 'mymodels:broken' raised RuntimeError: no GPU here$"),
        (f'build = "mymodels"\n{OK}',
         r"^model 'bad': `build` is 'module:callable' must hold, but got \{'build': 'mymodels'"),
        (f'build = "mymodels:build"\nonnx = "m.onnx"\n{OK}',
         r"^model 'bad': exactly one of `build` and `onnx` is set must hold"),
        ('build = "mymodels:build"', r"^model 'bad': `data` \(an .npz\) is set must hold"),
        (f'build = "mymodels:build"\n{OK}\nweight = "w"',
         r"^model 'bad': the keys are \['build', .*\], but got 'weight'$"),
        (f'build = "mymodels:build"\n{OK}\ntrain_shift = "1"',
         r"^model 'bad': `train_shift` must be a int, but got '1'$"),
        (f'build = "mymodels:build"\n{OK}\nfamily = "transfomer"',
         r"^model 'bad': `family` in \('custom', 'cnn', .*\) must hold, but got \{.*'family': "
         r"'transfomer'\}$"),
        ('build = "mymodels:build"\ndata = "data/none.npz"',
         r"^model 'bad': `data` must name an existing file, but got '.*data/none.npz'$"),
    ],
)  # fmt: skip
def test_bad_entry_is_one_line(tmp_path, monkeypatch, entry, rule):
    message = _bad(tmp_path, entry, monkeypatch)
    assert re.search(rule, message), message


def _state(root: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(root / "weights" / "tiny.safetensors")


@pytest.mark.parametrize(
    ("edit", "rule"),
    [
        (lambda s: {k: v for k, v in s.items() if k != "7.bias"},
         r"`weights` must hold every key of the model's state dict, but '7.bias' is missing "
         r"\(1 missing in tiny.safetensors\)$"),
        (lambda s: s | {"head.weight": torch.zeros(2)},
         r"`weights` must hold only the model's keys, but 'head.weight' is unexpected"),
        (lambda s: s | {"7.weight": torch.zeros(10, 32)},
         r"`weights` must match the model's shapes, but '7.weight' is \(10, 32\) in "
         r"tiny.safetensors and \(10, 64\) in the model$"),
    ],
)  # fmt: skip
def test_weights_that_do_not_fit(tmp_path, monkeypatch, edit, rule):
    _write(tmp_path)
    save_file(edit(_state(tmp_path)), tmp_path / "weights" / "tiny.safetensors")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^model 'tiny_cnn': " + rule):
        get_source("tiny_cnn")


@pytest.mark.parametrize(
    ("drop", "extra", "rule"),
    [
        ("x_calib", {}, r"^model 'tiny_cnn': `data`: 'digits.npz' must hold `x_calib`"),
        ("y_train", {}, r"`data` must hold one input array per split and labels `y_train` with "
                        r"`x_train`, but digits.npz has \['x_calib', 'x_test', 'x_train', "
                        r"'y_test'\]$"),
        ("y_test", {"y_test": np.full(300, 12)},
         r"`data`'s test labels must be < 10 \(the model's outputs\), but got max label 12$"),
        ("x_test", {"x_test": np.zeros((300, 1, 7, 7), np.float32)},
         r"^model 'tiny_cnn': `data`: `x_train.shape\[1:\]` must equal x_test's in 'digits.npz'"),
    ],
)  # fmt: skip
def test_data_that_does_not_fit(tmp_path, monkeypatch, drop, extra, rule):
    _write(tmp_path)
    arrays = {k: v for k, v in _digits().items() if k != drop} | extra
    np.savez(tmp_path / "data" / "digits.npz", **arrays)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=rule):
        get_source("tiny_cnn")


def test_project_file_that_is_not_toml(tmp_path, monkeypatch):
    (tmp_path / "optim.toml").write_text("[models.a\nbuild = 1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^project file '.*optim.toml' is not readable TOML"):
        model_names()
    (tmp_path / "optim.toml").write_text('[models."my model"]\nbuild = "m:f"')
    with pytest.raises(ValueError, match=r"^model 'my model' in '.*': a \[models.NAME\] table"):
        model_names()
