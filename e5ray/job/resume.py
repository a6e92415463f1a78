"""Resume without downloading: which units a killed run finished, from one listing.

The driver's cost must not grow with the output's bytes, and its request count only
with what it must read. So a resume:
1. lists the output's `markers/`, `shards/`, `rejects/` and `ids/` folders once each (paginated
   by the store: ~1 request per 1,000 objects on S3) and keeps each file's size and
   stamp (ETag, else mtime): a constant number of listings, whatever the unit count;
2. reads, in parallel threads, only the markers that the listing shows exist (a unit
   never started costs no request). A unit's marker is in `markers/`; outputs written
   before that folder existed keep it in `shards/` (`ShardTask.legacy_marker_path`),
   which is used when `markers/` has none, so such an output still resumes;
3. reuses a marker when every file it names is in the listing with the size and stamp
   the worker recorded in the marker right after writing it. A file rewritten since
   has a new ETag (or mtime), so it is embedded again; a file is never downloaded here
   (`e5ray verify` without `--quick` is the check that reads every byte). Markers
   written before stamps were recorded fall back to reading the file's sha256.

Checkpoints (`e5ray.job.checkpoints`): the driver of the killed run also wrote its finished
units' entries into a few checkpoint objects in `markers/`. They are read first (in
parallel, a handful of GETs for thousands of units); a unit whose marker is in the listing
and whose entry is in a checkpoint and passes the checks of step 3 is reused without reading
its marker. Only the other markers are read one by one (step 2). A checkpoint is a cache:
unreadable, it is ignored; an entry of it that fails a check sends the resume to the marker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from e5ray.job.checkpoints import is_checkpoint, read_checkpoint
from e5ray.output.layout import MARKERS_DIR, SHARDS_DIR
from e5ray.output.listing import Listed, list_output, parallel_map
from e5ray.output.manifest import FileRef, ShardEntry
from e5ray.store.filesystem import OutputDir
from e5ray.store.paths import UnsafePathError, check_entry_paths
from e5ray.worker.task import ShardTask


def marker_of(task: ShardTask, listing: dict[str, Listed]) -> str | None:
    """Where `task`'s marker is, per the listing: `markers/`, else the older layout's `shards/`."""
    for path in (task.marker_path, task.legacy_marker_path):
        if path in listing:
            return path
    return None


def count_markers(tasks: list[ShardTask], output: OutputDir) -> int:
    """How many of `tasks` have a completion marker (one listing per marker folder, no reads)."""
    try:
        listing = list_output(output, (MARKERS_DIR, SHARDS_DIR))
    except OSError:
        return 0
    return sum(1 for t in tasks if marker_of(t, listing) is not None)


def _unchanged(output: OutputDir, ref: FileRef, listed: Listed | None) -> bool:
    if listed is None or listed.size != ref.bytes:
        return False
    if ref.stamp is not None:
        return listed.stamp == ref.stamp
    try:  # a marker from before stamps were recorded
        return output.sha256(ref.path) == ref.sha256
    except FileNotFoundError:
        return False


def _read_marker(output: OutputDir, rel: str) -> ShardEntry | None:
    """The marker's entry; None when it is gone or unreadable. A marker naming a file
    outside the output root is refused (UnsafePathError), never followed."""
    try:
        data = json.loads(output.read_bytes(rel))
        check_entry_paths(data, f"{rel}: entry")  # a marker never names a file outside the output
        return ShardEntry.from_dict(data)
    except UnsafePathError:
        raise
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):  # gone, or not a marker we can read
        return None


@dataclass(frozen=True)
class ResumePlan:
    """What `plan_resume` found: units to reuse, units to embed, and the checkpoints it read."""

    reused: list[ShardEntry]
    todo: list[ShardTask]
    checkpoints: list[str]  # removed after the commit: the manifest then holds their entries


def reuse_completed(
    tasks: list[ShardTask],
    output: OutputDir,
    exclude: set[str] | frozenset[str] = frozenset(),
    listing: dict[str, Listed] | None = None,
) -> tuple[list[ShardEntry], list[ShardTask]]:
    """Split tasks into those a previous (killed) run finished, checked, and the rest.

    A marker naming a file in `exclude` is not reused. `listing`: the output's `list_output`,
    when the caller has made it already.
    """
    plan = plan_resume(tasks, output, exclude, listing)
    return plan.reused, plan.todo


def _cached_entries(output: OutputDir, listing: dict[str, Listed]) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Marker path -> entries, from every checkpoint the listing shows (read in parallel)."""
    paths = sorted(rel for rel in listing if is_checkpoint(rel))
    cached: dict[str, list[dict[str, Any]]] = {}
    for found in parallel_map(lambda rel: read_checkpoint(output, rel), paths):
        for marker, entries in found.items():
            cached.setdefault(marker, []).extend(entries)
    return cached, paths


def plan_resume(
    tasks: list[ShardTask],
    output: OutputDir,
    exclude: set[str] | frozenset[str] = frozenset(),
    listing: dict[str, Listed] | None = None,
) -> ResumePlan:
    """`reuse_completed`, also naming the checkpoints read."""
    if not tasks:  # a refresh with nothing to embed: no listing (its pages grow with the output)
        return ResumePlan([], [], [])
    if listing is None:
        listing = list_output(output)
    candidates = [(t, path) for t in tasks if (path := marker_of(t, listing)) is not None]
    cached, checkpoints = _cached_entries(output, listing) if candidates else ({}, [])

    def reusable(task: ShardTask, entry: ShardEntry | None) -> bool:
        if entry is None or entry.key != task.key or entry.unit != task.unit:
            return False
        if any(path in exclude for path in entry.paths()):
            return False
        return all(_unchanged(output, ref, listing.get(ref.path)) for ref in entry.refs())  # files, rejects, ids

    finished: dict[str, ShardEntry] = {}
    uncovered = []
    for task, path in candidates:
        # Checkpoints name markers/ paths only: an older output's marker in shards/ is read.
        entry = next((e for e in _entries(cached.get(path, [])) if reusable(task, e)), None)
        if entry is not None:
            finished[task.marker_path] = entry
        else:  # in no checkpoint, or its entry there fails a check: the marker is the truth
            uncovered.append((task, path))
    entries = parallel_map(lambda c: _read_marker(output, c[1]), uncovered)
    for (task, _), read in zip(uncovered, entries, strict=True):
        if read is not None and reusable(task, read):
            finished[task.marker_path] = read
    reused = [finished[t.marker_path] for t in tasks if t.marker_path in finished]
    todo = [t for t in tasks if t.marker_path not in finished]
    return ResumePlan(reused, todo, checkpoints)


def _entries(dicts: list[dict[str, Any]]) -> list[ShardEntry]:
    """The checkpoints' entries for one marker; one that does not parse, or names a file
    without a stamp (its check would download the file), is left to the marker."""
    out = []
    for data in dicts:
        try:
            entry = ShardEntry.from_dict(data)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if all(ref.stamp is not None for ref in entry.refs()):
            out.append(entry)
    return out
