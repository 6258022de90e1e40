"""An ONNX model as a torch module (onnx2torch), so that the torch-stage techniques (fine-tune,
QAT, structured pruning, low-rank, distillation) can run on a model brought as an ONNX file
with training data.

The conversion is offered only when it is faithful: the converted module must reproduce the
normalized ONNX graph's outputs on test examples, and export back to ONNX the way every torch
config is shipped (:func:`optim.artifact.export_onnx`). Otherwise the reason says which failed.
The verdict is kept beside the intake's normalized file, so workers do not convert to decide.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

TOLERANCE = 1e-4  # max |torch - onnx| / max(1, max |onnx|) on the test examples


@functools.lru_cache(maxsize=4)
def _converted(path: str):
    import onnx
    from onnx2torch import convert

    return convert(onnx.load(path)).eval()


def module(path: str | Path):
    """A fresh torch module converted from the ONNX file at ``path`` (a copy: callers train it)."""
    return copy.deepcopy(_converted(str(path)))


def torch_of(path: Path, x: np.ndarray) -> tuple[Callable[[], object] | None, str | None]:
    """``(build, None)`` when the normalized ONNX file at ``path`` converts faithfully (see the
    module), ``build`` returning a fresh module per call; else ``(None, reason)``.

    Args:
        path: the intake's normalized file (one float input).
        x: test examples (N, *input_shape) to compare outputs on.
    """
    verdict_file = path.with_name("torch.json")
    if verdict_file.is_file():
        why = json.loads(verdict_file.read_text())["reason"]
    else:
        why = _check(path, x[:16])
        verdict_file.write_text(json.dumps({"reason": why}))
    return (None, why) if why else (functools.partial(module, str(path)), None)


def _check(path: Path, x: np.ndarray) -> str | None:
    import onnxruntime as ort
    import torch

    from optim.artifact import export_onnx

    try:
        net = module(path)
    except Exception as e:  # noqa: BLE001 - any converter failure is one reason
        return f"onnx2torch cannot convert it ({' '.join(str(e).split())[:120]})"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float64)
    try:
        with torch.no_grad():
            got = net(torch.from_numpy(np.ascontiguousarray(x)))
        got = (got[0] if isinstance(got, tuple | list) else got).numpy().astype(np.float64)
    except Exception as e:  # noqa: BLE001
        return f"its onnx2torch conversion does not run ({' '.join(str(e).split())[:120]})"
    rel = float(np.max(np.abs(got - want))) / max(1.0, float(np.max(np.abs(want))))
    if got.shape != want.shape or not rel <= TOLERANCE:
        return f"its onnx2torch conversion differs from the ONNX graph (relative {rel:.3g})"
    try:
        export_onnx(net, x[:1])
    except Exception:  # noqa: BLE001 - torch.export fails on data-dependent shapes
        return "its onnx2torch conversion does not export back to ONNX (data-dependent shapes)"
    return None
