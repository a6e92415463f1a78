"""One big file beside small ones on a simulated cluster: how busy the job keeps its actors.

    python -m e5ray.bench scale big-file --model-path DEMO --rows 200000 --nodes 3 --unit-rows 10000

Writes one Parquet file of `--rows` rows in row groups of `--row-group-size` and five
500-row files beside it, then runs the job on a simulated cluster of `--nodes` nodes of 1 CPU
each (`ray.cluster_utils.Cluster`, on loopback, a temp dir of its own), one actor per node.
Measures the actors' utilisation: the units' busy seconds over (actors x the run's seconds),
with a per-actor timeline (`e5ray.bench.cluster.timeline`) of where the rest went: start-up,
gaps between tasks, and the tail after each actor's last task.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import ray
from ray.cluster_utils import Cluster

from e5ray.bench.cluster import timeline
from e5ray.bench.cluster.small_files import isolated_temp, timed_job, write_parquet


@contextmanager
def simulated_cluster(nodes: int) -> Iterator[None]:
    """`nodes` one-CPU Ray nodes on loopback in a temp dir of their own, this process their driver."""
    temp = isolated_temp()
    head = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "temp_dir": temp, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        import ray._private.services as services

        # ray.init would turn 127.0.0.1 into this machine's routable address, where nothing listens.
        services.resolve_ip_for_localhost = lambda host: host
        ray.init(address=cluster.address, logging_level=logging.WARNING, _node_ip_address="127.0.0.1")
        yield
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def write_big_file_corpus(inp: Path, rows: int, row_group_size: int) -> None:
    """The big file and five 500-row files beside it."""
    inp.mkdir()
    write_parquet(inp / "big.parquet", 0, rows, 1, row_group_size=row_group_size)
    for i in range(5):
        write_parquet(inp / f"small-{i}.parquet", 10_000_000 + 1000 * i, 500, 100 + i)


def check_output(out: Path, rows: int) -> dict[str, Any]:
    """verify's problems and whether every id is in the output once."""
    from e5ray.output.verify import verify_output
    from e5ray.store.filesystem import OutputDir

    ids = [
        i
        for f in sorted((out / "shards").glob("*.parquet"))
        for i in pq.read_table(f, columns=["id"])["id"].to_pylist()
    ]
    return {"verify_problems": verify_output(OutputDir(str(out))), "every_id_once": len(ids) == len(set(ids)) == rows}


def big_file(args: argparse.Namespace) -> dict[str, Any]:
    """The job on the big-file corpus over `args.nodes` actors; utilisation and the timeline."""
    load_at_start = round(os.getloadavg()[0], 2)
    work = Path(tempfile.mkdtemp(prefix="e5bf-"))
    write_big_file_corpus(work / "in", args.rows, args.row_group_size)
    events = str(work / "timeline.jsonl")
    sizing = {"unit_rows": args.unit_rows} if args.unit_rows else {}  # else the product's default
    with simulated_cluster(args.nodes):
        job_start = time.time()
        manifest, seconds = timed_job(
            work / "in",
            work / "out",
            args.model_path,
            run_with=timeline.install(events),
            threads_per_actor=1,
            max_actors=args.nodes,
            **sizing,
        )
        summary = timeline.summarise(events, job_start, time.time())
    busy = sum(e["seconds"] for e in manifest["shards"])
    checks = check_output(work / "out", args.rows + 5 * 500)
    shutil.rmtree(work, ignore_errors=True)
    # Start-up excluded: each actor's time from its first task to the run's end.
    working = sum(manifest["run"]["seconds"] - a["first_task"] for a in summary["actors"] if "first_task" in a)
    return {
        "bench": "big-file",
        "nodes": args.nodes,
        "units": len(manifest["shards"]),
        "rows": manifest["totals"]["embedded"],
        "job_seconds": round(seconds, 2),
        "run_seconds": manifest["run"]["seconds"],
        "busy_unit_seconds": round(busy, 2),
        "utilisation": round(busy / (args.nodes * manifest["run"]["seconds"]), 3),
        "utilisation_after_startup": round(busy / working, 3) if working > 0 else None,
        "startup_s": [a.get("first_task") for a in summary["actors"]],
        "unit_kinds": sorted({e["unit"]["kind"] if e["unit"] else "whole" for e in manifest["shards"]}),
        **checks,
        "load_at_start": load_at_start,
        "timeline": summary,
    }
