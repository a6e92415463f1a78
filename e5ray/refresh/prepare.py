"""The driver's side of row-level refresh: which reuse a run does, its index, its summary.

`--reuse` modes:
- `rows` (default): unchanged source shards are carried forward (as `shard`); in each
  new or changed shard, rows whose content hash the previous version holds take the
  stored vector, duplicate texts within the shard are embedded once, and only the rest
  go to the model;
- `shard`: a changed source shard is embedded again whole (the behaviour before rows);
- `none`: every shard is embedded again (as `--full`, but a space change is still refused).

A previous version written before content hashes existed cannot be looked up by row:
the run falls back to `shard`, says so in the log, and records why in the manifest
(`run.reuse.effective` and `run.reuse.reason`). Shards it writes carry hashes, so the
refresh after it reuses rows again. `--full` never reuses rows (it may change the space).
Row reuse reads Parquet outputs in `--long-text truncate` mode only (a hash names one
document's token ids); other formats and modes refresh by shard, and say so.

The index of the previous version is built once, by the first run that needs it, and
kept at `index/v<N>/` for later runs (and resumes) of the same previous version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from e5ray.errors import UsageError
from e5ray.output.content_hash import SCHEME
from e5ray.output.manifest import Manifest, ShardEntry
from e5ray.refresh.index import IndexInfo, ReadStats, build_index, index_path, load_index

log = logging.getLogger("e5ray")

REUSE_COUNTS = ("rows_reused", "rows_embedded", "duplicates_folded")

REUSE_MODES = ("none", "shard", "rows")  # what a refresh reuses: see this module's docstring


@dataclass
class ReuseSetup:
    """What this run does about reuse, and the index it looks rows up in."""

    mode: str  # asked for
    effective: str  # done: a fallback may lower `rows` to `shard`
    reason: str | None = None
    index: IndexInfo | None = None
    built_now: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> bool:
        return self.effective == "rows"


def check_mode(mode: str) -> str:
    if mode not in REUSE_MODES:
        raise UsageError(f"unknown reuse mode {mode!r}; valid: {', '.join(REUSE_MODES)}")
    return mode


def prepare_reuse(
    mode: str,
    full: bool,
    previous: Manifest | None,
    output_format: str,
    long_text: str,
    output_uri: str,
    storage_options: dict[str, Any] | None,
    needs_index: bool,
) -> ReuseSetup:
    """Decide the run's reuse, building the previous version's index if rows will be looked up.

    `needs_index`: some source shard will be embedded (an all-unchanged refresh reads nothing).
    """
    check_mode(mode)
    if full:
        return ReuseSetup(mode, "none", "--full embeds every row again")
    if mode == "rows" and output_format != "parquet":
        return ReuseSetup(mode, "shard", f"row-level reuse reads Parquet outputs; this output is {output_format}")
    if mode == "rows" and long_text != "truncate":  # a row's hash names one document's token ids
        return ReuseSetup(mode, "shard", f"row-level reuse needs --long-text truncate; this run uses {long_text}")
    if mode != "rows" or previous is None:
        return ReuseSetup(mode, mode, None if previous else "no previous version: duplicates are still folded")
    shards = previous.shards
    hashed = [s for s in shards if s.hash_scheme == SCHEME and s.rows > 0]
    name = f"v{previous.version:06d}"
    if shards and not hashed:
        reason = (
            f"the previous version {name} has no content hashes (written before row-level refresh): "
            "this run refreshes by shard; the shards it writes carry hashes"
        )
        log.warning("reuse: falling back to shard-level refresh: %s", reason)
        return ReuseSetup(mode, "shard", reason)
    setup = ReuseSetup(mode, "rows")
    unhashed = sum(1 for s in shards if s.hash_scheme != SCHEME)
    if unhashed:
        setup.notes.append(f"{unhashed} of {len(shards)} shards of {name} have no hashes: not indexed")
    if not needs_index or not hashed:
        return setup
    path = index_path(previous.version)
    setup.index = load_index(output_uri, path, storage_options)
    if setup.index is None:
        rows = sum(s.rows for s in hashed)
        paths = [f.path for s in hashed for f in s.files]
        setup.index = build_index(output_uri, previous.version, paths, previous.space.dim, rows, storage_options)
        setup.built_now = True
    return setup


def summarize(setup: ReuseSetup, written: list[ShardEntry], carried: int) -> dict[str, Any]:
    """`run.reuse` of the manifest: the mode, the counts over the shards this run wrote
    (those a killed attempt of it finished included), and what was read from the previous version."""
    counts = {k: sum((e.reuse or {}).get(k, 0) for e in written) for k in REUSE_COUNTS}
    lookups = ReadStats()
    for entry in written:
        got = (entry.reuse or {}).get("lookup")
        if got:
            lookups.add(ReadStats(got["requests"], got["bytes"], got["seconds"]))
    index: dict[str, Any] | None = None
    if setup.index is not None:
        build = setup.index.build if setup.built_now else {"requests": 0, "bytes": 0, "seconds": 0.0}
        index = {
            "path": setup.index.path,
            "buckets": setup.index.buckets,
            "rows": sum(setup.index.rows),
            "built_now": setup.built_now,
            "build": build,
        }
    previous_reads = {
        "requests": lookups.requests + (index["build"]["requests"] if index else 0),
        "bytes": lookups.bytes + (index["build"]["bytes"] if index else 0),
    }
    return {
        "mode": setup.mode,
        "effective": setup.effective,
        "reason": setup.reason,
        "notes": setup.notes,
        **counts,
        "shards_written": len(written),
        "shards_carried": carried,
        "index": index,
        "lookups": lookups.to_dict(),
        "previous_version_reads": previous_reads,
    }


def reuse_summary(reuse: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of `run.reuse` the end-of-run summary prints."""
    if reuse is None:
        return None
    return {k: reuse[k] for k in ("effective", *REUSE_COUNTS, "previous_version_reads")}


def log_reuse(reuse: dict[str, Any] | None) -> None:
    """The run's reuse in one log line."""
    if reuse is None:
        return
    reads = reuse["previous_version_reads"]
    log.info(
        "reuse %s: %d rows reused, %d embedded, %d duplicates folded; %d requests, %d bytes read from the previous version",
        reuse["effective"],
        reuse["rows_reused"],
        reuse["rows_embedded"],
        reuse["duplicates_folded"],
        reads["requests"],
        reads["bytes"],
    )
