"""One run of the batch job, from a corpus to a committed manifest version.

The steps do not know where the embedding runs: `run_job` plans, hands the shard tasks
to an executor (Ray Data actor pools, or in-process for tests and small runs), and
commits. Re-running on an existing output is a refresh; re-running after a crash is a
resume, reusing every shard whose completion marker checks out.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from e5ray import __version__
from e5ray.corpus import discover
from e5ray.dupes import POLICIES
from e5ray.embedder import describe_space
from e5ray.failures import StorageError, StorageUnavailableError, describe, endpoint_of, storage_step
from e5ray.lease import DEFAULT_LEASE_INTERVAL_S, DEFAULT_LEASE_TIMEOUT_S, Lease
from e5ray.manifest import FORMAT, check_space, commit, list_versions, load_latest, totals, version_name
from e5ray.paths import check_entry_paths
from e5ray.plan import plan_refresh
from e5ray.precommit import finish_version, recheck_carried
from e5ray.presence import entry_files
from e5ray.rows import ID_TYPES, ON_INVALID_UTF8, check_choice
from e5ray.shards import ShardTask, embed_shard
from e5ray.storage import filesystem_for, join, s3_options, sha256_of
from e5ray.timeouts import (
    DEFAULT_ATTEMPTS,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_READ_TIMEOUT_S,
    Deadline,
    DeadlineExceeded,
    StoragePolicy,
)

log = logging.getLogger("e5ray")


@dataclass
class JobConfig:
    input: str
    output: str
    format: str | None = None
    id_column: str = "id"
    text_column: str = "text"
    model: str = "intfloat/multilingual-e5-large"
    model_path: str | None = None
    prefix: str = "passage"
    device: str = "cpu"
    precision: str | None = None
    max_length: int = 512
    token_budget: int | None = None
    threads_per_actor: int | None = None
    min_actors: int = 1
    max_actors: int | None = None
    gpus_per_actor: float = 1.0
    s3_endpoint: str | None = None
    full: bool = False
    cache_dir: str | None = None
    chunk_rows: int = 2048
    executor: str = "ray"  # "ray" or "local" (in-process, no cluster)
    int8_min_cosine: float = 0.99
    # reliability (e5ray.timeouts, e5ray.lease, e5ray.dupes, e5ray.rows)
    s3_connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S
    s3_read_timeout: float = DEFAULT_READ_TIMEOUT_S
    s3_attempts: int = DEFAULT_ATTEMPTS
    deadline: float | None = None
    lease_interval: float = DEFAULT_LEASE_INTERVAL_S
    lease_timeout: float = DEFAULT_LEASE_TIMEOUT_S
    duplicate_ids: str = "reject"
    on_invalid_utf8: str = "reject"
    id_type: str = "auto"

    @property
    def resolved_precision(self) -> str:
        return self.precision or ("fp16" if self.device == "gpu" else "fp32")

    def storage_policy(self) -> StoragePolicy:
        return StoragePolicy(self.s3_connect_timeout, self.s3_read_timeout, self.s3_attempts)

    def storage_options(self) -> dict[str, Any]:
        return s3_options(self.s3_endpoint, self.storage_policy())

    def embedder_kwargs(self, threads: int | None) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_path": self.model_path,
            "device": self.device,
            "threads": threads,
            "max_length": self.max_length,
            "token_budget": self.token_budget,
            "precision": self.resolved_precision,
            "cache_dir": self.cache_dir,
            "storage_options": self.storage_options() or None,
            "int8_min_cosine": self.int8_min_cosine,
        }


Executor = Callable[[list[ShardTask], JobConfig, str], Iterable[dict[str, Any]]]


class ShardFailures(RuntimeError):
    """Some shards could not be embedded; nothing was committed."""


def embed_or_report(task: ShardTask, embedder: Any, config: JobConfig) -> dict[str, Any]:
    """The shard's manifest entry, or {"error": ..., "source": ...} when its data cannot be
    embedded (an unreadable file, a missing column): a bad shard must not cost the work
    done on the others, and retrying it would fail the same way."""
    options = config.storage_options() or None
    try:
        return embed_shard(task, embedder, options, config.chunk_rows)
    except DeadlineExceeded:
        raise
    except Exception as exc:  # reported to the driver with the shard it belongs to
        log.error("shard %s failed: %s: %s", task.source.uri, type(exc).__name__, exc)
        report = {"error": f"{type(exc).__name__}: {exc}", "source": task.source.to_dict()}
        found = describe(exc, f"embedding {task.source.uri} into", config.output, endpoint_of(options))
        if found is not None:  # storage refused or stopped answering: not this shard's fault
            report.update(StorageError.report(found))
        return report


def run_local(tasks: list[ShardTask], config: JobConfig, space_fingerprint: str) -> Iterator[dict[str, Any]]:
    """Embed shard after shard in this process with one embedder (no Ray)."""
    if not tasks:
        return
    from e5ray.embedder import E5Embedder

    embedder = E5Embedder(**config.embedder_kwargs(config.threads_per_actor))
    check_embedder_space(embedder, config, space_fingerprint)
    for task in tasks:
        yield embed_or_report(task, embedder, config)


def check_embedder_space(embedder: Any, config: JobConfig, expected: str) -> None:
    """A worker whose model copy differs from the driver's must not write vectors."""
    actual = embedder.space.with_prefix(config.prefix)
    if actual.fingerprint != expected:
        raise RuntimeError(
            f"this worker's model ({embedder.files.onnx_path}, sha256 {actual.model_sha256[:16]}) "
            f"gives embedding space {actual.fingerprint[:16]}, the job planned {expected[:16]}: "
            "the nodes hold different copies of the model"
        )


def reuse_completed(
    tasks: list[ShardTask],
    output: str,
    storage_options: dict[str, Any] | None,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> tuple[list[dict[str, Any]], list[ShardTask]]:
    """Split tasks into those a previous (killed) run finished, checked, and the rest.

    A marker naming a path in `exclude` is not reused.
    """
    fs, root = filesystem_for(output, storage_options)
    reused, todo = [], []
    for task in tasks:
        entry = _checked_marker(fs, root, task, exclude)
        if entry is None:
            todo.append(task)
        else:
            reused.append(entry)
    return reused, todo


def _checked_marker(fs: Any, root: str, task: ShardTask, exclude: set[str] | frozenset[str]) -> dict[str, Any] | None:
    try:
        with fs.open(join(root, task.marker_path), "rb") as fh:
            entry = json.loads(fh.read())
    except (FileNotFoundError, ValueError):
        return None
    check_entry_paths(
        entry, f"{task.marker_path}: entry"
    )  # reliability: a marker never names a file outside the output
    if entry["path"] in exclude:
        return None
    files = [(entry["path"], entry["bytes"], entry["sha256"])]
    if entry.get("rejects"):
        r = entry["rejects"]
        files.append((r["path"], r["bytes"], r["sha256"]))
    for rel, size, sha in files:
        path = join(root, rel)
        try:
            if fs.size(path) != size or sha256_of(fs, path) != sha:
                return None
        except FileNotFoundError:  # gone (or being collected): embed the shard again
            return None
    return entry


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_job(config: JobConfig, executor: Executor | None = None) -> dict[str, Any]:
    """Plan, embed what is needed, commit a new manifest version; returns the manifest.
    The run holds a lease on the output throughout (e5ray.lease) and stops at its
    --deadline (e5ray.timeouts)."""
    check_choice("--duplicate-ids", config.duplicate_ids, POLICIES)
    check_choice("--on-invalid-utf8", config.on_invalid_utf8, ON_INVALID_UTF8)
    check_choice("--id-type", config.id_type, ID_TYPES)
    deadline = Deadline(config.deadline)
    with deadline.armed():
        return _run_job(config, executor, deadline)


def _run_job(config: JobConfig, executor: Executor | None, deadline: Deadline) -> dict[str, Any]:
    started, t0 = _now(), time.perf_counter()
    run_id = uuid.uuid4().hex[:12]
    options = config.storage_options() or None
    deadline.check("listing the input")
    with storage_step("listing the input", config.input, options):
        sources = discover(config.input, config.format, options)
    deadline.check("reading the output's versions")
    with storage_step("reading the versions of", config.output, options):
        versions = list_versions(config.output, options)
        previous = load_latest(config.output, options, versions)
        out_fs, out_root = filesystem_for(config.output, options)
    deadline.check("loading the model")
    space = describe_space(
        config.model,
        config.model_path,
        config.max_length,
        config.resolved_precision,
        config.prefix,
        config.cache_dir,
        options,
    )
    check_space(previous, space, config.full)
    with storage_step("taking a lease on", config.output, options):
        lease = Lease(out_fs, out_root, run_id, config.lease_interval, config.lease_timeout).start()
    try:
        manifest = _plan_embed_commit(
            config, executor, deadline, run_id, started, t0, sources, versions, previous, space, lease
        )
    except StorageUnavailableError:
        lease.release(remove=False)  # the store does not answer: let the lease expire instead
        raise
    except BaseException:
        lease.release()
        raise
    lease.release()
    return manifest


def _plan_embed_commit(
    config: JobConfig,
    executor: Executor | None,
    deadline: Deadline,
    run_id: str,
    started: str,
    t0: float,
    sources: list[Any],
    versions: list[int],
    previous: dict[str, Any] | None,
    space: Any,
    lease: Lease,
) -> dict[str, Any]:
    options = config.storage_options() or None
    out_fs, out_root = lease.fs, lease.root

    def make_task(source: Any) -> ShardTask:
        return ShardTask(
            source,
            config.output,
            space.fingerprint,
            config.id_column,
            config.text_column,
            config.prefix,
            config.on_invalid_utf8,
            config.id_type,
        )

    plan = plan_refresh(sources, previous, make_task, config.full)
    deadline.check("checking the files of carried shards")
    with storage_step("listing the shards of", config.output, options):
        recheck_carried(out_fs, out_root, plan, sources, make_task)
    # --full embeds again what the previous version holds, but still reuses what a killed
    # --full run finished since (files no version references yet): an interrupted switch
    # to a new space resumes instead of starting over.
    held = {e["path"] for e in previous["shards"]} if config.full and previous else set()
    deadline.check("checking completion markers")
    with storage_step("checking completion markers in", config.output, options):
        reused, todo = reuse_completed(plan.tasks, config.output, options, exclude=held)
        lease.add([p for e in plan.carried + reused for p, _ in entry_files(e)], flush=True)
    log.info(
        "run %s: %d shards in the corpus; %d carried forward, %d reused from an interrupted run, %d to embed",
        run_id,
        len(sources),
        len(plan.carried),
        len(reused),
        len(todo),
    )

    if executor is None:
        if config.executor == "local":
            executor = run_local
        elif config.executor == "ray":
            from e5ray.pipeline import run_on_ray

            executor = run_on_ray
        else:
            raise ValueError(f"unknown executor {config.executor!r}; valid: ray, local")
    t_embed = time.perf_counter()
    embedded, failed = [], []
    deadline.check("embedding shards")
    for entry in executor(todo, config, space.fingerprint):
        if entry.get("storage_error"):  # every shard would fail the same way: stop now
            raise StorageError.from_report(entry)
        if "error" in entry:
            failed.append(entry)
            continue
        embedded.append(entry)
        lease.add([p for p, _ in entry_files(entry)])
        log.info(
            "shard %s: %d rows, %d rejected (%d/%d shards)",
            entry["source"]["relpath"],
            entry["rows"],
            entry["rejected"],
            len(embedded),
            len(todo),
        )
    embed_seconds = time.perf_counter() - t_embed
    if failed:
        raise ShardFailures(
            f"{len(failed)} of {len(todo)} shards could not be embedded; nothing was committed "
            "(finished shards are kept and reused by the next run):\n"
            + "\n".join(f"  {f['source']['uri']}: {f['error']}" for f in failed)
        )
    if len(embedded) != len(todo):
        raise RuntimeError(f"executor returned {len(embedded)} shard results for {len(todo)} tasks")

    deadline.check("checking the new version")
    carried_uris = {e["source"]["uri"] for e in plan.carried}
    with storage_step("checking the new version of", config.output, options):
        shards, duplicates = finish_version(
            out_fs,
            out_root,
            config.output,
            sorted(plan.carried + reused + embedded, key=lambda e: e["source"]["uri"]),
            config.duplicate_ids,
            carried_uris,
        )
    tokens = sum(e["tokens"] for e in embedded)
    number = (versions[-1] if versions else (previous or {}).get("version", 0)) + 1
    manifest = {
        "format": FORMAT,
        "version": number,
        "previous": version_name(previous["version"]) if previous else None,
        "space": space.to_dict(),
        "input": {
            "uri": config.input,
            "format": config.format,
            "id_column": config.id_column,
            "text_column": config.text_column,
        },
        "shards": shards,
        "totals": totals(shards),
        "changes": plan.changes(),
        "run": {
            "id": run_id,
            "started": started,
            "finished": _now(),
            "seconds": round(time.perf_counter() - t0, 3),
            "e5ray_version": __version__,
            "full": config.full,
            "device": config.device,
            "executor": config.executor,
            "embedded_shards": len(embedded),
            "reused_shards": len(reused),
            "carried_shards": len(plan.carried),
            "tokens": tokens,
            "padded_tokens": sum(e["padded_tokens"] for e in embedded),
            "tokens_per_s": round(tokens / embed_seconds, 1) if embed_seconds > 0 and tokens else 0.0,
            "duplicate_ids": config.duplicate_ids,
            "duplicates_rejected": duplicates,
        },
    }
    deadline.check("committing")
    lease.check_held()
    with storage_step("committing a version to", config.output, options):
        name = commit(config.output, manifest, options)
    log.info("committed %s/%s: %s", config.output, name, json.dumps(manifest["totals"]))
    return manifest
