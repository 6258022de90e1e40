"""A run's lease: one driver executes a run at a time.

:func:`hold` claims the run's lease in the store (:meth:`optim.store.Store.claim`, atomic) or
refuses, renews it from a heartbeat thread while the driver works, and releases it at the end.
A driver killed with SIGKILL stops renewing: its lease expires after ``ttl_s`` and the run can
be resumed by another driver (as Optuna's heartbeat fails a dead worker's trial); on the dead
driver's own host, where its pid shows it is gone, at once. The heartbeat also carries a
Cancel made on another machine (the run's status in the store) to its driver.

Example:
    >>> with hold(Store(), 3):  # doctest: +SKIP
    ...     ...  # execute run 3
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import uuid
from collections.abc import Iterator

from optim.store import Store, lease_live, pid_alive, this_host

TTL_S = 30.0  # a dead driver's run can be resumed this long after its last heartbeat


def owner() -> str:
    """This driver's name in a lease: host, pid and a random tag (pids are reused)."""
    return f"{this_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def held(run: dict) -> bool:
    """Whether ``run`` (a :meth:`~optim.store.Store.run` dict) has a live lease: unexpired, and
    not a driver of this host whose pid is gone."""
    return lease_live(run) and not _dead_here(run["lease_owner"])


def _dead_here(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    return host == this_host() and pid.isdigit() and not pid_alive(int(pid))


def _free_if_dead(store: Store, run_id: int) -> None:
    """Release a lease whose driver ran on this host and is dead (SIGKILL, a crash): a local
    resume need not wait for it to expire. Of two drivers doing this at once, the store's
    atomic claim still lets one win."""
    holder = store.run(run_id).get("lease_owner") or ""
    if holder and _dead_here(holder):
        store.release(run_id, holder)


def _interrupt() -> None:
    """Stop this driver as the dashboard's Cancel does on its own machine: SIGTERM, which a
    driver (``python -m optim.runs``, the CLI) turns into "cancelled". A process that handles
    no SIGTERM (a library caller) is left alone."""
    if callable(signal.getsignal(signal.SIGTERM)):
        os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def hold(store: Store, run_id: int, ttl_s: float | None = None) -> Iterator[str]:
    """Hold run ``run_id``'s lease for the ``with`` block; ValueError if another driver holds
    it. Yields this driver's owner name."""
    ttl_s = float(os.environ.get("OPTIM_LEASE_TTL_S", TTL_S)) if ttl_s is None else ttl_s
    me = owner()
    _free_if_dead(store, run_id)
    if not store.claim(run_id, me, ttl_s=ttl_s):
        run = store.run(run_id)
        raise ValueError(
            f"run {run_id} is being executed by another driver ({run.get('lease_owner')}, "
            f"lease until {run['lease_until']:%H:%M:%S} UTC): wait for it, or cancel it"
        )
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(ttl_s / 3):
            try:
                store.heartbeat(run_id, me, ttl_s=ttl_s)
                if store.run(run_id)["status"] == "cancelled":
                    _interrupt()  # cancelled from another machine: no signal reaches here
                    return
            except Exception:  # noqa: BLE001 - a store hiccup: the next beat tries again
                pass

    thread = threading.Thread(target=beat, name=f"lease-{run_id}", daemon=True)
    thread.start()
    try:
        yield me
    finally:
        stop.set()
        thread.join()
        store.release(run_id, me)
