"""What a run will do, decided before any worker starts: `plan_run` (also what --dry-run prints).

Two steps, because a run takes its lease (`e5ray.store.lease`) between them:
1. `prepare_run`: discover the corpus, run the preflight checks, read the output's
   versions, know the embedding space. Writes nothing (but, with `create_output`, the
   output directory), so a run refused here leaves no lease behind.
2. `plan_units`: decide what to carry, re-embed and reuse, and which executor runs it
   (`--executor auto`: `e5ray.executors.base.choose_executor`); split the rest into work
   units (`e5ray.corpus.units`) sized for the executor's pool (`balanced_target`: a few units per
   actor, so the run does not end on one actor's long unit). A carried entry whose files are gone is embedded again
   (`e5ray.job.precommit`); what is carried or reused is added to the lease, so that a
   concurrent `e5ray gc` spares it.

Every storage step names its operation and URI when the store fails (`e5ray.store.failures`),
and checks the run's `--deadline` before it starts (`e5ray.store.timeouts`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from e5ray.config import JobConfig
from e5ray.corpus.preflight import preflight
from e5ray.corpus.sources import SourceShard, discover, parquet_row_groups
from e5ray.corpus.units import RowGroupStats, UnitTarget, balanced_target, needs_footer
from e5ray.errors import UsageError
from e5ray.executors.base import ExecutorChoice, choose_executor, planned_pool_size
from e5ray.job.footer_cache import Footers, footer_key, read_footer_cache, write_footer_cache
from e5ray.job.precommit import check_planned_id_types, recheck_carried
from e5ray.job.refresh_plan import RefreshPlan, plan_refresh, planned_tokens, split_tasks
from e5ray.job.resume import plan_resume
from e5ray.model.describe import describe_space
from e5ray.model.space import EmbeddingSpace
from e5ray.output.listing import Listed, list_output, parallel_map
from e5ray.output.manifest import Manifest, ShardEntry, check_space
from e5ray.output.versions import list_versions, load_latest
from e5ray.store.failures import storage_step
from e5ray.store.filesystem import OutputDir
from e5ray.store.lease import Lease
from e5ray.store.timeouts import Deadline
from e5ray.worker.task import ShardTask
from e5ray.worker.worker import DATA_ERRORS


@dataclass(frozen=True)
class _FooterRun:
    """What reading footers needs of the run: storage options, and the lease (None: --dry-run)."""

    output: OutputDir
    options: dict[str, Any] | None
    lease: Lease | None


@dataclass
class PreparedRun:
    """The corpus, the output's versions and the run's embedding space."""

    sources: list[SourceShard]
    versions: list[int]
    previous: Manifest | None
    space: EmbeddingSpace


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
    checkpoints: list[str] = field(default_factory=list)  # read at planning (e5ray.job.checkpoints)
    executor: ExecutorChoice = ExecutorChoice("ray")  # what runs the units (`--executor auto` resolved)


def read_footers(
    tasks: list[ShardTask],
    target: UnitTarget,
    storage_options: dict[str, Any] | None,
    known: Footers | None = None,
) -> dict[str, list[RowGroupStats]]:
    """The row groups of the Parquet sources that may hold more than one unit, by URI: from
    `known` (the footer cache, by `footer_key`) where it holds the file as it is now, else read
    from the file, in parallel."""
    big = [t.source for t in tasks if t.source.format == "parquet" and needs_footer(t.source.size, target)]
    known = known or {}

    def footer(src: SourceShard) -> list[RowGroupStats] | None:
        cached = known.get(footer_key(src, tasks[0].text_column))
        if cached is not None:
            return cached
        try:
            return parquet_row_groups(src, tasks[0].text_column, storage_options)
        except DATA_ERRORS:  # embedded whole: the worker reports what is wrong with it, with the file
            return None

    stats = parallel_map(footer, big)
    return {src.uri: groups for src, groups in zip(big, stats, strict=True) if groups is not None}


def _planned_footers(
    tasks: list[ShardTask], sources: list[SourceShard], target: UnitTarget, listing: dict[str, Listed], run: _FooterRun
) -> dict[str, list[RowGroupStats]]:
    """`read_footers` through the footer cache (`e5ray.job.footer_cache`) that `listing` (the
    output's, made once for resuming too) shows. With a lease, the cache is brought up to date:
    what this plan read, and what the old cache holds of sources still in the corpus."""
    if not tasks:
        return {}
    output = run.output
    known, caches = read_footer_cache(output, listing)
    footers = read_footers(tasks, target, run.options, known)
    if run.lease is not None:
        keys = {footer_key(src, tasks[0].text_column): src.uri for src in sources}
        keep = {key: known[key] for key in keys if key in known}
        keep.update({key: footers[uri] for key, uri in keys.items() if uri in footers})
        write_footer_cache(output, keep, caches, lambda paths: run.lease.add(paths, flush=True) if run.lease else None)
    return footers


def input_columns(config: JobConfig) -> list[tuple[str, str]]:
    """(flag, column) for every input column the run reads."""
    inp = config.input
    return [
        ("--id-column", inp.id_column),
        ("--text-column", inp.text_column),
        *(("--keep-columns", name) for name in inp.keep_columns),
    ]


def prepare_run(
    config: JobConfig, output: OutputDir, create_output: bool = True, deadline: Deadline | None = None
) -> PreparedRun:
    """Discover, check and know the space. Loads no model (the model's files are hashed to
    know the space) and writes nothing but, with `create_output`, the output directory."""
    deadline = deadline or Deadline(None)
    options = config.storage_options()
    deadline.check("listing the input")
    with storage_step("listing the input", config.input.uri, options):
        sources = discover(config.input.uri, config.input.format, options)
        preflight(config.input.uri, config.output.uri, sources, input_columns(config), options, create_output)
    deadline.check("reading the output's versions")
    with storage_step("reading the versions of", config.output.uri, options):
        versions = list_versions(output)
        previous = load_latest(output, versions)
    deadline.check("loading the model")
    model = config.model
    with storage_step("staging the model from", str(model.path or model.name), options):
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
    return PreparedRun(sources, versions, previous, space)


def _task_maker(config: JobConfig, space_fingerprint: str) -> Callable[[SourceShard], ShardTask]:
    """The task of a whole source under this run's settings (split into units later)."""
    inp = config.input

    def make_task(source: SourceShard) -> ShardTask:
        return ShardTask(
            source,
            space_fingerprint,
            inp.id_column,
            inp.text_column,
            config.model.prefix,
            config.output.format,
            config.rows.on_invalid_utf8,
            config.rows.id_type,
            keep_columns=inp.keep_columns,
        )

    return make_task


def plan_units(
    config: JobConfig,
    output: OutputDir,
    prepared: PreparedRun,
    deadline: Deadline | None = None,
    lease: Lease | None = None,
) -> PlannedRun:
    """Carry, re-embed, split into units and reuse finished units; `lease` (when held) is
    told every file the plan carries or reuses."""
    deadline = deadline or Deadline(None)
    options = config.storage_options()
    sources, previous, space = prepared.sources, prepared.previous, prepared.space
    make_task = _task_maker(config, space.fingerprint)
    reembed_all = config.full or config.reuse == "none"
    plan = plan_refresh(sources, previous, make_task, reembed_all)
    deadline.check("checking the files of carried shards")
    with storage_step("listing the shards of", config.output.uri, options):
        recheck_carried(output, plan, sources, make_task)
    # --full (and --reuse none) embeds again what the previous version holds, but still
    # reuses what a killed such run finished since (files no version references yet): an
    # interrupted switch to a new space resumes instead of starting over.
    held = previous.referenced() if reembed_all and previous else set()
    # Units sized for the pool, so that largest-first scheduling ends in a short last wave:
    # from the files' sizes to choose which footers to read, then from the footers' text.
    # `--executor auto` decided from the files' sizes, before footers: the pool's size depends on it.
    executor = choose_executor(config.compute, planned_tokens(plan.tasks))
    actors = planned_pool_size(replace(config.compute, executor=executor.name))
    target = balanced_target(config.compute.unit_target, planned_tokens(plan.tasks), actors)
    with storage_step("checking completion markers in", config.output.uri, options):
        listing = list_output(output) if plan.tasks else {}  # the footer cache and resume read it
    deadline.check("reading the footers of large Parquet sources")
    with storage_step("reading the footers of", config.input.uri, options):
        footers = _planned_footers(plan.tasks, sources, target, listing, _FooterRun(output, options, lease))
    target = balanced_target(config.compute.unit_target, planned_tokens(plan.tasks, footers), actors)
    units = split_tasks(plan.tasks, target, footers)
    deadline.check("checking completion markers")
    with storage_step("checking completion markers in", config.output.uri, options):
        resume = plan_resume(units, output, exclude=held, listing=listing)
        reused, todo = resume.reused, resume.todo
        if lease is not None:
            lease.add([path for e in plan.carried + reused for path in e.paths()], flush=True)
    deadline.check("reading the id types of the sources to embed")
    with storage_step("reading the id types of", config.input.uri, options):
        check_planned_id_types(plan.carried + reused, todo, options)
    return PlannedRun(
        sources, prepared.versions, previous, space, plan, units, reused, todo, resume.checkpoints, executor
    )


def plan_run(config: JobConfig, output: OutputDir, create_output: bool = True) -> PlannedRun:
    """`prepare_run` then `plan_units`, without a lease: what --dry-run shows."""
    return plan_units(config, output, prepare_run(config, output, create_output))
