"""Techniques, one per file; importing this package registers them all."""

from optim.techniques.dynamic_int8 import DynamicInt8
from optim.techniques.int4_matmul import Int4MatMul
from optim.techniques.int8 import Int8
from optim.techniques.prune import Prune
from optim.techniques.quantize import Quantize
from optim.techniques.structured import StructuredPrune

__all__ = ["DynamicInt8", "Int4MatMul", "Int8", "Prune", "Quantize", "StructuredPrune"]
