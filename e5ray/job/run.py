"""One run of the batch job, from a corpus to a committed manifest version.

The steps do not know where the embedding runs: `run_job` plans (`e5ray.job.plan`),
splits the shard tasks into work units (`e5ray.corpus.units`), hands them to an executor
(`e5ray.executors`), and commits. Re-running on an existing output is a refresh;
re-running after a crash is a resume, reusing every unit whose completion marker checks
out (`e5ray.job.resume`: one listing per output folder, no output downloaded). The output is
opened once here (an `OutputDir`) and used by every driver-side step.

The run holds a lease on the output from before its first file until it has committed
(`e5ray.store.lease`), so a concurrent `e5ray gc` spares what it writes, carries or reuses;
before the commit it checks ids and that every referenced file exists
(`e5ray.job.precommit`). The driver batches the entries of finished units into checkpoints
(`e5ray.job.checkpoints`), so that a resume reads a few objects instead of every marker; they
are removed once the version is committed. It ends at its `--deadline` (`e5ray.store.timeouts`), and a store that
stops answering ends it at once (`e5ray.store.failures`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import replace

from e5ray import __version__
from e5ray.config import JobConfig
from e5ray.corpus.units import UnitRange
from e5ray.errors import ShardFailures, StorageUnavailableError
from e5ray.executors.base import Executor, get_executor
from e5ray.job.checkpoints import CheckpointWriter, remove_checkpoints
from e5ray.job.plan import PlannedRun, PreparedRun, plan_run, plan_units, prepare_run
from e5ray.job.precommit import finish_version
from e5ray.job.progress import Progress
from e5ray.job.resume import count_markers, reuse_completed
from e5ray.model.library_versions import changed_libraries, library_versions
from e5ray.output.layout import UNIT_FOLDERS
from e5ray.output.manifest import Manifest, RunInfo, ShardEntry
from e5ray.output.versions import VERSIONS_DIR, commit, next_manifest
from e5ray.refresh.prepare import log_reuse, prepare_reuse, summarize
from e5ray.store.failures import storage_error_from, storage_step
from e5ray.store.filesystem import OutputDir
from e5ray.store.lease import Lease
from e5ray.store.tempfiles import remove_dead_temp_files
from e5ray.store.timeouts import Deadline
from e5ray.worker.task import ShardTask
from e5ray.worker.worker import ShardFailure, WorkerSpec

__all__ = ["JobConfig", "PlannedRun", "RunInterrupted", "ShardFailures", "plan_run", "reuse_completed", "run_job"]

log = logging.getLogger("e5ray")


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: `finished` units have markers and the next run reuses them."""

    def __init__(self, finished: int, removed_temp_files: int = 0) -> None:
        super().__init__(finished)
        self.finished = finished
        self.removed_temp_files = removed_temp_files

    def __str__(self) -> str:
        return f"interrupted; {self.finished} shards finished and will be reused: rerun the same command"


def unit_bytes(units: list[ShardTask]) -> dict[tuple[str, UnitRange | None], int]:
    """Each unit's share of its source's bytes, for progress and ETA: a byte range is its
    length; row-group ranges share the file in proportion to their estimated tokens."""
    weights: dict[str, int] = {}
    for u in units:
        weights[u.source.uri] = weights.get(u.source.uri, 0) + max(1, u.weight)
    shares = {}
    for u in units:
        if u.unit is None:
            share = u.source.size
        elif u.unit.kind == "bytes":
            share = u.unit.stop - u.unit.start
        else:
            share = u.source.size * max(1, u.weight) // weights[u.source.uri]
        shares[(u.source.uri, u.unit)] = share
    return shares


def _remove_own_temp_files(output: OutputDir) -> list[str]:
    """After an interrupt: the temporary files of this run's stopped writers (local outputs;
    on object stores a worker's temporary file lives on its node and goes with it)."""
    if not output.is_local:
        return []
    # Its own too: Ctrl-C may land inside a write of progress.json, whose writer has stopped.
    return remove_dead_temp_files(output.root, ("", *UNIT_FOLDERS, VERSIONS_DIR), include_own=True)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_job(config: JobConfig, executor: Executor | None = None, progress: Progress | None = None) -> Manifest:
    """Plan, embed what is needed, commit a new manifest version; returns the manifest.

    `progress` (optional) is told the plan and every finished shard. Ctrl-C raises
    RunInterrupted after this run's temporary files are removed.
    """
    deadline = Deadline(config.run.deadline)
    with deadline.armed():
        return _run_job(config, executor, progress, deadline)


def _run_job(config: JobConfig, executor: Executor | None, progress: Progress | None, deadline: Deadline) -> Manifest:
    started, t0 = _now(), time.perf_counter()
    run_id = uuid.uuid4().hex[:12]
    options = config.storage_options()
    output = OutputDir(config.output.uri, options)
    prepared = prepare_run(config, output, deadline=deadline)
    with storage_step("taking a lease on", config.output.uri, options):
        lease = Lease(output.fs, output.root, run_id, config.run.lease_interval, config.run.lease_timeout).start()
    try:
        manifest = _embed_and_commit(config, executor, progress, deadline, output, lease, prepared, (started, t0))
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
    progress: Progress | None,
    deadline: Deadline,
    output: OutputDir,
    lease: Lease,
    prepared: PreparedRun,
    clock: tuple[str, float],
) -> Manifest:
    (started, t0), run_id, options = clock, lease.run_id, config.storage_options()
    planned = plan_units(config, output, prepared, deadline, lease)
    sources, versions, previous, space = planned.sources, planned.versions, planned.previous, planned.space
    plan, units, reused, todo = planned.plan, planned.units, planned.reused, planned.todo
    # Row-level reuse (e5ray.refresh.prepare): the tasks left to embed look rows up by content hash.
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
    libraries = library_versions()
    if previous is not None and (changed := changed_libraries(previous.run.libraries, libraries)):
        log.warning(
            "libraries that can move vectors changed since version %d: %s (vectors carried from it "
            "were made with the old ones; --full re-embeds everything)",
            previous.version,
            ", ".join(changed),
        )
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
    reporter = progress or Progress(mode="off")
    reporter.run_id = run_id
    sizes = unit_bytes(units)
    reporter.start([sizes[(t.source.uri, t.unit)] for t in todo], carried=len(plan.carried), reused=len(reused))
    t_embed = time.perf_counter()
    embedded: list[ShardEntry] = []
    failed: list[ShardFailure] = []
    deadline.check("embedding shards")
    markers = {(t.source.uri, t.unit): t.marker_path for t in todo}
    checkpoints = CheckpointWriter(output, run_id, lease.add).start()
    try:
        for result in run(todo, WorkerSpec.for_job(config, space.fingerprint), config.compute):
            if isinstance(result, ShardFailure):
                if result.exit_code is not None:  # storage: every shard would fail the same way, stop now
                    raise storage_error_from({"storage_error": result.error, "exit_code": result.exit_code})
                failed.append(result)
                continue
            embedded.append(result)
            lease.add(result.paths())
            if (marker := markers.get((result.source.uri, result.unit))) is not None:
                checkpoints.add(marker, result)
            size = sizes.get((result.source.uri, result.unit), result.source.size)
            reporter.shard_done(result.rows, result.rejected, result.tokens, size, result.seconds)
            log.info(
                "unit %s%s: %d rows, %d rejected (%d/%d units)",
                result.source.relpath,
                f" [{result.unit.label}]" if result.unit else "",
                result.rows,
                result.rejected,
                len(embedded),
                len(todo),
            )
    except KeyboardInterrupt:
        checkpoints.close()  # what arrived since the last checkpoint: the next run reads one object for it
        reporter.finish("interrupted")
        removed = _remove_own_temp_files(output)
        # Markers on disk, not results received: a unit may have finished after the last one arrived.
        finished = max(len(embedded), count_markers(todo, output))
        raise RunInterrupted(finished + len(reused), len(removed)) from None
    except StorageUnavailableError:
        checkpoints.close(flush=False, wait_s=0)  # the store does not answer: a write would only wait
        reporter.finish("failed")
        raise
    except BaseException:
        checkpoints.close()  # best effort, never raises: the error below is the one reported
        reporter.finish("failed")
        raise
    checkpoints.close()  # a failure before the commit (ids, lease) still resumes from them
    reporter.finish("failed" if failed else "done")
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
        libraries=libraries,
    )
    inp = config.input
    manifest = next_manifest(
        previous,
        versions,
        space,
        {
            "uri": inp.uri,
            "format": inp.format,
            "id_column": inp.id_column,
            "text_column": inp.text_column,
            **({"keep_columns": list(inp.keep_columns)} if inp.keep_columns else {}),
        },
        shards,
        plan.changes(),
        config.output.format,
        run_info,
    )
    deadline.check("committing")
    lease.check_held()
    with storage_step("committing a version to", config.output.uri, options):
        name = commit(output, manifest)
    remove_checkpoints(output, checkpoints.written + planned.checkpoints)  # the manifest holds their entries
    log.info("committed %s/%s: %s", config.output.uri, name, json.dumps(manifest.totals))
    log_reuse(run_info.reuse)
    return manifest
