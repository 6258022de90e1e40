"""Bit-packing, the packed artifact format and its round trip through ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

from optim import measure
from optim.artifact import Encoding, Graph, pack, pack_bits, unpack, unpack_bits, write_artifact
from optim.build import build
from optim.sources import sample_source
from optim.techniques import Int8, Prune, Quantize


@pytest.mark.parametrize("bits", range(1, 9))
def test_bit_packing_round_trip_is_exact(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, size=1003)
    packed = pack_bits(codes, bits)
    assert packed.nbytes == -(-1003 * bits // 8)  # ceil: no byte wasted
    assert np.array_equal(unpack_bits(packed, bits, 1003), codes)


def test_pack_bits_hand_computed():
    # codes 1, 2, 3 at 2 bits, little-endian: 01 | 10 << 2 | 11 << 4 = 0b111001 = 57
    assert pack_bits(np.array([1, 2, 3]), 2).tolist() == [57]
    assert pack_bits(np.array([5, 1]), 3).tolist() == [0b001101]


def test_pack_bits_rejects_out_of_range_codes():
    with pytest.raises(ValueError, match=r"codes must be < 2\*\*bits=4, but got max=4"):
        pack_bits(np.array([4]), 2)
    with pytest.raises(ValueError, match=r"`1 <= bits <= 8` must hold, but got bits=9"):
        pack_bits(np.array([1]), 9)


def test_encoding_dequantize_applies_mask():
    enc = Encoding(np.array([[0, 3], [2, 1]], np.uint8), 2, np.float32(0.5), np.uint8(2),
                   mask=np.array([[True, False], [True, True]]))  # fmt: skip
    assert enc.dequantize().tolist() == [[-1.0, 0.0], [0.0, -0.5]]


def _outputs(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    return measure.predict(measure.session(model_bytes), x)


@pytest.mark.parametrize(
    "plan",
    [(), (Quantize(3),), (Prune(0.6), Quantize(5, "tensor", symmetric=False)), (Prune(0.5),),
     (Quantize(16),), (Prune(0.5), Int8())],
    ids=lambda p: "+".join(c.label for c in p) or "fp32",
)  # fmt: skip
def test_artifact_loads_back_and_reproduces_evaluated_outputs(plan, tmp_path):
    source = sample_source("digits_cnn")
    graph, _ = build(source, plan)
    sizes = write_artifact(graph, tmp_path)
    assert sizes["size_bytes"] == (tmp_path / "model.optim").stat().st_size
    evaluated = _outputs((tmp_path / "model.onnx").read_bytes(), source.splits["test"].x)
    reloaded = unpack((tmp_path / "model.optim").read_bytes())
    assert np.array_equal(
        _outputs(reloaded.model.SerializeToString(), source.splits["test"].x), evaluated
    )
    # and the in-memory graph that was packed holds the very same weights
    for a, b in zip(graph.model.graph.initializer, reloaded.model.graph.initializer, strict=False):
        assert np.array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b)), a.name


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("sparsity", [0.0, 0.5])
def test_size_strictly_falls_as_bits_fall(sparsity, compress, tmp_path):
    source = sample_source("digits_cnn")
    prune = (Prune(sparsity),) if sparsity else ()
    sizes = []
    for bits in (16, 8, 7, 6, 5, 4, 3, 2):
        graph, _ = build(source, prune + (Quantize(bits),))
        sizes.append(len(pack(graph, compress=compress)))
    assert all(a > b for a, b in zip(sizes, sizes[1:], strict=False)), sizes


def test_unpack_rejects_garbage():
    with pytest.raises(ValueError, match="not a packed optim artifact"):
        unpack(b"definitely not an artifact")


def test_packed_file_is_far_smaller_than_fp32(tmp_path):
    source = sample_source("digits_cnn")
    base, _ = build(source, ())
    small, _ = build(source, (Prune(0.5), Quantize(4)))
    assert len(pack(small)) * 6 < base.model.ByteSize()
    assert isinstance(small, Graph) and "4-bit" in small.stored and "50% sparse" in small.stored
