"""Ray as the executor of a run's configs: each config is a Ray task (one CPU) on a cluster.

:class:`RayExecutor` is a ``concurrent.futures.Executor``, so the run life cycle drives it like
the local process pool (:data:`optim.pool.Factory`: ``factory(n_workers, initializer,
initargs)``): ``submit`` returns a future that resolves when the task finishes, and rows stream
into the store as they do. The pool's ``initializer`` runs once per Ray worker process and per
``initargs`` (keyed by their hash), not once per task: the baseline and the source are loaded
once per worker.

Artifacts: when ``OPTIM_HOME`` is the same folder on every node (``OPTIM_SHARED_HOME=1``, or
a Ray started here for the run), workers write into it. Otherwise a worker builds under a
scratch folder of its own and returns the files it wrote (at most ``OPTIM_RAY_MAX_ARTIFACT_MB``,
default 512; a larger artifact is a one-line failure row); the driver writes them where the
local pool would have, so the store never holds a path that exists only on a worker. Every row
built here says on which node (``built_on``, ``built_cpu``). Latency is measured later, by the
driver's timing phase, on one machine.

Networking: :func:`connect` joins ``OPTIM_RAY_ADDRESS`` or starts a Ray for the run on
127.0.0.1, without dashboard, usage statistics or log forwarding.

Example:
    >>> from optim.sweep import sweep, grid  # doctest: +SKIP
    >>> sweep("digits_cnn", grid(bits=(4, 8)), executor=ray_factory())  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

from optim.pool import WorkerDied
from optim.ray_worker import MAX_MB_ENV, SHARED_ENV

ADDRESS_ENV = "OPTIM_RAY_ADDRESS"  # host:port of a running cluster's head (``ray start --head``)

MAX_MB = 512  # a ResNet-50 in fp32 is ~100 MB; a worker returning more should share a disk
LOOPBACK = ("127.0.0.1", "localhost")
ROOT = Path(__file__).resolve().parents[1]  # the checkout workers import optim from


def _quiet_env(loopback: bool) -> None:
    """Environment Ray reads at import and start: no usage statistics; on loopback, node IP
    127.0.0.1 (Ray otherwise swaps 127.0.0.1 for the machine's routable address and its gRPC
    servers listen on every interface; with its single-machine switch off it keeps 127.0.0.1
    and they listen on loopback only)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if loopback:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def ray_address() -> str | None:
    """The Ray cluster runs go to when asked (``OPTIM_RAY_ADDRESS``), or None."""
    return os.environ.get(ADDRESS_ENV) or None


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` (``host:port``; None: a Ray started here) is this machine's loopback."""
    return address is None or address.rsplit(":", 1)[0] in LOOPBACK


def connect(address: str | None = None, num_cpus: int | None = None) -> dict:
    """Connect this process to Ray and return ``{"address", "started", "cpus", "nodes"}``.

    ``address`` (default ``OPTIM_RAY_ADDRESS``) names a running cluster's head; without one,
    a Ray is started for this process on 127.0.0.1 with ``num_cpus`` CPUs (default: all),
    stopped when the process exits. Either way workers import optim from this checkout.
    """
    address = address or ray_address()
    _quiet_env(is_loopback(address))
    import ray

    if not ray.is_initialized():
        common = dict(log_to_driver=False, logging_level="WARNING", namespace="optim",
                      runtime_env={"env_vars": _worker_env()})  # fmt: skip
        if address is None:
            # Ray turns token authentication on for a cluster it starts, and says so: not news
            logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
                logging.ERROR
            )
            tmp = os.environ["RAY_TMPDIR"] = _short_tmp()  # its address file too, not /tmp/ray
            atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # after Ray's own exit
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     _node_ip_address="127.0.0.1", _temp_dir=f"{tmp}/ray",
                     object_store_memory=512 << 20, **common)  # fmt: skip
        else:
            ray.init(address=address, **common)
        _SESSION.update(started=address is None)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    if is_loopback(address) and (bad := {n["NodeManagerAddress"] for n in nodes} - {"127.0.0.1"}):
        raise RuntimeError(f"Ray must run on 127.0.0.1 here, but nodes run on {sorted(bad)}")
    cpus = int(sum(n["Resources"].get("CPU", 0) for n in nodes))
    return {"address": address, "started": _SESSION.get("started", False), "cpus": cpus,
            "nodes": len(nodes)}  # fmt: skip


_SESSION: dict = {}  # started: whether connect() started the Ray this process is connected to


def disconnect() -> None:
    """Disconnect this process from Ray (a Ray it started stops)."""
    import ray

    ray.shutdown()
    _SESSION.clear()


def _worker_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0"}


def _short_tmp() -> str:
    # Ray's Unix sockets live under its temp dir: keep the path well under 107 characters
    return tempfile.mkdtemp(prefix="optim-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)


def max_bytes() -> int:
    """The most artifact bytes a worker may return to the driver (``OPTIM_RAY_MAX_ARTIFACT_MB``)."""
    text = os.environ.get(MAX_MB_ENV) or str(MAX_MB)
    try:
        mb = float(text)
    except ValueError:
        mb = -1.0
    if not mb > 0:
        raise ValueError(f"`{MAX_MB_ENV} > 0` (megabytes) must hold, but got {text!r}")
    return int(mb * (1 << 20))


class RayExecutor(Executor):
    """A ``concurrent.futures.Executor`` whose calls are Ray tasks.

    Args:
        initializer, initargs: run once in each Ray worker process before its first task with
            these initargs (as a process pool's initializer), not once per task.
        shared: whether ``OPTIM_HOME`` is one folder on every node (default: ``OPTIM_SHARED_HOME``
            is "1", or the Ray was started here). If not, artifacts come back to the driver.
        limit: artifact bytes a task may return (default :func:`max_bytes`).
        max_retries: Ray re-runs a task whose worker process or node died this many times.
        resources: ``resources(args) -> Ray options`` per task (e.g. more CPUs to train).
    """

    def __init__(self, initializer: Callable[..., None], initargs: tuple, *,
                 shared: bool | None = None, limit: int | None = None, max_retries: int = 1,
                 resources: Callable[[tuple], dict] | None = None) -> None:  # fmt: skip
        import cloudpickle
        import ray

        if not ray.is_initialized():
            connect()
        if shared is None:
            shared = os.environ.get(SHARED_ENV) == "1" or _SESSION.get("started", False)
        self._home = None if shared else str(_home())
        self._env = {"OPTIM_HOME": str(_home())} if shared else {}  # one folder, one name
        self._limit = max_bytes() if limit is None else limit
        self._retries = max_retries
        self._resources = resources
        self._key = hashlib.sha1(cloudpickle.dumps((initializer, initargs))).hexdigest()
        self._init = ray.put((initializer, initargs))  # once, fetched once per worker
        self._refs: list = []
        self._closed = False

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        opts = {"num_cpus": 1, "max_retries": self._retries, "retry_exceptions": False}
        opts |= self._resources(args) if self._resources else {}
        ref = (
            _remote()
            .options(**opts)
            .remote(self._key, [self._init], fn, args, kwargs, self._home, self._limit, self._env)
        )
        self._refs.append(ref)
        out: Future = Future()
        out.set_running_or_notify_cancel()
        ref.future().add_done_callback(lambda f: _settle(f, out, self._home, self._retries))
        return out

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; ``cancel_futures`` cancels the tasks not finished; ``wait`` waits
        for the rest. The Ray connection stays (a Ray started here stops with the process)."""
        import ray

        self._closed = True
        if cancel_futures:
            for ref in self._refs:
                ray.cancel(ref, force=False)
        if wait and self._refs:
            ray.wait(self._refs, num_returns=len(self._refs), fetch_local=False)
        self._refs = []


class RayFactory:
    """An executor factory (:data:`optim.pool.Factory`) on a Ray cluster: ``OPTIM_RAY_ADDRESS``
    (or ``address``), else a Ray started on 127.0.0.1 for the run with ``n_workers`` CPUs.

    Each config is a task of one CPU; one whose torch stage trains asks for ``train_cpus``
    (capped by the largest node). :meth:`capacity` is the cluster's CPUs: the run keeps that
    many configs in flight.

    Example:
        >>> runs.execute(store, run_id, executor=RayFactory())  # doctest: +SKIP
    """

    def __init__(self, address: str | None = None, *, shared: bool | None = None,
                 train_cpus: int = 1, max_retries: int = 1) -> None:  # fmt: skip
        if train_cpus < 1:
            raise ValueError(f"`train_cpus >= 1` must hold, but got train_cpus={train_cpus}")
        self.address = address or ray_address()
        self.shared, self.train_cpus, self.max_retries = shared, train_cpus, max_retries
        self.info: dict = {}

    def __call__(self, n_workers: int, initializer: Callable[..., None],
                 initargs: tuple) -> RayExecutor:  # fmt: skip
        self.info = connect(self.address, num_cpus=n_workers)
        return RayExecutor(initializer, initargs, shared=self.shared,
                           max_retries=self.max_retries, resources=self._resources)  # fmt: skip

    distributed = True  # a search runs its study on the workers (optim.search_workers)

    def shares_home(self) -> bool:
        """Whether workers write into the driver's OPTIM_HOME (shared, or all on this machine)."""
        connect(self.address)
        if self.shared is not None:
            return self.shared
        return os.environ.get(SHARED_ENV) == "1" or _SESSION.get("started", False)

    def capacity(self) -> int | None:
        """CPUs of the cluster at ``address`` (None for a Ray started per run: sized by it)."""
        return connect(self.address)["cpus"] if self.address else None

    def _resources(self, args: tuple) -> dict:
        """More CPUs for a config whose torch stage trains (its plan JSON is ``args[0]``)."""
        if self.train_cpus == 1 or not args or not isinstance(args[0], list):
            return {}
        from optim import plan as plans
        from optim.sweep import trains

        if not trains(plans.split(plans.from_json(args[0]))[0]):
            return {}
        import ray

        biggest = max(int(n["Resources"].get("CPU", 1)) for n in ray.nodes() if n["Alive"])
        return {"num_cpus": min(self.train_cpus, biggest)}


def _home() -> Path:
    from optim.store import home

    return home()


_REMOTE: list = []


def _remote():
    """The Ray remote function of every task (made once, after Ray is imported)."""
    if not _REMOTE:
        import ray

        from optim.ray_worker import task

        _REMOTE.append(ray.remote(task))
    return _REMOTE[0]


def _settle(done: Future, out: Future, home: str | None, retries: int) -> None:
    """Resolve ``out`` from the finished task: its value with its files written here, or the
    exception that ended it (a dead worker as :class:`WorkerDied`)."""
    import ray.exceptions as rex

    try:
        value, files = done.result()
        for path, data in files:
            from optim.artifact import write_atomic

            write_atomic(path, data)
        out.set_result(value)
    except rex.RayTaskError as e:  # the call itself raised: that exception, as if local
        cause = e.as_instanceof_cause()
        out.set_exception(cause if isinstance(cause, BaseException) else e)
    except rex.RayError as e:  # the worker process or its node died, every try
        why = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        out.set_exception(
            WorkerDied(f"its Ray worker died on each of {retries + 1} tries ({why})")
        )
    except BaseException as e:  # noqa: BLE001 - e.g. writing the files here failed
        out.set_exception(e)
