"""One run of the batch job, from a corpus to a committed manifest version.

The steps do not know where the embedding runs: `run_job` plans, hands the shard tasks
to an executor (`e5ray.executors`), and commits. Re-running on an existing output is a
refresh; re-running after a crash is a resume, reusing every shard whose completion
marker checks out. The output is opened once here (an `OutputDir`) and used by every
driver-side step.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import replace
from typing import Any

from e5ray import __version__
from e5ray.config import JobConfig
from e5ray.corpus import SourceShard, discover, parquet_row_groups
from e5ray.errors import ShardFailures, StorageUnavailableError, UsageError
from e5ray.executors.base import Executor, get_executor
from e5ray.failures import storage_error_from, storage_step
from e5ray.lease import Lease
from e5ray.manifest import Manifest, RunInfo, ShardEntry, check_space
from e5ray.model_space import describe_space
from e5ray.plan import plan_refresh, split_tasks
from e5ray.precommit import finish_version, recheck_carried
from e5ray.resume import parallel_map, reuse_completed
from e5ray.reuse_plan import log_reuse, prepare_reuse, summarize
from e5ray.shards import ShardTask
from e5ray.space import EmbeddingSpace
from e5ray.storage import OutputDir
from e5ray.timeouts import Deadline
from e5ray.units import RowGroupStats, UnitTarget, needs_footer
from e5ray.versions import commit, list_versions, load_latest, next_manifest
from e5ray.worker import DATA_ERRORS, ShardFailure, WorkerSpec

__all__ = ["JobConfig", "ShardFailures", "reuse_completed", "run_job"]

log = logging.getLogger("e5ray")


def read_footers(
    tasks: list[ShardTask], target: UnitTarget, storage_options: dict[str, Any] | None
) -> dict[str, list[RowGroupStats]]:
    """The row groups of the Parquet sources that may hold more than one unit, read in parallel."""
    big = [t.source for t in tasks if t.source.format == "parquet" and needs_footer(t.source.size, target)]

    def footer(src: SourceShard) -> list[RowGroupStats] | None:
        try:
            return parquet_row_groups(src, tasks[0].text_column, storage_options)
        except DATA_ERRORS:  # embedded whole: the worker reports what is wrong with it, with the file
            return None

    stats = parallel_map(footer, big)
    return {src.uri: groups for src, groups in zip(big, stats, strict=True) if groups is not None}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_job(config: JobConfig, executor: Executor | None = None) -> Manifest:
    """Plan, embed what is needed, commit a new manifest version; returns the manifest.
    The run holds a lease on the output throughout (e5ray.lease) and ends at its
    --deadline (e5ray.timeouts)."""
    deadline = Deadline(config.run.deadline)
    with deadline.armed():
        return _run_job(config, executor, deadline)


def _run_job(config: JobConfig, executor: Executor | None, deadline: Deadline) -> Manifest:
    started, t0 = _now(), time.perf_counter()
    run_id = uuid.uuid4().hex[:12]
    options = config.storage_options()
    deadline.check("listing the input")
    with storage_step("listing the input", config.input.uri, options):
        sources = discover(config.input.uri, config.input.format, options)
    deadline.check("reading the output's versions")
    with storage_step("reading the versions of", config.output.uri, options):
        output = OutputDir(config.output.uri, options)
        versions = list_versions(output)
        previous = load_latest(output, versions)
    deadline.check("loading the model")
    model = config.model
    space = describe_space(
        model.name,
        model.path,
        model.max_length,
        config.precision,
        model.prefix,
        model.cache_dir,
        options,
        pooling=model.pooling,
        long_text=model.long_text,
        stride=model.stride,
    )
    check_space(previous, space, config.full)
    if previous and previous.output_format != config.output.format and not config.full:
        raise UsageError(
            f"{config.output.uri} holds {previous.output_format} shards, this run writes {config.output.format}: "
            "one version holds one format; re-embed everything with --full, or write to another output"
        )
    with storage_step("taking a lease on", config.output.uri, options):
        lease = Lease(output.fs, output.root, run_id, config.run.lease_interval, config.run.lease_timeout).start()
    try:
        manifest = _embed_and_commit(
            config, executor, deadline, output, lease, sources, versions, previous, space, (started, t0)
        )
    except StorageUnavailableError:
        lease.release(remove=False)  # the store does not answer: let the lease expire instead
        raise
    except BaseException:
        lease.release()
        raise
    lease.release()
    return manifest


def _embed_and_commit(
    config: JobConfig,
    executor: Executor | None,
    deadline: Deadline,
    output: OutputDir,
    lease: Lease,
    sources: list[SourceShard],
    versions: list[int],
    previous: Manifest | None,
    space: EmbeddingSpace,
    clock: tuple[str, float],
) -> Manifest:
    (started, t0), run_id, model, options = clock, lease.run_id, config.model, config.storage_options()

    def make_task(source: SourceShard) -> ShardTask:
        inp = config.input
        return ShardTask(
            source,
            space.fingerprint,
            inp.id_column,
            inp.text_column,
            model.prefix,
            config.output.format,
            config.rows.on_invalid_utf8,
            config.rows.id_type,
        )

    reembed_all = config.full or config.reuse == "none"
    plan = plan_refresh(sources, previous, make_task, reembed_all)
    deadline.check("checking the files of carried shards")
    with storage_step("listing the shards of", config.output.uri, options):
        recheck_carried(output, plan, sources, make_task)
    # --full (and --reuse none) embeds again what the previous version holds, but still
    # reuses what a killed such run finished since (files no version references yet): an
    # interrupted switch to a new space resumes instead of starting over.
    held = previous.referenced() if reembed_all and previous else set()
    target = config.compute.unit_target
    deadline.check("reading the footers of large Parquet sources")
    with storage_step("reading the footers of", config.input.uri, options):
        footers = read_footers(plan.tasks, target, options)
    units = split_tasks(plan.tasks, target, footers)
    deadline.check("checking completion markers")
    with storage_step("checking completion markers in", config.output.uri, options):
        reused, todo = reuse_completed(units, output, exclude=held)
        lease.add([path for e in plan.carried + reused for path in e.paths()], flush=True)
    # Row-level reuse (e5ray.reuse_plan): the tasks left to embed look rows up by content hash.
    reuse = prepare_reuse(
        config.reuse,
        config.full,
        previous,
        config.output.format,
        config.model.long_text,
        output.uri,
        options,
        needs_index=bool(todo),
    )
    index = reuse.index.path if reuse.index else None
    todo = [replace(t, reuse_rows=reuse.rows, reuse_index=index) for t in todo]
    log.info(
        "run %s: %d shards in the corpus; %d units carried forward, %d reused from an interrupted run, "
        "%d to embed (%d sources split into %d units)",
        run_id,
        len(sources),
        len(plan.carried),
        len(reused),
        len(todo),
        len(plan.tasks),
        len(units),
    )

    run = executor or get_executor(config.compute.executor)
    t_embed = time.perf_counter()
    embedded: list[ShardEntry] = []
    failed: list[ShardFailure] = []
    deadline.check("embedding shards")
    for result in run(todo, WorkerSpec.for_job(config, space.fingerprint), config.compute):
        if isinstance(result, ShardFailure):
            if result.exit_code is not None:  # storage: every shard would fail the same way, stop now
                raise storage_error_from({"storage_error": result.error, "exit_code": result.exit_code})
            failed.append(result)
            continue
        embedded.append(result)
        lease.add(result.paths())
        log.info(
            "unit %s%s: %d rows, %d rejected (%d/%d units)",
            result.source.relpath,
            f" [{result.unit.label}]" if result.unit else "",
            result.rows,
            result.rejected,
            len(embedded),
            len(todo),
        )
    embed_seconds = time.perf_counter() - t_embed
    if failed:
        raise ShardFailures(
            f"{len(failed)} of {len(todo)} shards (work units) could not be embedded; nothing was committed "
            "(finished shards are kept and reused by the next run):\n"
            + "\n".join(f"  {f.source.uri}: {f.error}" for f in failed)
        )
    if len(embedded) != len(todo):
        raise RuntimeError(f"executor returned {len(embedded)} unit results for {len(todo)} tasks")

    deadline.check("checking the new version")
    with storage_step("checking the new version of", config.output.uri, options):
        shards, duplicates = finish_version(
            output,
            sorted(plan.carried + reused + embedded, key=lambda e: (e.source.uri, e.unit.start if e.unit else -1)),
            config.rows.duplicate_ids,
            {e.source.uri for e in plan.carried},
            config.output.format,
        )
    tokens = sum(e.tokens for e in embedded)
    run_info = RunInfo(
        id=run_id,
        started=started,
        finished=_now(),
        seconds=round(time.perf_counter() - t0, 3),
        e5ray_version=__version__,
        full=config.full,
        device=config.compute.device,
        executor=config.compute.executor,
        embedded_shards=len(embedded),
        reused_shards=len(reused),
        carried_shards=len(plan.carried),
        tokens=tokens,
        padded_tokens=sum(e.padded_tokens for e in embedded),
        tokens_per_s=round(tokens / embed_seconds, 1) if embed_seconds > 0 and tokens else 0.0,
        duplicate_ids=config.rows.duplicate_ids,
        duplicates_rejected=duplicates,
        reuse=summarize(reuse, reused + embedded, len(plan.carried)),
    )
    inp = config.input
    manifest = next_manifest(
        previous,
        versions,
        space,
        {"uri": inp.uri, "format": inp.format, "id_column": inp.id_column, "text_column": inp.text_column},
        shards,
        plan.changes(),
        config.output.format,
        run_info,
    )
    deadline.check("committing")
    lease.check_held()
    with storage_step("committing a version to", config.output.uri, options):
        name = commit(output, manifest)
    log.info("committed %s/%s: %s", config.output.uri, name, json.dumps(manifest.totals))
    log_reuse(run_info.reuse)
    return manifest
