"""Models uploaded in the browser, kept under ``OPTIM_HOME`` by content hash."""

from __future__ import annotations

from optim.sources import ModelSource


def names() -> list[str]:
    """Names of the uploaded models."""
    return []


def resolve(spec: str) -> ModelSource | None:
    """The uploaded model named ``spec``, or None."""
    return None


def describe(name: str) -> str:
    """A one-line description of the uploaded model ``name``, without loading it."""
    raise ValueError(f"unknown model {name!r}")
