"""Model sources: where a model comes from and how it is judged.

A source bundles a fp32 model (a torch builder, or an ONNX file), its data splits and a metric.
The splits are disjoint: ``train`` fits the model, ``calib`` calibrates quantization, ``test`` is
held out and used only for the accuracy the dashboard shows.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

METRICS = ("top1", "agreement")


@dataclass(frozen=True)
class Split:
    """One data split: inputs ``x`` (N, *input_shape) float32 and labels ``y`` (N,) int64 or None."""

    x: np.ndarray
    y: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(
                f"`len(x) == len(y)` must hold, but got len(x)={len(self.x)}, len(y)={len(self.y)}"
            )

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class ModelSource:
    """A model plus the data that judges it.

    Exactly one of ``build`` (returns a trained fp32 ``torch.nn.Module`` in eval mode, a fresh copy
    on every call) and ``onnx_path`` is set. ``metric`` is ``"top1"`` when the test split has
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

    def __post_init__(self) -> None:
        if (self.build is None) == (self.onnx_path is None):
            raise ValueError(
                f"exactly one of `build` and `onnx_path` must be set, but got "
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
        """Shape of one example, without the batch axis."""
        return tuple(self.splits["test"].x.shape[1:])

    @property
    def example(self) -> np.ndarray:
        """One test example with a batch axis of 1: (1, *input_shape)."""
        return self.splits["test"].x[:1]


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
    onnx_path: str | Path, data_path: str | Path, name: str | None = None
) -> ModelSource:
    """A bring-your-own model: an ONNX file plus an ``.npz`` with its data. The file goes
    through the intake (:func:`optim.intake.intake`: safety checks, normalization, proof), and
    the normalized file is the model every config starts from; ``meta["intake"]`` is its report.

    The ``.npz`` holds ``x_test`` and ``x_calib`` (float32, batch first) and optionally ``y_test``
    (int labels); without labels the metric is agreement with the baseline's predictions. It is
    read with ``allow_pickle=False``: an uploaded file is never unpickled.

    Example:
        >>> src = onnx_source("model.onnx", "data.npz")  # doctest: +SKIP
    """
    onnx_path, data_path = Path(onnx_path), Path(data_path)
    for p in (onnx_path, data_path):
        if not p.is_file():
            raise ValueError(f"file {str(p)!r} does not exist")
    try:
        with np.load(data_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # noqa: BLE001 - any parse failure is the same user error
        raise ValueError(f"{str(data_path)!r} is not a readable .npz file ({e})") from None
    for key in ("x_test", "x_calib"):
        if key not in arrays:
            raise ValueError(
                f"{str(data_path)!r} must hold array {key!r}, but has {sorted(arrays)}"
            )
    check_arrays(arrays, data_path.name)
    y = arrays.get("y_test")
    splits = {
        "calib": Split(arrays["x_calib"].astype(np.float32)),
        "test": Split(
            arrays["x_test"].astype(np.float32), None if y is None else y.astype(np.int64)
        ),
    }
    from optim.intake import intake

    normalized, report = intake(onnx_path, splits["test"].x)  # the baseline, proven equal
    if y is not None:
        check_labels(y, normalized, splits["test"].x[:1], data_path.name)
    return ModelSource(
        name=name or onnx_path.stem,
        description=f"ONNX file {onnx_path.name} with data {data_path.name}",
        splits=splits,
        onnx_path=normalized,
        metric="top1" if y is not None else "agreement",
        family="onnx",
        meta={
            "onnx_path": str(onnx_path),
            "data_path": str(data_path),
            "intake": dataclasses.asdict(report),
        },  # fmt: skip
    )


def check_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
    """One line naming the array and the rule for data a model cannot be judged on."""
    for key in ("x_test", "x_calib"):
        a = arrays[key]
        if a.dtype.kind not in "iuf":
            raise ValueError(f"`{key}` in {where} must hold real numbers, but got dtype {a.dtype}")
        if a.ndim < 2 or len(a) == 0:
            raise ValueError(
                f"`{key}` in {where} must be a non-empty batch of examples (ndim >= 2, "
                f"len >= 1), but got shape {a.shape}"
            )
        if (bad := int(np.size(a) - np.count_nonzero(np.isfinite(a)))) > 0:
            raise ValueError(f"`{key}` in {where} must be finite, but {bad:,} values are NaN/inf")
    if arrays["x_calib"].shape[1:] != arrays["x_test"].shape[1:]:
        raise ValueError(
            f"`x_calib.shape[1:] == x_test.shape[1:]` must hold in {where}, but got "
            f"{arrays['x_calib'].shape[1:]} and {arrays['x_test'].shape[1:]}"
        )
    if (y := arrays.get("y_test")) is not None:
        if y.dtype.kind not in "iu" or y.ndim != 1:
            raise ValueError(
                f"`y_test` in {where} must be integer class labels of shape (N,), but got "
                f"dtype {y.dtype}, shape {y.shape}"
            )
        if len(y) != len(arrays["x_test"]) or (len(y) and int(y.min()) < 0):
            raise ValueError(
                f"`y_test` in {where} must give one label >= 0 per test example, but got "
                f"{len(y)} labels (min {int(y.min()) if len(y) else 'n/a'}) for "
                f"{len(arrays['x_test'])} examples"
            )


def check_labels(y: np.ndarray, model: Path, x: np.ndarray, where: str) -> None:
    """Labels must name one of the model's output classes."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    classes = int(sess.run(None, {sess.get_inputs()[0].name: x})[0].shape[-1])
    if int(y.max()) >= classes:
        raise ValueError(
            f"`y_test` in {where} must be < {classes} (the model's output classes), but got "
            f"max label {int(y.max())}"
        )


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

    if spec.endswith(".npz") and ".onnx:" in spec:
        onnx_path, data_path = spec.rsplit(":", 1)
        return onnx_source(onnx_path, data_path)
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
    if source.build is not None:
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
    shape = tuple(sess.get_inputs()[0].shape[1:])
    if len(shape) != len(source.input_shape) or any(
        isinstance(d, int) and d != e for d, e in zip(shape, source.input_shape, strict=False)
    ):
        raise ValueError(
            f"the data's input shape {source.input_shape} must match the ONNX input {shape}"
        )
