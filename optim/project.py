"""Models an engineer registers in code they own: a project file, or a ``module:callable`` spec.

The project file is ``optim.toml`` in the current directory, or the file ``$OPTIM_PROJECT``
names. Each ``[models.NAME]`` table is one model (paths relative to the file)::

    [models.my_resnet]
    build = "mypkg.models:build"   # a callable returning a torch.nn.Module
    weights = "weights/my_resnet.safetensors"   # optional
    data = "data/digits.npz"       # x_calib, x_test, y_test, x_train, y_train (optim.data)
    description = "ResNet-ish on digits"

``onnx = "m.onnx"`` instead of ``build`` registers an ONNX file (it goes through the intake).
Optional ``family`` (``"cnn"``, ``"transformer"``, ...: Distill's student and the layers
StructuredPrune keeps go by it) and ``train_shift`` mean what a sample's fields mean
(:class:`~optim.sources.ModelSource`).

This imports the engineer's own code on purpose, as pytest imports ``conftest.py``: the project
file's folder goes first on ``sys.path``. Weights are read with ``safetensors`` only, data with
``allow_pickle=False``. Specs cross processes (sweep workers, a run the dashboard launches from
another folder), so they carry absolute paths (:attr:`Entry.spec`, ``source.meta["spec"]``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

import numpy as np

from optim.sources import ModelSource, Split, onnx_source

PROJECT_FILE = "optim.toml"
ENV = "OPTIM_PROJECT"
TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")  # module.path:callable
NAME = re.compile(r"[A-Za-z0-9][\w.-]*")  # no ':', '?', '&' or spaces: names go into specs
KEYS = {"build": str, "onnx": str, "weights": str, "data": str, "description": str,
        "family": str, "train_shift": int}  # fmt: skip
FAMILIES = ("custom", "cnn", "mlp", "transformer", "resnet", "mobilenet")  # the samples' too
_OURS: dict[str, Path] = {}  # top-level module -> the project folder it was imported from


@dataclass(frozen=True)
class Entry:
    """One registered model, paths absolute: exactly one of ``build`` and ``onnx`` is set."""

    name: str
    data: Path
    root: Path  # the folder ``build``'s module is imported from
    build: str | None = None  # "module:callable"
    onnx: Path | None = None
    weights: Path | None = None
    description: str = ""
    family: str = "custom"  # no sample's family: Distill builds its generic CNN / MLP student
    train_shift: int = 0
    project: Path | None = None  # the project file; None for a command-line model

    @property
    def spec(self) -> str:
        """``NAME?project=/abs/optim.toml``, or ``module:callable?root=..&weights=..&data=..``:
        what :func:`resolve` turns back into this entry in any process and folder."""
        if self.project is not None:
            return f"{self.name}?{_query(project=self.project)}"
        return f"{self.build}?{_query(root=self.root, weights=self.weights, data=self.data)}"


def _query(**paths: Path | None) -> str:
    kept = {k: str(v) for k, v in paths.items() if v is not None}
    return urlencode(kept, quote_via=quote, safe="/:")  # paths stay readable


def _stamp(*paths: Path | None) -> tuple:
    """Changes when a file does: cached sources live until someone edits their files."""
    return tuple((p.stat().st_mtime_ns, p.stat().st_size) if p else None for p in paths)


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def project_file() -> Path | None:
    """The project file in use: ``$OPTIM_PROJECT``, else ``./optim.toml``, else None."""
    if env := os.environ.get(ENV):
        if not Path(env).is_file():
            raise ValueError(f"`${ENV}` must name an existing project file, but got {env!r}")
        return Path(env).resolve()
    return Path(PROJECT_FILE).resolve() if Path(PROJECT_FILE).is_file() else None


def _tables(path: Path) -> dict[str, dict]:
    return _read(path, _stamp(path))


@functools.lru_cache(maxsize=8)
def _read(path: Path, stamp: tuple) -> dict[str, dict]:
    try:
        models = tomllib.loads(path.read_text()).get("models", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"project file {str(path)!r} is not readable TOML ({_why(e)})") from None
    if not isinstance(models, dict):
        raise ValueError(f"`models` in {str(path)!r} must be a table, but got {models!r:.60}")
    for name, table in models.items():
        if not NAME.fullmatch(name) or not isinstance(table, dict):
            raise ValueError(
                f"model {name!r} in {str(path)!r}: a [models.NAME] table whose NAME matches "
                f"{NAME.pattern!r} must hold, but got {type(table).__name__} {name!r}"
            )
    return models


def names() -> list[str]:
    """Names of the project file's models, in file order (none without a project file)."""
    path = project_file()
    return [] if path is None else list(_tables(path))


def describe(name: str) -> str:
    """A one-line description of the project file's model ``name``, without loading it."""
    path = project_file()
    tables = {} if path is None else _tables(path)
    if name not in tables:
        raise ValueError(f"unknown model {name!r}; the project file's models are {list(tables)}")
    t = tables[name]
    what = f"PyTorch {t['build']}" if "build" in t else f"ONNX {t.get('onnx')}"
    return " ".join(str(t.get("description") or f"{what} ({path.name})").split())


def spec(model: str, weights: str | Path | None = None, data: str | Path | None = None) -> str:
    """The spec of ``module:callable`` with its weights and data: paths made absolute, the
    current folder the one its module is imported from (``--model``, ``--weights``, ``--data``).

    Example:
        >>> spec("mypkg.models:build", "w.safetensors", "d.npz")  # doctest: +SKIP
        'mypkg.models:build?root=/home/me/proj&weights=/home/me/proj/w.safetensors&data=...'
    """
    if not TARGET.fullmatch(model):
        raise ValueError(
            f"`--weights` and `--data` go with a `module:callable` --model, but got {model!r}"
        )
    w, d = (None if p is None else Path(p).resolve() for p in (weights, data))
    return f"{model}?{_query(root=Path.cwd(), weights=w, data=d)}"


def resolve(spec: str) -> ModelSource | None:
    """The source ``spec`` names (a project model's name, or an :attr:`Entry.spec`), or None
    when it names no project or command-line model. It is built and checked once per spec
    against its weights and data (cached until one of its files changes).

    Raises:
        ValueError: one line naming the model, the key and the rule it breaks.

    Example:
        >>> resolve("my_resnet").meta["spec"]  # doctest: +SKIP
        'my_resnet?project=/home/me/proj/optim.toml'
    """
    base, _, query = spec.partition("?")
    args = dict(parse_qsl(query, keep_blank_values=True))
    if TARGET.fullmatch(base):
        entry = _command_line(base, args)
    elif "project" in args or base in names():
        path = Path(args.pop("project")) if "project" in args else project_file()
        tables = _tables(path) if path.is_file() else {}
        if base not in tables or args:
            raise ValueError(
                f"model {base!r} must be in project file {str(path)!r} and its spec take only "
                f"`project`, but got {spec!r}"
            )
        entry = _entry(base, tables[base], path)
    else:
        return None
    return _source(entry, _stamp(entry.data, entry.weights, entry.onnx))


def _file(name: str, key: str, path: Path) -> Path:
    if not path.is_file():
        raise ValueError(
            f"model {name!r}: `{key}` must name an existing file, but got {str(path)!r}"
        )
    return path.resolve()


def _command_line(target: str, args: dict[str, str]) -> Entry:
    if unknown := sorted(set(args) - {"root", "weights", "data"}):
        raise ValueError(
            f"model {target!r}: the spec's keys are root, weights and data, but got {unknown[0]!r}"
        )
    if not args.get("data"):
        raise ValueError(f"model {target!r}: `data` (an .npz: `--data`) is required")
    root = Path(args.get("root") or Path.cwd()).resolve()
    paths = {k: _file(target, k, root / args[k]) for k in ("weights", "data") if args.get(k)}
    return Entry(name=target, root=root, build=target, **paths)


def _entry(name: str, table: dict, project: Path) -> Entry:
    """The project file's ``[models.name]`` table, checked key by key."""
    if unknown := sorted(set(table) - set(KEYS)):
        raise ValueError(f"model {name!r}: the keys are {list(KEYS)}, but got {unknown[0]!r}")
    for key, kind in KEYS.items():
        if key in table and type(table[key]) is not kind:
            raise ValueError(
                f"model {name!r}: `{key}` must be a {kind.__name__}, but got {table[key]!r:.60}"
            )
    rules = (
        (("build" in table) != ("onnx" in table), "exactly one of `build` and `onnx` is set"),
        ("data" in table, "`data` (an .npz) is set"),
        (TARGET.fullmatch(table.get("build", "m:f")), "`build` is 'module:callable'"),
        ("onnx" not in table or "weights" not in table, "`weights` go with `build`, not `onnx`"),
        (table.get("train_shift", 0) >= 0, "`train_shift >= 0`"),
        (table.get("family", "custom") in FAMILIES, f"`family` in {FAMILIES}"),
    )
    for ok, rule in rules:
        if not ok:
            shown = {k: v for k, v in table.items() if k != "description"}
            raise ValueError(f"model {name!r}: {rule} must hold, but got {shown}")
    root = project.parent
    paths = {k: _file(name, k, root / table[k]) for k in ("onnx", "weights", "data") if k in table}
    return Entry(
        name=name, root=root, build=table.get("build"), description=table.get("description", ""),
        family=table.get("family", "custom"), train_shift=table.get("train_shift", 0),
        project=project, **paths,
    )  # fmt: skip


@functools.lru_cache(maxsize=16)
def _source(entry: Entry, stamp: tuple) -> ModelSource:
    """The entry's source, its model built once and checked against its weights and data."""
    meta = {"spec": entry.spec}
    if entry.onnx is not None:
        src = onnx_source(entry.onnx, entry.data, name=entry.name)
        desc = entry.description or src.description
        return dataclasses.replace(src, description=desc, meta={**src.meta, **meta})
    splits = _splits(entry)
    build = functools.partial(_build, entry, _callable(entry))
    classes = _classes(entry, build(), splits["test"].x[:2])
    for part, s in splits.items():
        if s.y is not None and len(s.y) and int(s.y.max()) >= classes:
            raise ValueError(
                f"model {entry.name!r}: `data`'s {part} labels must be < {classes} (the model's "
                f"outputs), but got max label {int(s.y.max())}"
            )
    return ModelSource(
        name=entry.name, description=entry.description or f"PyTorch {entry.build}",
        splits=splits, build=build, metric="top1" if splits["test"].y is not None else "agreement",
        family=entry.family, train_shift=entry.train_shift, meta=meta,
    )  # fmt: skip


def _callable(entry: Entry) -> Callable[[], object]:
    """The entry's ``module:callable``, its module imported with ``entry.root`` first on the
    path (a module of the same name that another project's folder gave is dropped first)."""
    module, _, attr = entry.build.partition(":")
    top = module.split(".")[0]
    if str(entry.root) in sys.path:  # first, even if an earlier project's folder came later
        sys.path.remove(str(entry.root))
    sys.path.insert(0, str(entry.root))
    if _OURS.get(top, entry.root) != entry.root:
        for key in [k for k in sys.modules if k == top or k.startswith(f"{top}.")]:
            del sys.modules[key]
    importlib.invalidate_caches()  # files written since the last import are found
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - whatever the engineer's module raises: one line
        raise ValueError(
            f"model {entry.name!r}: `build` must name an importable module, but importing "
            f"{module!r} from {str(entry.root)!r} failed ({_why(e)})"
        ) from None
    if Path(getattr(mod, "__file__", None) or "/").resolve().is_relative_to(entry.root):
        _OURS[top] = entry.root
    if not callable(fn := getattr(mod, attr, None)):
        raise ValueError(
            f"model {entry.name!r}: `build` must name a callable of module {module!r} "
            f"({getattr(mod, '__file__', None)}), but {attr!r} is "
            f"{'missing' if fn is None else type(fn).__name__}"
        )
    return fn


def _build(entry: Entry, fn: Callable[[], object]) -> object:
    """A fresh fp32 model in eval mode: ``fn()``, with ``entry.weights`` loaded."""
    import torch

    try:
        model = fn()
    except Exception as e:  # noqa: BLE001 - the engineer's code: one line naming the model
        raise ValueError(
            f"model {entry.name!r}: `build` {entry.build!r} raised {_why(e)}"
        ) from None
    if not isinstance(model, torch.nn.Module):
        raise ValueError(
            f"model {entry.name!r}: `build` must return a torch.nn.Module, but {entry.build!r} "
            f"returned {type(model).__name__}"
        )
    if entry.weights is not None:
        _load_weights_(entry, model)
    return model.float().eval()


def _load_weights_(entry: Entry, model: object) -> None:
    """Load ``entry.weights`` into ``model`` (safetensors, never pickle), keys checked first."""
    from safetensors.torch import load_file

    try:
        state = load_file(entry.weights)
    except Exception as e:  # noqa: BLE001 - any parse failure is the same user error
        raise ValueError(
            f"model {entry.name!r}: `weights` must be a readable .safetensors file, but "
            f"{entry.weights.name} is not ({_why(e)})"
        ) from None
    own, tied = model.state_dict(), {}  # tied tensors: a file holds one name of each group
    for k, t in own.items():
        tied.setdefault(t.data_ptr() if t.numel() else k, set()).add(k)
    groups = {k: g for g in tied.values() for k in g}
    missing = [k for k in own if not groups[k] & state.keys()]
    unexpected = [k for k in state if k not in own]
    for keys, word, rule in ((missing, "missing", "hold every key of the model's state dict"),
                             (unexpected, "unexpected", "hold only the model's keys")):  # fmt: skip
        if keys:
            raise ValueError(
                f"model {entry.name!r}: `weights` must {rule}, but {keys[0]!r} is {word} "
                f"({len(keys)} {word} in {entry.weights.name})"
            )
    if bad := next((k for k, t in state.items() if t.shape != own[k].shape), None):
        raise ValueError(
            f"model {entry.name!r}: `weights` must match the model's shapes, but {bad!r} is "
            f"{tuple(state[bad].shape)} in {entry.weights.name} and {tuple(own[bad].shape)} "
            "in the model"
        )
    model.load_state_dict(state, strict=False)  # strict but for tied names, checked above


def _splits(entry: Entry) -> dict[str, Split]:
    """The entry's data (:func:`optim.data.load`: an ``.npz`` read with ``allow_pickle=False``,
    or one labeled set split into calib/test/train), inputs as float32."""
    from optim.data import load

    try:
        arrays = load(entry.data, train=True).arrays
    except ValueError as e:
        raise ValueError(f"model {entry.name!r}: `data`: {e}") from None
    named = next((k for k in arrays if "." in k), None)
    if named or ("x_train" in arrays) != ("y_train" in arrays):
        raise ValueError(
            f"model {entry.name!r}: `data` must hold one input array per split and labels "
            f"`y_train` with `x_train`, but {entry.data.name} has {sorted(arrays)}"
        )

    def split(s: str) -> Split:
        y = arrays.get(f"y_{s}")
        return Split(
            arrays[f"x_{s}"].astype(np.float32), None if y is None else y.astype(np.int64)
        )

    return {s: split(s) for s in ("calib", "test", "train") if f"x_{s}" in arrays}


def _classes(entry: Entry, model: object, x: np.ndarray) -> int:
    """The model's number of outputs per example; it must map a batch to (N, classes)."""
    import torch

    try:
        with torch.no_grad():
            out = model(torch.from_numpy(x.copy()))
    except Exception as e:  # noqa: BLE001 - the engineer's forward: one line naming the model
        raise ValueError(
            f"model {entry.name!r}: the model must run on the data's `x_test` (a batch of "
            f"shape {x.shape}), but it raised {_why(e)}"
        ) from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or len(out) != len(x):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"model {entry.name!r}: the model must return logits (N, classes), but got {got} "
            f"for a batch of shape {x.shape}"
        )
    return int(out.shape[1])
