"""The finish phase: from the run's entries to the next manifest version, not yet committed.

Every entry of the version (carried, resumed, embedded) is checked before the version is
built (`e5ray.job.precommit`: ids unique across shards or resolved by the policy, one id
type, every referenced file present), so a version that would not read back as one table is
never committed. The run's record (`RunInfo`) says what this run did itself and with which
libraries, so a later refresh can tell what changed. The version's row changes are
computed from the entries and written beside it before the commit (`e5ray.output.row_changes`):
only the id and content-hash columns of the files it does not share with the previous version.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

from e5ray import __version__
from e5ray.config import JobConfig
from e5ray.job.embed import Embedded
from e5ray.job.plan import PlannedRun
from e5ray.job.precommit import finish_version
from e5ray.output.change_file import write_change_file
from e5ray.output.manifest import Manifest, RunInfo, ShardEntry
from e5ray.output.row_changes import compute_row_changes
from e5ray.output.versions import next_manifest
from e5ray.refresh.prepare import ReuseSetup, summarize
from e5ray.store.failures import storage_step
from e5ray.store.filesystem import OutputDir


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def checked_entries(
    config: JobConfig, output: OutputDir, planned: PlannedRun, embedded: Embedded
) -> tuple[list[ShardEntry], int]:
    """Every entry of the new version (carried, resumed, embedded), checked; and how many
    rows the duplicate-id policy rejected."""
    entries = sorted(
        planned.plan.carried + planned.reused + embedded.entries,
        key=lambda e: (e.source.uri, e.unit.start if e.unit else -1),
    )
    with storage_step("checking the new version of", config.output.uri, config.storage_options()):
        return finish_version(
            output,
            entries,
            config.rows.duplicate_ids,
            {e.source.uri for e in planned.plan.carried},
            config.output.format,
        )


def next_version(
    config: JobConfig, output: OutputDir, planned: PlannedRun, shards: list[ShardEntry], run: RunInfo
) -> Manifest:
    """The manifest that follows the previous version (not yet committed); its change file
    (e5ray.output.change_file) is written here, create-only, before the version that names it."""
    inp = config.input
    source = {
        "uri": inp.uri,
        "format": inp.format,
        "id_column": inp.id_column,
        "text_column": inp.text_column,
        **({"keep_columns": list(inp.keep_columns)} if inp.keep_columns else {}),
    }
    changes = planned.plan.changes()
    manifest = next_manifest(
        planned.previous, planned.versions, planned.space, source, shards, changes, config.output.format, run
    )
    with storage_step("recording the row changes of", config.output.uri, config.storage_options()):
        rows, seconds = compute_row_changes(
            output,
            planned.previous,
            manifest.shards,
            planned.space,
            config.full,
            config.output.format,
            config.rows.duplicate_ids,
        )
        ref = write_change_file(output, manifest.version, rows)
    if "path" in ref:  # what listing the rows cost (BENCHMARKS.md, "Change feed")
        ref["seconds"] = round(seconds, 3)
    # totals are derived again, now with the row changes
    return dataclasses.replace(manifest, row_changes=ref, totals={})


def run_record(
    config: JobConfig,
    run_id: str,
    clock: tuple[str, float],
    planned: PlannedRun,
    embedded: Embedded,
    reuse: ReuseSetup,
    duplicates: int,
    libraries: dict[str, str],
) -> RunInfo:
    """What this run did itself: its units, tokens and speed, and the libraries it ran with."""
    started, t0 = clock
    entries: list[ShardEntry] = embedded.entries
    tokens = sum(e.tokens for e in entries)
    return RunInfo(
        id=run_id,
        started=started,
        finished=now(),
        seconds=round(time.perf_counter() - t0, 3),
        e5ray_version=__version__,
        full=config.full,
        device=config.compute.device,
        executor=config.compute.executor,
        executor_reason=planned.executor.reason,
        embedded_shards=len(entries),
        reused_shards=len(planned.reused),
        carried_shards=len(planned.plan.carried),
        tokens=tokens,
        padded_tokens=sum(e.padded_tokens for e in entries),
        tokens_per_s=round(tokens / embedded.seconds, 1) if embedded.seconds > 0 and tokens else 0.0,
        duplicate_ids=config.rows.duplicate_ids,
        duplicates_rejected=duplicates,
        reuse=summarize(reuse, planned.reused + entries, len(planned.plan.carried)),
        libraries=libraries,
    )
