"""The terms the dashboard and the report use, in plain words: one home for the glossary page,
the tooltips and presentation mode's wording.

Example:
    >>> tip("p50")[:34]
    'The median latency: half the calls'
"""

from __future__ import annotations

import re

TERMS: dict[str, str] = {
    "Accuracy floor": "The lowest accuracy you accept. Every config below it is out; among "
    "the rest the smallest (or fastest) one is recommended. Relative floors are a share of the "
    "unoptimized model's accuracy (99 % of baseline).",
    "Baseline": "Your model as it came in (fp32, nothing removed), measured exactly like every "
    "optimized config so that the two can be compared.",
    "p50": "The median latency: half the calls to the model took less than this, half more. "
    "Measured on this machine, one input at a time unless said otherwise.",
    "p90": "The latency that 90 % of calls beat: how slow the slow calls are.",
    "CI": "Confidence interval: the range the true figure lies in with 95 % confidence, given "
    "how many test examples or timing rounds were measured. Two configs whose intervals "
    "overlap may not really differ.",
    "Within noise": "The difference to the baseline is smaller than the measurement can tell "
    "apart (a paired statistical test says it could be chance), so no better or worse is "
    "claimed.",
    "Pareto frontier": "The configs that nothing else beats on every count at once: no other "
    "config is both at least as accurate and smaller (or faster). Everything off the frontier "
    "is a worse deal than some config on it.",
    "Quantization": "Storing (and sometimes computing) the model's numbers with fewer bits: "
    "8-bit or 4-bit integers instead of 32-bit floats. Smaller files, often faster, at some "
    "accuracy cost.",
    "fp32": "32-bit floating point: the full-precision numbers a model is trained in.",
    "fp16": "16-bit floating point: half the bytes of fp32, nearly the same accuracy.",
    "int8": "8-bit integers. Static int8 computes in int8 with ranges measured beforehand on "
    "calibration data; dynamic int8 measures activation ranges on each call; weight-only int8 "
    "stores the weights in 8 bits but computes in fp32 (smaller, not faster).",
    "Static": "Static int8: activation ranges are measured once on calibration data, so every "
    "call runs in integer arithmetic.",
    "Dynamic": "Dynamic int8: activation ranges are measured on each call; only the weights are "
    "quantized beforehand. No calibration data needed; usually helps Linear/MatMul layers.",
    "Weight-only": "The weights are stored in few bits and expanded back to fp32 when the model "
    "runs: the file shrinks, the arithmetic does not change.",
    "int4 / int3 / int2": "4-, 3- or 2-bit weights: 8 to 16 times smaller than fp32, stored as "
    "standard ONNX integer weights; accuracy drops faster as bits go down.",
    "Per-channel": "Each output channel of a layer gets its own scale when quantized, so a "
    "channel with small weights is not rounded away by one with large ones. More accurate than "
    "per-tensor (one scale for the whole layer), a few bytes larger.",
    "Per-tensor": "One quantization scale for a whole layer's weights: simplest, least accurate.",
    "QDQ": "QuantizeLinear / DequantizeLinear: the standard ONNX way of marking where values "
    "are integers. ONNX Runtime fuses the pairs into integer kernels.",
    "Calibration": "A separate slice of the data used to measure value ranges for int8 and to "
    "rank layers; never used to report accuracy.",
    "Test split": "The held-out examples every accuracy figure is measured on; no training or "
    "calibration ever sees them.",
    "Pruning": "Setting weights to zero. Unstructured pruning zeroes single weights (sparsity 50 "
    "% = half of them); structured pruning removes whole channels, so the layers get narrower "
    "and the model really computes less.",
    "Structured pruning": "Removing whole channels or neurons, so the model gets smaller in "
    "shape and faster on any hardware (it then usually needs a short fine-tune).",
    "Sparsity": "The share of weights that are zero.",
    "Distillation": "Training a smaller student model to imitate the original's outputs.",
    "Fine-tune": "A short extra training on the training split to win back accuracy lost to "
    "pruning or quantization.",
    "QAT": "Quantization-aware training: fine-tuning with the rounding simulated, so the model "
    "learns to live with fewer bits.",
    "Low-rank": "Replacing a big weight matrix by the product of two thin ones (a truncated "
    "SVD): fewer numbers, similar function.",
    "Mixed precision": "Different bit-widths per layer: sensitive layers keep more bits.",
    "Sensitivity": "How much accuracy a model loses when one layer alone is quantized or "
    "pruned: it shows which layers to treat gently.",
    "zstd": "Zstandard, a fast compression format: the download size is the .onnx file "
    "compressed with it (what a user downloads; the model runs from the uncompressed file).",
    "ONNX": "An open file format for trained models that many runtimes load; the files this "
    "tool writes are standard ONNX that stock ONNX Runtime runs.",
    "MatMulNBits": "ONNX Runtime's kernel for MatMul with 4-bit weights; by default it rounds "
    "the activations to int8 too, which rows that use it say.",
    "Interleaved timing": "All configs of a run are timed together, round after round with the "
    "baseline in every round, so a busy machine slows them all alike.",
    "Agreement": "How often the optimized model gives the same top answer as the original, for "
    "models without labels.",
    "Fidelity": "How close the optimized model's outputs are to the original's (cosine "
    "similarity), for models whose output is not a class (embeddings, regression, detection).",
    "Budget": "An upper limit on size or latency; a config over it is not recommended.",
}

_KEYS = {k.lower(): k for k in TERMS}


def tip(term: str) -> str:
    """The plain-words explanation of ``term`` (case-insensitive); ``KeyError`` for an unknown
    term, so a typo in a tooltip fails a test instead of showing nothing."""
    return TERMS[_KEYS[term.lower()]]


# Presentation mode's wording: what a config label says, for people who do not read code.
_PLAIN = (
    (r"\bint8 static/channel\b", "8-bit integer math, per channel"),
    (r"\bint8 static/tensor\b", "8-bit integer math, per tensor"),
    (r"\bint8 dynamic\b", "8-bit integer math (ranges per call)"),
    (r"\bint(\d) w/channel asym\b", r"\1-bit weights, per channel, asymmetric"),
    (r"\bint(\d) w/channel\b", r"\1-bit weights, per channel"),
    (r"\bint(\d) w/tensor\b", r"\1-bit weights, per layer"),
    (r"\bfp16 w\b", "16-bit float weights"),
    (r"\bfp32\b", "original (32-bit floats)"),
    (r"\bprune (\d+)%", r"\1 % of weights zeroed"),
    (r"\bchannels -(\d+)%", r"\1 % of channels removed"),
    (r"\bdistill (\d+)% width", r"a student \1 % as wide"),
    (r"\blow-rank (\d+)%", r"weight matrices at \1 % rank"),
    (r"\bqat\b", "quantization-aware training,"),
    (r"\bmixed\b", "mixed:"),
)


def plain_label(label: str) -> str:
    """A config label in words: ``plain_label("prune 50% + int4 w/channel")`` is
    ``"50 % of weights zeroed + 4-bit weights, per channel"``."""
    for pattern, words in _PLAIN:
        label = re.sub(pattern, words, label)
    return label
