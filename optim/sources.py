"""Model sources: where a model comes from and how it is judged.

A source bundles a fp32 model (a torch builder, or an ONNX file), its data splits and a metric.
The splits are disjoint: ``train`` fits the model, ``calib`` calibrates quantization, ``test`` is
held out and used only for the accuracy the dashboard shows.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import numpy as np

DATA_SUFFIXES = (".npz", ".zip", ".csv", ".parquet")
METRICS = ("top1", "agreement", "fidelity")  # optim.metrics


@dataclass(frozen=True)
class Split:
    """One data split: inputs ``x`` (N, *input_shape), one array or, for a model with several
    inputs, one array per input name (each in the graph input's dtype, e.g. int64 token ids),
    and labels ``y`` (N,) int64 or None."""

    x: np.ndarray | Mapping[str, np.ndarray]
    y: np.ndarray | None = None

    def __post_init__(self) -> None:
        batched = {k: v for k, v in self.x.items() if not _is_fixed(v)} if isinstance(
            self.x, Mapping) else {}  # fmt: skip
        if isinstance(self.x, Mapping) and len({len(v) for v in batched.values()}) != 1:
            sizes = {k: len(v) for k, v in batched.items()}
            raise ValueError(f"every input must have the same number of examples, but got {sizes}")
        if self.y is not None and len(self.y) != len(self):
            raise ValueError(
                f"`len(x) == len(y)` must hold, but got len(x)={len(self)}, len(y)={len(self.y)}"
            )

    def __len__(self) -> int:
        if isinstance(self.x, Mapping):
            return len(next(v for v in self.x.values() if not _is_fixed(v)))
        return len(self.x)


def _is_fixed(a) -> bool:
    """A :class:`optim.measure.Fixed` input (fed whole to every call), without importing ORT."""
    return type(a).__name__ == "Fixed"


@dataclass(frozen=True)
class ModelSource:
    """A model plus the data that judges it.

    ``build`` returns a trained fp32 ``torch.nn.Module`` in eval mode, a fresh copy on every
    call; ``onnx_path`` is an ONNX model's normalized file, the baseline. An ONNX source with a
    training split may have both: ``build`` is then its faithful onnx2torch conversion
    (:mod:`optim.convert`), for the torch-stage techniques. ``metric`` is ``"top1"`` when the test split has
    labels, else ``"agreement"`` (agreement with the baseline's own predictions).
    """

    name: str
    description: str
    splits: dict[str, Split]
    build: Callable[[], object] | None = None
    onnx_path: Path | None = None
    metric: str = "top1"
    family: str = ""
    # max random translation (pixels) of the images the model was trained with; a distilled
    # student, trained from scratch, is augmented the same way. 0: none (uploaded models)
    train_shift: int = 0
    meta: dict = field(default_factory=dict)
    # the output that is the prediction (None: the first); for ONNX models with several outputs
    output: str | None = None

    def __post_init__(self) -> None:
        if self.build is None and self.onnx_path is None:
            raise ValueError(
                f"`build` or `onnx_path` must be set, but got "
                f"build={self.build!r}, onnx_path={self.onnx_path!r}"
            )
        if self.metric not in METRICS:
            raise ValueError(f"`metric` must be one of {METRICS}, but got metric={self.metric!r}")
        for name in ("calib", "test"):
            if name not in self.splits:
                raise ValueError(f"split {name!r} is required, but got splits={list(self.splits)}")
        if self.metric == "top1" and self.splits["test"].y is None:
            raise ValueError(f"metric 'top1' needs test labels, but source {self.name!r} has none")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, without the batch axis (of the first input, if several)."""
        x = self.splits["test"].x
        if isinstance(x, Mapping):
            return tuple(next(v for v in x.values() if not _is_fixed(v)).shape[1:])
        return tuple(x.shape[1:])

    @property
    def inputs(self) -> dict[str, tuple[int, ...]] | None:
        """Input name -> shape of one example, for a model with several named inputs."""
        x = self.splits["test"].x
        return {k: tuple(v.shape[1:]) for k, v in x.items()} if isinstance(x, Mapping) else None

    @property
    def example(self) -> np.ndarray | dict[str, np.ndarray]:
        """One test example with a batch axis of 1: (1, *input_shape), per input if several."""
        x = self.splits["test"].x
        if isinstance(x, Mapping):
            return {k: v if _is_fixed(v) else v[:1] for k, v in x.items()}
        return x[:1]


def sample_names() -> list[str]:
    """Names of the bundled sample models."""
    import sample_models

    return list(sample_models.SAMPLES)


@functools.lru_cache(maxsize=16)
def sample_source(name: str) -> ModelSource:
    """The bundled sample model ``name`` as a source (weights trained by ``sample_models``)."""
    import sample_models

    if name not in sample_models.SAMPLES:
        raise ValueError(
            f"unknown model {name!r}; `model` must be one of {sorted(sample_models.SAMPLES)}"
        )
    spec = sample_models.SAMPLES[name]
    return ModelSource(
        name=name,
        description=spec.description,
        splits=sample_models.load_splits(name),
        build=functools.partial(sample_models.build, name),
        metric="top1",
        family=spec.family,
        train_shift=spec.train.shift,
    )


def onnx_source(
    onnx_path: str | Path,
    data_path: str | Path,
    name: str | None = None,
    output: str | None = None,
    metric: str | None = None,
) -> ModelSource:
    """A bring-your-own model: an ONNX file plus its data. The file goes through the intake
    (:func:`optim.intake.intake`: safety checks, normalization, proof), and the normalized file
    is the model every config starts from; ``meta["intake"]`` is its report.

    The data (an ``.npz``, or what :func:`optim.data.load` reads: an image-folder ``.zip``, a
    ``.csv`` or ``.parquet``) holds ``x_test`` and ``x_calib`` (batch first; for a model with
    several inputs one array per input, ``x_test.<input name>`` and ``x_calib.<input name>``),
    optionally ``y_test`` (int labels) and ``x_train``/``y_train``. An ``.npz`` is read with
    ``allow_pickle=False``: an uploaded file is never unpickled. Arrays are cast to the graph
    inputs' types (float32, or int64 token ids).

    Args:
        output: the output that is the prediction (default: the first).
        metric: ``top1`` (needs ``y_test``), ``agreement`` (top-1 agreement with the
            baseline) or ``fidelity`` (cosine similarity to the baseline's outputs). Default:
            ``top1`` with labels, else ``agreement`` for class scores (N, classes), else
            ``fidelity``.

    Example:
        >>> src = onnx_source("model.onnx", "data.npz")  # doctest: +SKIP
    """
    from optim.intake import intake, safety_check

    onnx_path, data_path = Path(onnx_path), Path(data_path)
    for p in (onnx_path, data_path):
        if not p.is_file():
            raise ValueError(f"file {str(p)!r} does not exist")
    arrays, split = read_data(data_path)
    types = _input_types(safety_check(onnx_path))
    splits = {}
    for s in ("calib", "test", "train"):
        if s != "train" or any(k.split(".")[0] == "x_train" for k in arrays):
            x = _inputs(arrays, s, types, data_path.name)
            n = len(Split(x))
            splits[s] = Split(x, _labels(arrays, s, n, data_path.name))
    check_arrays(splits, data_path.name)
    normalized, report = intake(onnx_path, splits["test"].x)  # the baseline, proven equal
    shape = _output_shape(normalized, splits["test"].x, output)
    y = splits["test"].y
    if metric is None:
        classifier = len(shape) == 1 or (len(shape) == 2 and shape[1] > 1)
        metric = "top1" if y is not None else "agreement" if classifier else "fidelity"
    if metric in ("top1", "agreement") and len(shape) > 2:
        raise ValueError(
            f"metric {metric!r} needs class scores (N, classes) or labels (N,), but output "
            f"{output or 'the first'} has shape {shape}: use metric 'fidelity'"
        )
    if y is not None and metric == "top1" and len(shape) == 2 and int(y.max()) >= shape[1]:
        raise ValueError(
            f"`y_test` in {data_path.name} must be < {shape[1]} (the model's output classes), "
            f"but got max label {int(y.max())}"
        )
    build, torch_why = None, "it is an ONNX file"  # with no training split: nothing to convert for
    train = splits.get("train")
    if train is not None and train.y is not None and metric == "top1":
        if isinstance(train.x, Mapping) or train.x.dtype != np.float32:
            torch_why = "it is an ONNX file with several or non-float inputs (no conversion)"
        else:
            from optim.convert import torch_of

            build, torch_why = torch_of(normalized, splits["test"].x)
    spec = f"{onnx_path}:{data_path}"
    options = {k: v for k, v in (("output", output), ("metric", metric)) if v}
    return ModelSource(
        name=name or onnx_path.stem,
        description=f"ONNX file {onnx_path.name} with data {data_path.name}",
        splits=splits, onnx_path=normalized, build=build, metric=metric, family="onnx",
        output=output,
        meta={
            "onnx_path": str(onnx_path), "data_path": str(data_path),
            "spec": spec + ("?" + urlencode(options) if options else ""),
            "intake": dataclasses.asdict(report), "torch": torch_why or "onnx2torch conversion",
            "split": split,
        },
    )  # fmt: skip


def read_data(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays of a data file in the ``.npz`` key contract (see :func:`onnx_source`), read by
    :func:`optim.data.load` with its archive checks (an ``.npz`` is a zip too), and how they
    were split (recorded with every run)."""
    from optim.data import load

    loaded = load(path)
    return loaded.arrays, loaded.split


def data_record(source: ModelSource) -> dict:
    """What a run records of its data: each split's size, and how one labeled set was split."""
    return {
        "splits": {k: len(v) for k, v in source.splits.items()},
        "split": source.meta.get("split", "the sample's own deterministic split"),
    }


_NP_TYPES = {1: np.float32, 10: np.float16, 11: np.float64, 6: np.int32, 7: np.int64, 9: np.bool_}


def _input_types(model) -> dict[str, type]:
    """Graph input name -> numpy dtype (inputs that are initializers are not inputs)."""
    inits = {t.name for t in model.graph.initializer}
    return {
        i.name: _NP_TYPES.get(i.type.tensor_type.elem_type, np.float32)
        for i in model.graph.input
        if i.name not in inits
    }


def _inputs(arrays: dict, split: str, types: dict[str, type], where: str):
    """Split ``split``'s inputs: ``x_<split>`` for one input, ``x_<split>.<name>`` per input,
    plus the inputs fed whole to every call, ``x_fixed.<name>`` (a state, a sample rate)."""
    from optim.measure import fixed

    key = f"x_{split}"
    named = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{key}.")}
    fixed_ = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("x_fixed.")}
    if len(types) > 1 or named or fixed_:
        if sorted({*named, *fixed_}) != sorted(types) or set(named) & set(fixed_):
            raise ValueError(
                f"{where} must hold one array per graph input {sorted(types)}, as "
                f"`{key}.<input>` or `x_fixed.<input>`, but has {sorted(arrays)}"
            )
        out = {n: _cast(named[n], types[n], f"{key}.{n}", where) for n in named}
        return out | {
            n: fixed(np.asarray(a).astype(types[n], copy=False)) for n, a in fixed_.items()
        }
    if key not in arrays:
        raise ValueError(f"{where} must hold array {key!r}, but has {sorted(arrays)}")
    return _cast(arrays[key], next(iter(types.values()), np.float32), key, where)


def _cast(a: np.ndarray, dtype: type, key: str, where: str) -> np.ndarray:
    if a.dtype.kind not in "iufb":
        raise ValueError(f"`{key}` in {where} must hold real numbers, but got dtype {a.dtype}")
    if a.ndim < 2 or len(a) == 0:
        raise ValueError(
            f"`{key}` in {where} must be a non-empty batch of examples (ndim >= 2, len >= 1), "
            f"but got shape {a.shape}"
        )
    if np.dtype(dtype).kind in "iu" and a.dtype.kind == "f":
        if np.isfinite(a).all() and not np.array_equal(a, np.round(a)):
            raise ValueError(
                f"`{key}` in {where} must hold integers (token ids), but has fractions"
            )
    if np.dtype(dtype).kind in "iub" and a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"`{key}` in {where} must be finite, but has NaN/inf")
    return a.astype(dtype, copy=False)


def _output_shape(model: Path, x, output: str | None) -> tuple[int, ...]:
    """The shape of the chosen output on the first test examples (refusing unknown names)."""
    import onnxruntime as ort

    from optim.measure import predict, take

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return tuple(predict(sess, take(x, slice(0, 2)), output=output).shape)


def check_arrays(splits: dict[str, Split] | dict[str, np.ndarray], where: str) -> None:
    """One line naming the array and the rule for data a model cannot be judged on: ``splits``,
    or the arrays of the ``.npz`` contract (``x_test``, ``x_calib``, ``y_test``, ...)."""
    if any(isinstance(v, np.ndarray) for v in splits.values()):
        splits = _contract_splits(splits, where)
    for s, split in splits.items():
        arrays = split.x if isinstance(split.x, Mapping) else {"": split.x}
        for name, a in arrays.items():
            if _is_fixed(a):
                continue
            key = f"x_{s}" + (f".{name}" if name else "")
            if a.dtype.kind not in "iufb":
                raise ValueError(
                    f"`{key}` in {where} must hold real numbers, but got dtype {a.dtype}"
                )
            if a.ndim < 2 or len(a) == 0:
                raise ValueError(
                    f"`{key}` in {where} must be a non-empty batch of examples (ndim >= 2, "
                    f"len >= 1), but got shape {a.shape}"
                )
            if a.dtype.kind == "f" and (bad := int(a.size - np.count_nonzero(np.isfinite(a)))):
                raise ValueError(
                    f"`{key}` in {where} must be finite, but {bad:,} values are NaN/inf"
                )
            other = splits["test"].x
            other = other[name] if isinstance(other, Mapping) else other
            if a.shape[1:] != other.shape[1:]:
                raise ValueError(
                    f"`{key}.shape[1:] == x_test.shape[1:]` must hold in {where}, but got "
                    f"{a.shape[1:]} and {other.shape[1:]}"
                )
        if (y := split.y) is not None and len(y) and int(y.min()) < 0:
            raise ValueError(
                f"`y_{s}` in {where} must give one label >= 0 per {s} example, but got min "
                f"{int(y.min())}"
            )


def _contract_splits(arrays: dict[str, np.ndarray], where: str) -> dict[str, Split]:
    """Splits from single-input ``.npz`` contract arrays, labels checked on the way."""
    out = {}
    for s in ("test", "calib", "train"):
        if f"x_{s}" not in arrays:
            continue
        x = arrays[f"x_{s}"]
        out[s] = Split(x, _labels(arrays, s, len(x) if x.ndim else 0, where))
    return out


def _labels(arrays: dict[str, np.ndarray], split: str, n: int, where: str) -> np.ndarray | None:
    """``y_<split>`` as int64, after checking it is one integer label per example."""
    y = arrays.get(f"y_{split}")
    if y is not None and (y.dtype.kind not in "iu" or y.ndim != 1 or len(y) != n):
        raise ValueError(
            f"`y_{split}` in {where} must be integer class labels of shape (N,), but got "
            f"dtype {y.dtype}, shape {y.shape} for N={n} examples"
        )
    return None if y is None else y.astype(np.int64)


def model_names() -> list[str]:
    """Every model the dashboard's pickers list: the samples, the project file's models
    (:mod:`optim.project`), then the uploaded ones (:mod:`optim.uploads`)."""
    from optim import project, uploads

    return [*sample_names(), *project.names(), *uploads.names()]


def describe(name: str) -> str:
    """A one-line description of a listed model, without loading it (for pickers)."""
    import sample_models
    from optim import project, uploads

    if name in sample_models.SAMPLES:
        return sample_models.SAMPLES[name].description
    for where in (project, uploads):
        if name in where.names():
            return where.describe(name)
    raise ValueError(f"unknown model {name!r}; `model` must be one of {model_names()}")


def get_source(spec: str) -> ModelSource:
    """Resolve a model spec: a sample name, ``path/model.onnx:path/data.npz``, a model of the
    project file or a ``module:callable`` (:mod:`optim.project`), or an uploaded model's name
    (:mod:`optim.uploads`)."""
    from optim import project, uploads

    if ".onnx:" in spec and spec.split("?")[0].lower().endswith(DATA_SUFFIXES):
        where, _, query = spec.partition("?")
        onnx_path, data_path = where.rsplit(":", 1)
        options = dict(parse_qsl(query))
        if unknown := sorted(set(options) - {"output", "metric", "name"}):
            raise ValueError(f"model options must be output, metric or name, but got {unknown}")
        return onnx_source(onnx_path, data_path, **options)
    import sample_models

    if spec in sample_models.SAMPLES:
        return sample_source(spec)
    for where in (project, uploads):
        if (source := where.resolve(spec)) is not None:
            return source
    raise ValueError(f"unknown model {spec!r}; `model` must be one of {model_names()}")


def source_spec(source: ModelSource) -> str:
    """The string that :func:`get_source` turns back into ``source`` (to cross processes)."""
    if "spec" in source.meta:  # a project or uploaded model names its own spec
        return source.meta["spec"]
    if source.onnx_path is not None:
        return f"{source.meta['onnx_path']}:{source.meta['data_path']}"
    return source.name


def check(source: ModelSource) -> None:
    """Load the model once so that bad weights or a bad ONNX file fail before anything is written.

    Raises:
        ValueError: one line naming the file and what is wrong with it.
    """
    if source.onnx_path is None:
        source.build()
        return
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(source.onnx_path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - any load failure is the same user error
        reason = " ".join(str(e).split())[:200]
        raise ValueError(
            f"ONNX file {str(source.onnx_path)!r} cannot be loaded ({reason})"
        ) from None
    if source.inputs is not None:  # several named inputs: the intake ran them on the data
        return
    shape = tuple(sess.get_inputs()[0].shape[1:])
    if len(shape) != len(source.input_shape) or any(
        isinstance(d, int) and d != e for d, e in zip(shape, source.input_shape, strict=False)
    ):
        raise ValueError(
            f"the data's input shape {source.input_shape} must match the ONNX input {shape}"
        )
