"""The embed phase: hand a run's tasks to an executor and collect one result per task.

Each finished unit is added to the run's lease (so `gc` spares its files) and to the
driver's checkpoints (so a resume reads a few objects, not every marker) before it counts.
A storage failure of any unit ends the phase at once: every other unit would fail the same
way. Ctrl-C ends it with `RunInterrupted`, after the checkpoints are flushed and this run's
temporary files removed; what finished has markers and is reused by the next run. Failed
units are collected and raised together (`ShardFailures`) once the executor is done, so one
bad shard does not stop the others.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from e5ray import timeline
from e5ray.config import JobConfig
from e5ray.corpus.units import UnitRange
from e5ray.errors import ShardFailures, StorageUnavailableError
from e5ray.executors.base import Executor
from e5ray.job.checkpoints import CheckpointWriter
from e5ray.job.progress import Progress
from e5ray.job.resume import count_markers
from e5ray.output.layout import UNIT_FOLDERS
from e5ray.output.manifest import ShardEntry
from e5ray.output.versions import VERSIONS_DIR
from e5ray.store.failures import storage_error_from
from e5ray.store.filesystem import OutputDir
from e5ray.store.lease import Lease
from e5ray.store.tempfiles import remove_dead_temp_files
from e5ray.worker.task import ShardTask
from e5ray.worker.worker import ShardFailure, WorkerSpec

log = logging.getLogger("e5ray")

UnitKey = tuple[str, UnitRange | None]  # (source uri, unit): one work unit


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: `finished` units have markers and the next run reuses them."""

    def __init__(self, finished: int, removed_temp_files: int = 0) -> None:
        super().__init__(finished)
        self.finished = finished
        self.removed_temp_files = removed_temp_files

    def __str__(self) -> str:
        return f"interrupted; {self.finished} shards finished and will be reused: rerun the same command"


@dataclass
class Embedded:
    """What the embed phase produced: an entry per unit, and how long the executor took."""

    entries: list[ShardEntry] = field(default_factory=list)
    seconds: float = 0.0
    checkpoints: list[str] = field(default_factory=list)  # written by this run, removed after the commit


def unit_bytes(units: list[ShardTask]) -> dict[UnitKey, int]:
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


def embed_units(
    config: JobConfig,
    run: Executor,
    spec: WorkerSpec,
    todo: list[ShardTask],
    sizes: dict[UnitKey, int],
    output: OutputDir,
    lease: Lease,
    reporter: Progress,
    reused: int,
) -> Embedded:
    """Run `todo` on the executor; every task yields exactly one entry, or the phase raises."""
    t0 = time.perf_counter()
    done = Embedded()
    failed: list[ShardFailure] = []
    checkpoints = CheckpointWriter(output, lease.run_id, lease.add).start()
    markers = {(t.source.uri, t.unit): t.marker_path for t in todo}
    try:
        for result in run(todo, spec, config.compute):
            if isinstance(result, ShardFailure):
                _raise_if_storage(result)
                failed.append(result)
                continue
            _record(result, done, lease, checkpoints, markers.get((result.source.uri, result.unit)))
            _mark_first(result)
            reporter.shard_done(
                result.rows,
                result.rejected,
                result.tokens,
                sizes.get((result.source.uri, result.unit), result.source.size),
                result.seconds,
            )
            _log_unit(result, len(done.entries), len(todo))
    except KeyboardInterrupt:
        checkpoints.close()  # what arrived since the last checkpoint: the next run reads one object for it
        reporter.finish("interrupted")
        removed = _remove_own_temp_files(output)
        # Markers on disk, not results received: a unit may have finished after the last one arrived.
        finished = max(len(done.entries), count_markers(todo, output))
        raise RunInterrupted(finished + reused, len(removed)) from None
    except StorageUnavailableError:
        checkpoints.close(flush=False, wait_s=0)  # the store does not answer: a write would only wait
        reporter.finish("failed")
        raise
    except BaseException:
        checkpoints.close()  # best effort, never raises: the error below is the one reported
        reporter.finish("failed")
        raise
    checkpoints.close()  # a failure before the commit (ids, lease) still resumes from them
    if done.entries:
        timeline.mark("last_unit")
    reporter.finish("failed" if failed else "done")
    done.seconds, done.checkpoints = time.perf_counter() - t0, checkpoints.written
    _check_complete(done.entries, failed, len(todo))
    return done


def _mark_first(entry: ShardEntry) -> None:
    """The first result on the start-up timeline: it arrived now, and began `seconds` ago
    on a worker whose model was loaded by then."""
    now = time.time()
    timeline.mark("first_actor_ready", now - entry.seconds)
    timeline.mark("first_vector", now)


def _raise_if_storage(failure: ShardFailure) -> None:
    if failure.exit_code is not None:  # storage: every unit would fail the same way, stop now
        raise storage_error_from({"storage_error": failure.error, "exit_code": failure.exit_code})


def _record(entry: ShardEntry, done: Embedded, lease: Lease, checkpoints: CheckpointWriter, marker: str | None) -> None:
    done.entries.append(entry)
    lease.add(entry.paths())
    if marker is not None:
        checkpoints.add(marker, entry)


def _log_unit(entry: ShardEntry, finished: int, total: int) -> None:
    log.info(
        "unit %s%s: %d rows, %d rejected (%d/%d units)",
        entry.source.relpath,
        f" [{entry.unit.label}]" if entry.unit else "",
        entry.rows,
        entry.rejected,
        finished,
        total,
    )


def _check_complete(entries: list[ShardEntry], failed: list[ShardFailure], tasks: int) -> None:
    if failed:
        raise ShardFailures(
            f"{len(failed)} of {tasks} shards (work units) could not be embedded; nothing was committed "
            "(finished shards are kept and reused by the next run):\n"
            + "\n".join(f"  {f.source.uri}: {f.error}" for f in failed)
        )
    if len(entries) != tasks:
        raise RuntimeError(f"executor returned {len(entries)} unit results for {tasks} tasks")


def _remove_own_temp_files(output: OutputDir) -> list[str]:
    """After an interrupt: the temporary files of this run's stopped writers (local outputs;
    on object stores a worker's temporary file lives on its node and goes with it)."""
    if not output.is_local:
        return []
    # Its own too: Ctrl-C may land inside a write of progress.json, whose writer has stopped.
    return remove_dead_temp_files(output.root, ("", *UNIT_FOLDERS, VERSIONS_DIR), include_own=True)
