"""What an autoscaling cluster can grow to, read from its launcher config, to size the pool.

A cluster started by `ray up` keeps its config on the head node as
`~/ray_bootstrap_config.yaml` (`$E5RAY_CLUSTER_CONFIG` names another file), and `ray job
submit` runs the driver there. With workers at `min_workers: 0` the nodes alive when a job
starts say nothing of the cluster's size; the config's `available_node_types` (resources x
`max_workers`, under the global `max_workers`) do. The pool is then sized for the whole
cluster and its pending actors make the autoscaler add the nodes.

Invariants: a node type counts only with the CPU/GPU it states in `resources` (the
launcher fills them in from the instance type on AWS; a type whose resources are unknown
adds nothing); the head counts as one node of its type; no config, or one that cannot be
read, means "unknown" (None), never a guess.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"  # where the cluster launcher leaves it on the head


@dataclass(frozen=True)
class NodeType:
    name: str
    cpus: int
    gpus: float
    max_workers: int


@dataclass(frozen=True)
class DeclaredCluster:
    types: tuple[NodeType, ...]
    max_workers: int  # the global cap on worker nodes of all types

    def nodes(self) -> list[NodeType]:
        """One entry per node the cluster may have at most: the head once, then workers of
        each type up to its max, the types that offer the most first, under the global cap."""
        head = [t for t in self.types if t.name == "ray.head.default"]
        workers = sorted((t for t in self.types if t not in head), key=lambda t: (t.gpus, t.cpus), reverse=True)
        out = list(head[:1])
        budget = self.max_workers
        for node_type in workers:
            take = min(node_type.max_workers, budget)
            out += [node_type] * take
            budget -= take
        return out


def read_declared_cluster(path: str | os.PathLike[str] | None = None) -> DeclaredCluster | None:
    """The launcher config at `path` (default: $E5RAY_CLUSTER_CONFIG, else the head's
    bootstrap config), or None when there is none or it does not parse."""
    import yaml

    target = Path(os.path.expanduser(str(path or os.environ.get("E5RAY_CLUSTER_CONFIG") or BOOTSTRAP_CONFIG)))
    try:
        data = yaml.safe_load(target.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return declared_from_config(data) if isinstance(data, dict) else None


def declared_from_config(data: dict[str, Any]) -> DeclaredCluster | None:
    node_types = data.get("available_node_types")
    if not isinstance(node_types, dict):
        return None
    types = []
    for name, spec in node_types.items():
        resources = (spec or {}).get("resources") or {}
        is_head = name == data.get("head_node_type", "ray.head.default")
        types.append(
            NodeType(
                "ray.head.default" if is_head else str(name),
                int(resources.get("CPU", 0)),
                float(resources.get("GPU", 0)),
                0 if is_head else int((spec or {}).get("max_workers", 0)),
            )
        )
    total = data.get("max_workers")
    cap = int(total) if isinstance(total, int) else sum(t.max_workers for t in types)
    return DeclaredCluster(tuple(types), cap)


def declared_actors(cluster: DeclaredCluster, device: str, threads: int, gpus_per_actor: float) -> int:
    """Actors the cluster fits at its largest: per node, its CPUs // threads (CPU) or its
    GPUs // gpus_per_actor (GPU)."""
    if device == "gpu":
        return sum(int(n.gpus / gpus_per_actor + 1e-9) for n in cluster.nodes())
    return sum(n.cpus // threads for n in cluster.nodes())
