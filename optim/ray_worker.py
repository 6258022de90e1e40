"""What runs inside a Ray worker process for :class:`optim.ray_executor.RayExecutor`: the
pool's initializer once per process and initargs, the call itself, and the files it wrote
returned to the driver (bounded by the executor's limit) when OPTIM_HOME is not shared.

Driver paths under OPTIM_HOME are mapped to this worker's scratch folder (``OPTIM_RAY_SCRATCH``,
default ``$TMPDIR/optim-ray``), and the rows that come back say where they were built.

Example:
    >>> value, files = task(key, [init_ref], fn, args, {}, home, limit, {})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

MAX_MB_ENV = "OPTIM_RAY_MAX_ARTIFACT_MB"
SHARED_ENV = "OPTIM_SHARED_HOME"  # "1": OPTIM_HOME is one shared folder on every node


_STATE: dict = {}


def task(key: str, init: list, fn: Callable, args: tuple, kwargs: dict, home: str | None,
          limit: int, env: dict) -> tuple[Any, list]:  # fmt: skip
    """Run ``fn(*args, **kwargs)`` in this worker, the initializer first if this process has
    not run it with these initargs; returns (value, files for the driver: (path, bytes))."""
    import ray

    os.environ.update(env)
    scratch = _scratch() if home else None
    if _STATE.get("key") != key:
        initializer, initargs = ray.get(init[0])
        initializer(*_local(initargs, home, scratch))
        _STATE["key"] = key
    cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))
    with _threads(cpus):
        value = fn(*_local(args, home, scratch), **kwargs)
    return _ship(value, home, scratch, limit)


@contextlib.contextmanager
def _threads(n: int):
    """Torch's intra-op threads for a task given ``n`` CPUs (training), restored after."""
    if n <= 1:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _scratch() -> str:
    """This worker's folder for what it builds when the driver's OPTIM_HOME is not shared."""
    root = os.environ.get("OPTIM_RAY_SCRATCH") or Path(tempfile.gettempdir()) / "optim-ray"
    return str(Path(root) / f"uid{os.getuid()}")


def _local(values: tuple, home: str | None, scratch: str | None) -> tuple:
    """``values`` with driver paths under OPTIM_HOME moved under this worker's scratch folder."""
    if home is None:
        return values
    return tuple(scratch + v[len(home):] if isinstance(v, str) and v.startswith(home) else v
                 for v in values)  # fmt: skip


def _ship(value: Any, home: str | None, scratch: str | None, limit: int) -> tuple[Any, list]:
    """The task's value with its rows' node recorded and, when OPTIM_HOME is not shared, the
    files of their artifacts (then removed here) for the driver, refused beyond ``limit``."""
    from optim.rows import Row

    if isinstance(value, tuple):
        parts = [_ship(v, home, scratch, limit) for v in value]
        return tuple(v for v, _ in parts), [f for _, fs in parts for f in fs]
    if not isinstance(value, Row):
        return value, []
    row = replace(value, extra={**value.extra, **node_info()})
    if home is None or not row.artifact or not row.artifact.startswith(scratch):
        return row, []
    folder = Path(row.artifact)
    driver = home + row.artifact[len(scratch) :]
    found = sorted(p for p in folder.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in found)
    if size > limit:
        shutil.rmtree(folder, ignore_errors=True)
        return _too_large(row, size, limit), []
    files = [(str(Path(driver) / p.relative_to(folder)), p.read_bytes()) for p in found]
    shutil.rmtree(folder, ignore_errors=True)
    return replace(row, artifact=driver), files


class ArtifactTooLarge(ValueError):
    """An artifact over the bytes a Ray worker may return to the driver."""


def _too_large(row, size: int, limit: int):
    from optim import plan as plans
    from optim.rows import Row

    why = ArtifactTooLarge(
        f"`artifact bytes <= {limit}` ({MAX_MB_ENV}) must hold to return it from a Ray "
        f"worker, but got {size} bytes; or share OPTIM_HOME across nodes ({SHARED_ENV}=1)"
    )
    failed = Row.failed(plans.from_json(json.loads(row.key)), why)
    return replace(failed, extra={**failed.extra, **node_info()})


def node_info() -> dict:
    """Where this Ray worker runs: ``built_on`` (host, IP, Ray node) and ``built_cpu``."""
    import ray

    from optim.measure import machine

    here = machine("built")
    if ray.is_initialized():
        node = ray.get_runtime_context().get_node_id()[:8]
        here["built_on"] += f" {ray.util.get_node_ip_address()} node {node}"
    return here
