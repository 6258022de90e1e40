"""Run ONNX Runtime's quantization tools, which read and write files, on in-memory models."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader

# ORT's quantizers log every node they skip at INFO; keep the terminal for results
logging.getLogger("onnxruntime").setLevel(logging.WARNING)
logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)


def through_files(model: onnx.ModelProto, fn: Callable[[Path, Path], None]) -> onnx.ModelProto:
    """Save ``model``, call ``fn(input_path, output_path)``, load the output (:func:`quiet`)."""
    with quiet(), tempfile.TemporaryDirectory(prefix="optim-ort-") as d:
        src, dst = Path(d) / "in.onnx", Path(d) / "out.onnx"
        onnx.save(model, src)
        fn(src, dst)
        return onnx.load(dst)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """ORT's quantizers log to the root logger and print calibration progress: mute both."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


class ArrayReader(CalibrationDataReader):
    """Feeds the calibration split in batches (the exported graphs have a dynamic batch axis)."""

    def __init__(self, input_name: str, x: np.ndarray | Mapping[str, np.ndarray], batch: int = 50):
        # equal batches: ORT's histogram calibrators stack per-batch outputs and fail on a
        # shorter last batch, so use the largest divisor of len(x) up to ``batch``
        from optim.measure import batch_of, count, take

        arrays = dict(x) if isinstance(x, Mapping) else {input_name: x}
        n, batch = count(arrays), batch_of(arrays, batch)
        batch = max(d for d in range(1, min(batch, n) + 1) if n % d == 0)
        self.batches = [
            {k: np.asarray(v) for k, v in take(arrays, slice(i, i + batch)).items()}
            for i in range(0, n, batch)
        ]
        self.i = 0

    def get_next(self) -> dict | None:
        self.i += 1
        return self.batches[self.i - 1] if self.i <= len(self.batches) else None

    def rewind(self) -> None:
        self.i = 0


def input_name(model: onnx.ModelProto) -> str:
    inits = {t.name for t in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in inits)
