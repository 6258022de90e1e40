"""ONNX Runtime session settings by name, for what a row records and a scenario asks for.

Plain names and text only (no onnxruntime import): the dashboard reads them on every page.
:data:`optim.measure.LEVELS` maps the names to ONNX Runtime's levels.
"""

from __future__ import annotations

LEVEL_NAMES = ("all", "extended", "basic", "disabled")  # ORT's graph optimization levels


def check_level(level: str) -> None:
    """Raise ValueError unless ``level`` names one of :data:`LEVEL_NAMES`.

    Example:
        >>> check_level("basic")
    """
    if level not in LEVEL_NAMES:
        raise ValueError(f"`level` must be one of {LEVEL_NAMES}, but got level={level!r}")


def session_text(threads: int, level: str = "all") -> str:
    """The ORT session settings a latency was measured with, as a row records them.

    Example:
        >>> session_text(2)
        'ORT graph optimizations: all; 2 intra-op threads, 1 inter-op, sequential'
    """
    return (f"ORT graph optimizations: {level}; {threads} intra-op thread{'s' * (threads > 1)}, "
            "1 inter-op, sequential")  # fmt: skip
