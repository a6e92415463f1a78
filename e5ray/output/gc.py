"""`e5ray gc`: delete what no kept manifest version references.

Kept: the newest `keep` versions (with their entries' side files and change files) and whatever
`manifest.json` names. Deleted: older version files and their side and change files, shard, rejects,
ids and marker files that no kept version references, temporary files, and expired leases.
Spared: files younger than `min_age_s`, and every file a live lease protects (younger than
the lease's start, or listed in it: see `e5ray.store.lease`), since a run in progress is about to
commit them. Temporary files whose writer ran on this host and is dead are removed at any
age (see `e5ray.store.tempfiles`).
Shard, marker, rejects and ids files are looked for in `shards/`, `markers/`, `rejects/`
and `ids/` (older outputs kept markers and rejects in `shards/`). The driver's checkpoints
in `markers/` (`e5ray.job.checkpoints`) are never referenced by a version: those of a run whose
lease is gone (its commit removes its own) go like any unreferenced file, and so does the
planner's footer cache (`markers/footers-*.json`, `e5ray.job.footer_cache`).

Order (why it is safe against a run that commits meanwhile): list the candidate files
first, then read the leases, then the manifests. A candidate made by a live run was
written after its lease, so that lease is read; a run whose lease is gone has
committed before, so its version is read.
"""

from __future__ import annotations

import json
import time
from typing import Any

from e5ray.errors import UsageError
from e5ray.output.layout import IDS_DIR, INDEX_DIR, MARKERS_DIR, PROGRESS_FILE, REJECTS_DIR, SHARDS_DIR, index_path
from e5ray.output.manifest import ShardEntry
from e5ray.output.versions import MANIFEST, VERSIONS_DIR, list_versions, read_manifest, version_name
from e5ray.store.filesystem import OutputDir, info_seconds
from e5ray.store.lease import read_leases
from e5ray.store.tempfiles import writer_is_dead


def collect_garbage(
    output: OutputDir, keep: int, min_age_s: float = 3600.0, dry_run: bool = False, notes: list[str] | None = None
) -> list[str]:
    """Delete unreferenced files; returns their paths relative to the output root.
    `notes` receives one line per lease found (honoured or not)."""
    if keep < 1:
        raise UsageError(f"keep must be >= 1 (the current version is always kept), got {keep}")
    candidates: dict[str, dict[str, Any]] = {}
    for directory in (SHARDS_DIR, MARKERS_DIR, REJECTS_DIR, IDS_DIR, VERSIONS_DIR, INDEX_DIR):
        if output.exists(directory):
            candidates.update(output.fs.find(output.path(directory), detail=True))
    # A run killed while replacing manifest.json (or progress.json) leaves its temporary file at the root.
    if output.exists():
        for info in output.fs.ls(output.root, detail=True):
            name = info["name"].rsplit("/", 1)[-1]
            if info.get("type") == "file" and name.startswith((f"{MANIFEST}.tmp-", f"{PROGRESS_FILE}.tmp-")):
                candidates[info["name"]] = info
    now = time.time()
    leases = read_leases(output.fs, output.root, now)
    live = [lease for lease in leases if lease.live]
    if notes is not None:
        notes.extend(lease.describe() for lease in leases)

    versions = list_versions(output)
    manifests = [read_manifest(output, version_name(v)) for v in versions[-keep:]]
    if output.exists(MANIFEST):
        manifests.append(read_manifest(output, MANIFEST))
    referenced: set[str] = {MANIFEST}
    for manifest in manifests:
        referenced.add(version_name(manifest.version))
        if manifest.entries_file is not None:  # its entries' side file (e5ray.output.versions)
            referenced.add(manifest.entries_file)
        if manifest.row_changes and manifest.row_changes.get("path"):  # its change file (e5ray.output.change_file)
            referenced.add(manifest.row_changes["path"])
        referenced |= manifest.referenced()
    # Reuse indexes (e5ray.refresh.index) of kept versions stay; those of older versions go.
    referenced |= kept_index_files(output, [m.version for m in manifests])
    # Markers of referenced shards stay too: they let a resumed run reuse those files.
    deleted = []
    for path, info in sorted(candidates.items()):
        rel = output.rel(path)
        if rel in referenced:
            continue
        # A temporary file whose writer on this host is dead can never be finished, whatever
        # its age or lease; anything else young, or protected by a live lease, stays.
        mtime = info_seconds(info)
        orphan = output.is_local and writer_is_dead(rel)
        if not orphan and (now - mtime < min_age_s or any(lease.protects(rel, mtime) for lease in live)):
            continue
        if rel.endswith(".done.json") and _marks_referenced(output, rel, referenced):
            continue
        deleted.append(rel)
    deleted += [lease.rel for lease in leases if not lease.live]
    if not dry_run:
        for rel in deleted:
            output.remove(rel)
    return sorted(deleted)


def _marks_referenced(output: OutputDir, marker: str, referenced: set[str]) -> bool:
    try:
        entry = ShardEntry.from_dict(json.loads(output.read_bytes(marker)))
    except (OSError, ValueError, KeyError, TypeError):  # unreadable: an orphan like any other
        return False
    return any(path in referenced for path in entry.paths())


def kept_index_files(output: OutputDir, versions: list[int]) -> set[str]:
    """Files of the reuse indexes of `versions`, relative to the output root."""
    kept: set[str] = set()
    for version in versions:
        if output.exists(index_path(version)):
            kept.update(output.rel(path) for path in output.fs.find(output.path(index_path(version))))
    return kept
