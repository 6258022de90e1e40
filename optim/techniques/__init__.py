"""Techniques, one per file; importing this package registers them all."""

from optim.techniques.bias_correct import BiasCorrect
from optim.techniques.distill import Distill
from optim.techniques.dynamic_int8 import DynamicInt8
from optim.techniques.equalize import Equalize
from optim.techniques.finetune import FineTune
from optim.techniques.gptq import GPTQ
from optim.techniques.gradual import GradualPrune
from optim.techniques.int4_matmul import Int4MatMul
from optim.techniques.int8 import Int8
from optim.techniques.int8_auto import Int8Auto
from optim.techniques.int8_fallback import Int8Fallback
from optim.techniques.lowrank import LowRank
from optim.techniques.mixed import MixedQuantize
from optim.techniques.prune import Prune
from optim.techniques.qat import QAT
from optim.techniques.quantize import Quantize
from optim.techniques.smoothquant import SmoothQuant
from optim.techniques.structured import StructuredPrune

__all__ = [
    "QAT",
    "BiasCorrect",
    "Distill",
    "DynamicInt8",
    "Equalize",
    "FineTune",
    "GPTQ",
    "GradualPrune",
    "Int4MatMul",
    "Int8",
    "Int8Auto",
    "Int8Fallback",
    "LowRank",
    "MixedQuantize",
    "Prune",
    "Quantize",
    "SmoothQuant",
    "StructuredPrune",
]
