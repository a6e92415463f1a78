"""What a run checks between planning and committing, so that a version never loses rows.

- `recheck_carried`: an entry the plan would carry forward is embedded again when any of
  its files is gone or has another size (a listing, not a download), or when ids it
  rejected as duplicates were kept by a shard that is no longer carried unchanged.
- `check_planned_id_types`: while planning, before anything is embedded, the ids of the
  entries carried or reused and of every source to embed (peeked: a Parquet footer, the
  first JSON record) must be of one type.
- `finish_version`: before the commit, the version's ids must be of one type
  (`e5ray.corpus.rows`), cross-shard duplicates are rejected under `--duplicate-ids`
  (`e5ray.output.dupes`), and every file the version references must exist with its recorded
  size (`e5ray.output.presence`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from e5ray.corpus.peek import peek_id_type
from e5ray.corpus.sources import SourceShard
from e5ray.errors import MixedIdTypesError
from e5ray.job.refresh_plan import RefreshPlan
from e5ray.output.dupes import DEFAULT_ROWS_PER_PARTITION, resolve_duplicates, stale_dedup
from e5ray.output.listing import parallel_map
from e5ray.output.manifest import ShardEntry
from e5ray.output.presence import absent_files, check_present, entry_files, listed_sizes
from e5ray.store.filesystem import OutputDir
from e5ray.worker.task import ShardTask

log = logging.getLogger("e5ray")


def recheck_carried(
    output: OutputDir,
    plan: RefreshPlan,
    sources: list[SourceShard],
    make_task: Callable[[SourceShard], ShardTask],
) -> list[str]:
    """Move carried entries that cannot be carried to the plan's tasks; returns their source URIs."""
    if not plan.carried:
        return []
    sizes = listed_sizes(output, [p for e in plan.carried for p, _ in entry_files(e)])
    carried_uris = {e.source.uri for e in plan.carried}
    redo = {e.source.uri for e in plan.carried if absent_files(e, sizes)}
    # A carried shard that gave ids away to a shard that changed or left must take them back.
    redo |= {e.source.uri for e in stale_dedup(plan.carried, carried_uris - redo)}
    if not redo:
        return []
    by_uri = {s.uri: s for s in sources}
    plan.carried = [e for e in plan.carried if e.source.uri not in redo]
    plan.tasks.extend(make_task(by_uri[uri]) for uri in sorted(redo))
    log.warning(
        "%d carried shard(s) are embedded again (files gone, or duplicates to restore): %s", len(redo), sorted(redo)[:5]
    )
    return sorted(redo)


def finish_version(
    output: OutputDir,
    shards: list[ShardEntry],
    duplicate_ids: str,
    carried_uris: set[str],
    output_format: str,
    rows_per_partition: int = DEFAULT_ROWS_PER_PARTITION,
) -> tuple[list[ShardEntry], int]:
    """The version's entries ready to commit, and how many cross-shard duplicates were rejected."""
    check_uniform_id_types(shards)
    shards, duplicates = resolve_duplicates(
        output, shards, duplicate_ids, carried_uris, output_format, rows_per_partition
    )
    if duplicates:
        log.warning(
            "%d row(s) rejected: their ids are in an earlier shard (--duplicate-ids %s)", duplicates, duplicate_ids
        )
    check_present(output, shards)
    return shards, duplicates


def check_uniform_id_types(entries: Sequence[ShardEntry]) -> None:
    """Refuse a version whose non-empty shards hold ids of different types (the backstop of
    `check_planned_id_types`, for what a peek could not tell)."""
    first: dict[str, str] = {}
    for entry in entries:
        if entry.id_type is None or entry.rows == 0:
            continue  # written before ids were typed in the entry, or empty: nothing to mix
        first.setdefault(entry.id_type, entry.source.uri)
    refuse_mixed_id_types(first, "nothing was committed")


# Beyond this many sources to embed, planning peeks one source per format (see below).
PEEK_EVERY_SOURCE_UP_TO = 256


def check_planned_id_types(
    entries: Sequence[ShardEntry], tasks: Sequence[ShardTask], storage_options: dict[str, Any] | None
) -> None:
    """Refuse, before anything is embedded, a run whose carried or reused entries and the
    sources it will embed (peeked: `e5ray.corpus.peek`) hold ids of different types.

    Every source is peeked up to `PEEK_EVERY_SOURCE_UP_TO` of them (one sized GET each, in
    threads); a larger plan peeks the first source of each format, so that planning's requests
    stay bounded at any corpus size. A mix within one format of such a corpus is then refused by
    the check before the commit (`check_uniform_id_types`), after embedding."""
    first: dict[str, str] = {}
    for entry in entries:
        if entry.id_type is not None and entry.rows:
            first.setdefault(entry.id_type, entry.source.uri)
    sources = list({t.source.uri: t for t in tasks}.values())
    if len(sources) > PEEK_EVERY_SOURCE_UP_TO:
        sources = list({t.source.format: t for t in reversed(sources)}.values())

    def peek(task: ShardTask) -> str | None:
        return peek_id_type(task.source, task.id_column, task.id_type, storage_options)

    for task, kind in zip(sources, parallel_map(peek, sources), strict=True):
        if kind is not None:
            first.setdefault(kind, task.source.uri)
    refuse_mixed_id_types(first, "nothing was embedded")


def refuse_mixed_id_types(first: dict[str, str], done: str) -> None:
    """`first`: id type -> the first shard holding it; one line if there is more than one type."""
    if len(first) > 1:
        named = "; ".join(f"{uri} has {kind} ids" for kind, uri in sorted(first.items()))
        raise MixedIdTypesError(
            f"the corpus mixes id types ({named}): its shards could not be read back as one table; "
            f"{done}. Make the ids one type, or run with --id-type string "
            "(integer ids become their decimal strings)"
        )
