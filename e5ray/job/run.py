"""One run of the batch job, from a corpus to a committed manifest version, in named phases:

    plan -> prepare reuse -> embed -> finish the version -> commit

- plan (`e5ray.job.plan`): the corpus, the output's versions, the space; what is carried,
  resumed from markers, and split into work units to embed;
- prepare reuse (`e5ray.refresh.prepare`): the previous version's reuse index, if rows can
  be looked up in it;
- embed (`e5ray.job.embed`): the executor runs the units; checkpoints, lease, interrupts;
- finish (`e5ray.job.finish`): every entry checked, the run's record, the next manifest;
- commit (`e5ray.output.versions.commit`): create-only, while the lease is still held.

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

import json
import logging
import time
import uuid
from dataclasses import replace

from e5ray import timeline
from e5ray.config import JobConfig
from e5ray.errors import ShardFailures, StorageUnavailableError
from e5ray.executors.base import Executor, get_executor
from e5ray.job.checkpoints import remove_checkpoints
from e5ray.job.embed import Embedded, RunInterrupted, embed_units, unit_bytes
from e5ray.job.finish import checked_entries, next_version, now, run_record
from e5ray.job.plan import PlannedRun, PreparedRun, plan_run, plan_units, prepare_run
from e5ray.job.progress import Progress
from e5ray.job.resume import reuse_completed
from e5ray.model.library_versions import changed_libraries, library_versions
from e5ray.output.manifest import Manifest
from e5ray.output.versions import commit
from e5ray.refresh.prepare import ReuseSetup, log_reuse, prepare_reuse
from e5ray.store.failures import storage_step
from e5ray.store.filesystem import OutputDir
from e5ray.store.lease import Lease
from e5ray.store.timeouts import Deadline
from e5ray.worker.task import ShardTask
from e5ray.worker.worker import WorkerSpec

__all__ = ["JobConfig", "PlannedRun", "RunInterrupted", "ShardFailures", "plan_run", "reuse_completed", "run_job"]

log = logging.getLogger("e5ray")


def run_job(config: JobConfig, executor: Executor | None = None, progress: Progress | None = None) -> Manifest:
    """Plan, embed what is needed, commit a new manifest version; returns the manifest.

    `progress` (optional) is told the plan and every finished shard. Ctrl-C raises
    RunInterrupted after this run's temporary files are removed.
    """
    deadline = Deadline(config.run.deadline)
    timeline.start_run()
    with deadline.armed():
        return _run_job(config, executor, progress, deadline)


def _run_job(config: JobConfig, executor: Executor | None, progress: Progress | None, deadline: Deadline) -> Manifest:
    clock = (now(), time.perf_counter())
    run_id = uuid.uuid4().hex[:12]
    options = config.storage_options()
    output = OutputDir(config.output.uri, options)
    prepared = prepare_run(config, output, deadline=deadline)
    with storage_step("taking a lease on", config.output.uri, options):
        lease = Lease(output.fs, output.root, run_id, config.run.lease_interval, config.run.lease_timeout).start()
    try:
        manifest = _phases(config, executor, progress, deadline, output, lease, prepared, clock)
    except StorageUnavailableError:
        lease.release(remove=False)  # the store does not answer: let the lease expire instead
        raise
    except BaseException:
        lease.release()
        raise
    lease.release()
    return manifest


def _phases(
    config: JobConfig,
    executor: Executor | None,
    progress: Progress | None,
    deadline: Deadline,
    output: OutputDir,
    lease: Lease,
    prepared: PreparedRun,
    clock: tuple[str, float],
) -> Manifest:
    planned = plan_units(config, output, prepared, deadline, lease)
    timeline.mark("planned")
    # From here on the run's compute names the executor that runs it, never "auto".
    config = replace(config, compute=replace(config.compute, executor=planned.executor.name))
    reuse, todo = _prepare_reuse(config, output, planned)
    libraries = _libraries(planned)
    _log_plan(lease.run_id, planned, todo)

    deadline.check("embedding shards")
    embedded = _embed(config, executor, progress, output, lease, planned, todo)

    deadline.check("checking the new version")
    shards, duplicates = checked_entries(config, output, planned, embedded)
    record = run_record(config, lease.run_id, clock, planned, embedded, reuse, duplicates, libraries)
    manifest = next_version(config, output, planned, shards, record)

    deadline.check("committing")
    _commit(config, output, lease, manifest, embedded.checkpoints + planned.checkpoints)
    log_reuse(record.reuse)
    return manifest


def _prepare_reuse(config: JobConfig, output: OutputDir, planned: PlannedRun) -> tuple[ReuseSetup, list[ShardTask]]:
    """Row-level reuse (e5ray.refresh.prepare): the tasks left to embed look rows up by content hash."""
    reuse = prepare_reuse(
        config.reuse,
        config.full,
        planned.previous,
        config.output.format,
        config.model.long_text,
        output.uri,
        config.storage_options(),
        needs_index=bool(planned.todo),
    )
    index = reuse.index.path if reuse.index else None
    return reuse, [replace(t, reuse_rows=reuse.rows, reuse_index=index) for t in planned.todo]


def _libraries(planned: PlannedRun) -> dict[str, str]:
    """The libraries this run embeds with; a warning naming each that changed since the previous version."""
    libraries = library_versions()
    previous = planned.previous
    if previous is not None and (changed := changed_libraries(previous.run.libraries, libraries)):
        log.warning(
            "libraries that can move vectors changed since version %d: %s (vectors carried from it "
            "were made with the old ones; --full re-embeds everything)",
            previous.version,
            ", ".join(changed),
        )
    return libraries


def _embed(
    config: JobConfig,
    executor: Executor | None,
    progress: Progress | None,
    output: OutputDir,
    lease: Lease,
    planned: PlannedRun,
    todo: list[ShardTask],
) -> Embedded:
    reporter = progress or Progress(mode="off")
    reporter.run_id = lease.run_id
    sizes = unit_bytes(planned.units)
    reporter.start(
        [sizes[(t.source.uri, t.unit)] for t in todo], carried=len(planned.plan.carried), reused=len(planned.reused)
    )
    run = executor or get_executor(config.compute.executor)  # resolved by the plan (`_phases`)
    spec = WorkerSpec.for_job(config, planned.space.fingerprint)
    return embed_units(config, run, spec, todo, sizes, output, lease, reporter, len(planned.reused))


def _commit(config: JobConfig, output: OutputDir, lease: Lease, manifest: Manifest, checkpoints: list[str]) -> None:
    """Commit create-only while the lease is held; then the checkpoints are spent (the manifest holds their entries)."""
    lease.check_held()
    with storage_step("committing a version to", config.output.uri, config.storage_options()):
        name = commit(output, manifest)
    timeline.mark("committed")
    remove_checkpoints(output, checkpoints)
    log.info("committed %s/%s: %s", config.output.uri, name, json.dumps(manifest.totals))


def _log_plan(run_id: str, planned: PlannedRun, todo: list[ShardTask]) -> None:
    log.info(
        "run %s: %d shards in the corpus; %d units carried forward, %d reused from an interrupted run, "
        "%d to embed (%d sources split into %d units); executor %s",
        run_id,
        len(planned.sources),
        len(planned.plan.carried),
        len(planned.reused),
        len(todo),
        len(planned.plan.tasks),
        len(planned.units),
        planned.executor.describe(),
    )
