"""Models an engineer registers in code they own (a project file, or ``module:callable``)."""

from __future__ import annotations

from optim.sources import ModelSource


def names() -> list[str]:
    """Names of the project file's models."""
    return []


def resolve(spec: str) -> ModelSource | None:
    """The source ``spec`` names, or None when it is not a project model."""
    return None


def describe(name: str) -> str:
    """A one-line description of the project file's model ``name``, without loading it."""
    raise ValueError(f"unknown model {name!r}")
