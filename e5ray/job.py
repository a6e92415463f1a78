"""One run of the batch job, from a corpus to a committed manifest version.

The steps do not know where the embedding runs: `run_job` plans, splits the shard tasks
into work units (`e5ray.units`), hands them to an executor (`e5ray.executors`), and
commits. Re-running on an existing output is a refresh; re-running after a crash is a
resume, reusing every unit whose completion marker checks out (`e5ray.resume`: one
listing per output folder, no output downloaded). The output is opened once here (an `OutputDir`) and used by every
driver-side step.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from e5ray import __version__
from e5ray.config import JobConfig
from e5ray.corpus import SourceShard, discover, parquet_row_groups
from e5ray.errors import ShardFailures, UsageError
from e5ray.executors.base import Executor, get_executor
from e5ray.manifest import Manifest, RunInfo, ShardEntry, check_space
from e5ray.model_space import describe_space
from e5ray.plan import RefreshPlan, plan_refresh, split_tasks
from e5ray.preflight import preflight
from e5ray.progress import Progress
from e5ray.resume import count_markers, parallel_map, reuse_completed
from e5ray.reuse_plan import log_reuse, prepare_reuse, summarize
from e5ray.shards import MARKERS_DIR, REJECTS_DIR, SHARDS_DIR, ShardTask
from e5ray.space import EmbeddingSpace
from e5ray.storage import OutputDir
from e5ray.tempfiles import remove_dead_temp_files
from e5ray.units import RowGroupStats, UnitRange, UnitTarget, needs_footer
from e5ray.versions import VERSIONS_DIR, commit, list_versions, load_latest, next_manifest
from e5ray.worker import DATA_ERRORS, ShardFailure, WorkerSpec

__all__ = ["JobConfig", "PlannedRun", "RunInterrupted", "ShardFailures", "plan_run", "reuse_completed", "run_job"]

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


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: `finished` units have markers and the next run reuses them."""

    def __init__(self, finished: int, removed_temp_files: int = 0) -> None:
        super().__init__(finished)
        self.finished = finished
        self.removed_temp_files = removed_temp_files

    def __str__(self) -> str:
        return f"interrupted; {self.finished} shards finished and will be reused: rerun the same command"


@dataclass
class PlannedRun:
    """What a run will do, decided before any worker starts (also what --dry-run prints)."""

    sources: list[SourceShard]
    versions: list[int]
    previous: Manifest | None
    space: EmbeddingSpace
    plan: RefreshPlan
    units: list[ShardTask]  # the plan's tasks split into work units
    reused: list[ShardEntry]
    todo: list[ShardTask]


def input_columns(config: JobConfig) -> list[tuple[str, str]]:
    """(flag, column) for every input column the run reads."""
    inp = config.input
    return [
        ("--id-column", inp.id_column),
        ("--text-column", inp.text_column),
        *(("--keep-columns", name) for name in inp.keep_columns),
    ]


def plan_run(config: JobConfig, output: OutputDir, create_output: bool = True) -> PlannedRun:
    """Discover, check, and decide what to carry, reuse and embed. Loads no model (the
    model's files are hashed to know the space) and writes nothing but, with
    `create_output`, the output directory."""
    options = config.storage_options()
    sources = discover(config.input.uri, config.input.format, options)
    preflight(config.input.uri, config.output.uri, sources, input_columns(config), options, create_output)
    versions = list_versions(output)
    previous = load_latest(output, versions)
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

    def make_task(source: SourceShard) -> ShardTask:
        inp = config.input
        return ShardTask(
            source,
            space.fingerprint,
            inp.id_column,
            inp.text_column,
            model.prefix,
            config.output.format,
            keep_columns=inp.keep_columns,
        )

    reembed_all = config.full or config.reuse == "none"
    plan = plan_refresh(sources, previous, make_task, reembed_all)
    # --full (and --reuse none) embeds again what the previous version holds, but still
    # reuses what a killed such run finished since (files no version references yet): an
    # interrupted switch to a new space resumes instead of starting over.
    held = previous.referenced() if reembed_all and previous else set()
    target = config.compute.unit_target
    units = split_tasks(plan.tasks, target, read_footers(plan.tasks, target, options))
    reused, todo = reuse_completed(units, output, exclude=held)
    return PlannedRun(sources, versions, previous, space, plan, units, reused, todo)


def _count_markers(tasks: list[ShardTask], output: OutputDir) -> int:
    """How many of `tasks` have a completion marker (one listing per marker folder, not one request per task)."""
    return count_markers(tasks, output)


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
    dirs = ("", SHARDS_DIR, MARKERS_DIR, REJECTS_DIR, VERSIONS_DIR)
    return remove_dead_temp_files(output.root, dirs, include_own=True)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_job(config: JobConfig, executor: Executor | None = None, progress: Progress | None = None) -> Manifest:
    """Plan, embed what is needed, commit a new manifest version; returns the manifest.

    `progress` (optional) is told the plan and every finished shard. Ctrl-C raises
    RunInterrupted after this run's temporary files are removed.
    """
    started, t0 = _now(), time.perf_counter()
    run_id = uuid.uuid4().hex[:12]
    output = OutputDir(config.output.uri, config.storage_options())
    planned = plan_run(config, output)
    sources, versions, previous, space = planned.sources, planned.versions, planned.previous, planned.space
    plan, units, reused, todo = planned.plan, planned.units, planned.reused, planned.todo
    # Row-level reuse (e5ray.reuse_plan): the tasks left to embed look rows up by content hash.
    reuse = prepare_reuse(
        config.reuse,
        config.full,
        previous,
        config.output.format,
        config.model.long_text,
        output.uri,
        config.storage_options(),
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
    reporter = progress or Progress(mode="off")
    reporter.run_id = run_id
    sizes = unit_bytes(units)
    reporter.start([sizes[(t.source.uri, t.unit)] for t in todo], carried=len(plan.carried), reused=len(reused))
    t_embed = time.perf_counter()
    embedded: list[ShardEntry] = []
    failed: list[ShardFailure] = []
    try:
        for result in run(todo, WorkerSpec.for_job(config, space.fingerprint), config.compute):
            if isinstance(result, ShardFailure):
                failed.append(result)
                continue
            embedded.append(result)
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
        reporter.finish("interrupted")
        removed = _remove_own_temp_files(output)
        # Markers on disk, not results received: a unit may have finished after the last one arrived.
        finished = max(len(embedded), _count_markers(todo, output))
        raise RunInterrupted(finished + len(reused), len(removed)) from None
    except BaseException:
        reporter.finish("failed")
        raise
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
        reuse=summarize(reuse, reused + embedded, len(plan.carried)),
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
        plan.carried + reused + embedded,
        plan.changes(),
        config.output.format,
        run_info,
    )
    name = commit(output, manifest)
    log.info("committed %s/%s: %s", config.output.uri, name, json.dumps(manifest.totals))
    log_reuse(run_info.reuse)
    return manifest
