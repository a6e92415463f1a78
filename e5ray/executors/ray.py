"""The Ray executor: work units through a Ray Data actor pool of E5Embedders.

The dataset holds one small row per *group* of units (`e5ray.units`: a big file's
ranges are a group each, small files are packed together up to the unit target), so a
corpus of many tiny files costs one Ray task per group, not per file. Each actor (model
loaded once) streams each unit of its group in chunks, writes the unit's output and
completion marker, and returns one manifest entry per unit. This gives 1:1 lineage
without a shuffle, memory bounded by chunk size x actors (not by the corpus), and
exactly-once output per unit even when an actor dies: a retried task rewrites the same
deterministic outputs atomically. There are no separate read or write tasks, so the
pool may use every CPU without starving Ray Data.

The pool starts at its full size (no ramp-up from one actor), takes one task per actor
at a time (a small unit never queues behind a big one on a busy actor), and gets the
largest groups first, so the run does not end on one long unit. Its size comes from
`--max-actors` when given, which may exceed what the live nodes fit: on an autoscaling
cluster the pending actors are what asks the autoscaler for nodes.

Where the pool runs: the cluster in RAY_ADDRESS (set inside a Ray job too), joined with
a deadline and a one-line error that names the address and the auth setting; else a
fresh local Ray with a temp dir of its own, which never follows Ray's address file to
another (possibly dead) cluster on the machine. Ray Data's own progress output is off
unless --verbose (e5ray reports progress itself); actors count rows, tokens and rejects
in Ray metrics for the dashboard and Prometheus.

Only this module and `jobs/` import ray (tests/test_imports.py holds us to it).
"""

from __future__ import annotations

import atexit
import importlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import ray

from e5ray.capacity import read_declared_cluster
from e5ray.config import ComputeConfig
from e5ray.errors import UsageError
from e5ray.manifest import ShardEntry
from e5ray.pool import PoolShape, group_tasks, pool_shape
from e5ray.shards import ShardTask
from e5ray.worker import EmbeddingWorker, ShardResult, WorkerSpec, result_from_dict

log = logging.getLogger("e5ray")
T = TypeVar("T")
R = TypeVar("R")
RAY_JOIN_TIMEOUT_S = 60.0  # joining a cluster: how long before giving up with one line ($E5RAY_RAY_CONNECT_TIMEOUT)
_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


class RayJoinError(UsageError, RuntimeError):
    """The cluster named by RAY_ADDRESS cannot be reached or refused this client."""


def auth_setting(env: dict[str, str] | None = None, home: Path | None = None) -> str:
    """How this process would authenticate to Ray, in words (never the token itself)."""
    env = dict(os.environ) if env is None else env
    mode = env.get("RAY_AUTH_MODE")
    if env.get("RAY_AUTH_TOKEN"):
        token = "token from RAY_AUTH_TOKEN"
    elif env.get("RAY_AUTH_TOKEN_PATH"):
        token = f"token file {env['RAY_AUTH_TOKEN_PATH']} (RAY_AUTH_TOKEN_PATH)"
    elif ((home or Path.home()) / ".ray" / "auth_token").is_file():
        token = "token file ~/.ray/auth_token"
    else:
        token = "no token"
    return f"RAY_AUTH_MODE={mode or 'unset'}, {token}"


def _enable_token_mode_if_token_present() -> None:
    """Ray 2.60 only sends a token when RAY_AUTH_MODE=token, even when RAY_AUTH_TOKEN or
    ~/.ray/auth_token holds one: a user who set the token meant to use it."""
    if os.environ.get("RAY_AUTH_MODE") or "no token" in auth_setting():
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    try:  # Ray reads its settings once, at import; re-read them as Ray itself does when it enables tokens
        importlib.import_module("ray._raylet").Config.initialize("")
    except (ImportError, AttributeError):  # another Ray version: the variable alone may do
        pass


def _host_port(address: str) -> tuple[str, int] | None:
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)/?", address.strip())
    return (match.group(1), int(match.group(2))) if match else None


def _reachable(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _give_up(address: str, timeout: float) -> None:
    # ray.init retries inside native code and cannot be interrupted; a run that cannot
    # join must not hang, so it ends here with the one line a user needs.
    print(
        f"e5ray: error: no answer from the Ray cluster at {address} (RAY_ADDRESS) within {timeout:.0f} s "
        f"({auth_setting()}); check the address and the token, or unset RAY_ADDRESS to run on a local Ray",
        file=sys.stderr,
        flush=True,
    )
    time.sleep(0.5)  # let a stderr filter forward the line before the process goes
    os._exit(2)


def join_cluster(address: str, timeout: float | None = None) -> None:
    """Connect to the cluster at `address`; one-line RayJoinError (or exit 2 after
    `timeout` s of silence) instead of Ray's endless retries."""
    timeout = timeout or float(os.environ.get("E5RAY_RAY_CONNECT_TIMEOUT") or RAY_JOIN_TIMEOUT_S)
    _enable_token_mode_if_token_present()
    where = _host_port(address)
    if where and not _reachable(*where, timeout=min(10.0, timeout)):
        raise RayJoinError(
            f"cannot reach the Ray cluster at {address} (RAY_ADDRESS; {auth_setting()}): nothing listens there; "
            "check the address, or unset RAY_ADDRESS to run on a local Ray"
        )
    watchdog = threading.Timer(timeout, _give_up, args=(address, timeout))
    watchdog.daemon = True
    watchdog.start()
    try:
        ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
    except Exception as exc:  # Ray raises ConnectionError, AuthenticationError, RuntimeError ...
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RayJoinError(
            f"cannot join the Ray cluster at {address} (RAY_ADDRESS; {auth_setting()}): {type(exc).__name__}: "
            f"{reason}; a cluster with token authentication needs RAY_AUTH_MODE=token and its token "
            "(RAY_AUTH_TOKEN or ~/.ray/auth_token)"
        ) from None
    finally:
        watchdog.cancel()


def _remove_local_ray(temp_dir: str) -> None:
    if ray.is_initialized():
        ray.shutdown()  # its processes write below temp_dir until they are gone
    shutil.rmtree(temp_dir, ignore_errors=True)


def start_local_ray(num_cpus: int | None = None) -> str:
    """Start a fresh single-node Ray of our own; returns its temp dir.

    `address="local"` never follows Ray's address file (`ray_current_cluster`), so a
    dead or foreign cluster that the machine last knew cannot capture or hang the run,
    and a temp dir of our own keeps this Ray's sockets, logs and address file apart from
    every other Ray here. The directory goes when the process exits.
    """
    # Short, under /tmp: Ray's unix socket paths below it are limited to ~107 bytes.
    base = "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else None
    temp_dir = tempfile.mkdtemp(prefix="e5ray-", dir=base)
    atexit.register(_remove_local_ray, temp_dir)
    auth_log = logging.getLogger(_AUTH_LOGGER)
    level = auth_log.level
    auth_log.setLevel(logging.ERROR)  # "token authentication is enabled", on every run: Ray's default, not news
    try:
        # No dashboard: a second to start, memory held, nothing to serve for one run.
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=True,
            logging_level=logging.WARNING,
            _temp_dir=temp_dir,
        )
    finally:
        auth_log.setLevel(level)
    return temp_dir


def quiet_ray_data(verbose: bool = False) -> None:
    """Ray Data's own progress blocks and plan lines only with --verbose: e5ray reports progress itself."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = verbose
    context.enable_operator_progress_bars = verbose
    if hasattr(context, "print_on_execution_start"):
        context.print_on_execution_start = verbose
    logging.getLogger("ray.data").setLevel(logging.INFO if verbose else logging.WARNING)
    # Turning the bars off makes Ray Data warn that they are off, once per process.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.INFO if verbose else logging.ERROR)


_local_ray: list[str] = []  # the temp dir of the local Ray this process started, if any


def ensure_ray(verbose: bool | None = None) -> None:
    """Join the cluster named by RAY_ADDRESS (set inside a Ray job too); else start a
    fresh local Ray that ignores any other cluster on the machine. `verbose` (default:
    $E5RAY_VERBOSE=1, set by --verbose) shows Ray Data's own progress."""
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            join_cluster(address)
        else:
            _local_ray.append(start_local_ray())
    quiet_ray_data(os.environ.get("E5RAY_VERBOSE") == "1" if verbose is None else verbose)


class ShardMetrics:
    """Ray metrics (dashboard, Prometheus) for the rows, tokens and rejects of finished shards."""

    def __init__(self, device: str) -> None:
        from ray.util.metrics import Counter

        tags = ("device",)
        self.rows = Counter("e5ray_rows_embedded", "rows embedded", tag_keys=tags)
        self.tokens = Counter("e5ray_tokens_embedded", "real (unpadded) tokens embedded", tag_keys=tags)
        self.rejects = Counter("e5ray_rows_rejected", "rows rejected, with a reason, in rejects files", tag_keys=tags)
        self.shards = Counter("e5ray_shards_finished", "work units embedded and committed", tag_keys=tags)
        self.tags = {"device": device}

    def record(self, result: ShardResult) -> None:
        if not isinstance(result, ShardEntry):  # a failed shard: reported to the driver, not counted
            return
        # Counter.inc refuses 0: count only what happened.
        for counter, value in (
            (self.rows, result.rows),
            (self.tokens, result.tokens),
            (self.rejects, result.rejected),
            (self.shards, 1),
        ):
            if value:
                counter.inc(value, tags=self.tags)


class ShardEmbedActor:
    """Ray Data's callable class around one EmbeddingWorker; tasks and results travel as JSON."""

    def __init__(self, spec: WorkerSpec, threads: int) -> None:
        # The tokenizer's thread pool would otherwise size itself to the whole node and
        # compete with the other actors there; an actor owns just its reserved CPUs.
        os.environ.setdefault("RAYON_NUM_THREADS", str(max(1, threads)))
        self.worker = EmbeddingWorker(spec, threads)
        self.metrics = ShardMetrics(spec.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tasks = [ShardTask.from_dict(task) for blob in batch["tasks"] for task in json.loads(blob)]
        results = self.worker.embed_many(tasks)
        for result in results:
            self.metrics.record(result)
        return {"entry": np.array([json.dumps(r.to_dict()) for r in results], dtype=object)}


def run_on_ray(tasks: list[ShardTask], spec: WorkerSpec, compute: ComputeConfig) -> Iterator[ShardResult]:
    """Embed `tasks` on the Ray cluster; yields results as units finish."""
    if not tasks:
        return
    ensure_ray()
    groups = group_tasks(tasks, compute.unit_tokens)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    shape = pool_shape(compute, nodes, read_declared_cluster() if compute.max_actors is None else None)
    size = max(1, min(shape.max_actors, len(groups)))
    log.info(
        "actor pool: %d actors x %s CPUs, %s GPUs, %d threads each; %d units in %d tasks",
        size,
        shape.num_cpus,
        shape.num_gpus,
        shape.threads,
        len(tasks),
        len(groups),
    )
    dataset = ray.data.from_items(
        [{"tasks": json.dumps([t.to_dict() for t in g])} for g in groups], override_num_blocks=len(groups)
    )
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for an actor's restarts and task retries (its
        # issue 65227); the remote args it calls deprecated are the only way to bound them.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        results = _map_batches(dataset, spec, shape, size, compute.retries)
    try:
        for row in results.iter_rows():
            yield result_from_dict(json.loads(row["entry"]))
    except KeyboardInterrupt:
        # Stop the actors before the driver removes their temporary files: a local Ray
        # we started goes down with its workers (a cluster's actors end with this driver).
        if _local_ray and ray.is_initialized():
            ray.shutdown()
        raise


def _map_batches(dataset: Any, spec: WorkerSpec, shape: PoolShape, size: int, retries: int) -> Any:
    return dataset.map_batches(
        ShardEmbedActor,
        fn_constructor_kwargs={"spec": spec, "threads": shape.threads},
        batch_size=1,
        batch_format="numpy",
        # Starts at its full size: a pool that grows from one actor left the others' CPUs
        # idle for the first 7-9 s of a run.
        compute=ray.data.ActorPoolStrategy(min_size=size, max_size=size, max_tasks_in_flight_per_actor=1),
        num_cpus=shape.num_cpus,
        num_gpus=shape.num_gpus or None,
        # A lost actor (a killed node) is replaced and its task run again, a bounded number
        # of times; outputs are idempotent, so a retry cannot duplicate or lose rows.
        max_restarts=retries,
        max_task_retries=retries,
    )


def map_on_ray(fn: Callable[[T], R], items: list[T], per_task: int = 16) -> list[R]:
    """`[fn(x) for x in items]` as Ray tasks of `per_task` items each, spread over the
    cluster (one CPU each), in input order. For I/O-heavy checks whose reads should not
    all pass through the driver (`e5ray verify --on-ray`)."""
    if not items:
        return []
    ensure_ray()

    @ray.remote(num_cpus=1, max_retries=3)
    def run(batch: list[T]) -> list[R]:
        return [fn(x) for x in batch]

    refs = [
        run.options(scheduling_strategy="SPREAD").remote(items[i : i + per_task])
        for i in range(0, len(items), per_task)
    ]
    return [r for part in ray.get(refs) for r in part]
