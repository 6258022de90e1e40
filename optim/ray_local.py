"""Several Ray nodes on this machine, all on 127.0.0.1: a cluster for tests and benchmarks.

Each node is a raylet of its own with its own CPUs and custom resources, joined to one head, as
``ray start --head`` plus ``ray start --address`` would make on two machines. (``ray start``
itself cannot keep a joining node on loopback: it swaps 127.0.0.1 for the machine's routable
address before joining, so the nodes are started through Ray's own multi-node test harness,
``ray.cluster_utils.Cluster``, which takes the node IP as given.) Every process the cluster
starts is stopped when the block ends, or when this process dies (Ray's reaper).

Example:
    >>> nodes = [{"num_cpus": 1}, {"num_cpus": 1, "resources": {"node2": 1}}]
    >>> with local_cluster(nodes) as address:  # doctest: +SKIP
    ...     connect(address)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence

from optim import ray_executor


@contextlib.contextmanager
def local_cluster(nodes: Sequence[dict]) -> Iterator[str]:
    """Start one Ray node per entry of ``nodes`` (``ray._private.parameter.RayParams``
    arguments such as ``num_cpus`` and ``resources``; the first is the head) on 127.0.0.1,
    without dashboard; yields the head's address; stops them all (and disconnects this
    process) at the end."""
    if not nodes:
        raise ValueError("`len(nodes) >= 1` must hold, but got nodes=[]")
    ray_executor._quiet_env(loopback=True)
    import ray
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="optim-rayc-", dir="/tmp")
    old_tmpdir = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = tmp  # Ray notes the cluster's address there, not in /tmp/ray
    common = {"node_ip_address": "127.0.0.1", "temp_dir": f"{tmp}/ray", "num_cpus": 1,
              "object_store_memory": 256 << 20}  # fmt: skip
    cluster = Cluster(initialize_head=True,
                      head_node_args={**common, "include_dashboard": False, **nodes[0]})  # fmt: skip
    try:
        for args in nodes[1:]:
            cluster.add_node(**{**common, **args})
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        ray_executor._SESSION.clear()
        cluster.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
        if old_tmpdir is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = old_tmpdir
