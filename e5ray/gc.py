"""`e5ray gc`: delete what no kept manifest version references.

Kept: the newest `keep` versions and whatever `manifest.json` names. Deleted: older
version files, shard, rejects, ids and marker files that no kept version references,
temporary files, and expired leases. Spared: files younger than `min_age_s`, and every
file a live lease protects (younger than the lease's start, or listed in it: see
`e5ray.lease`), since a run in progress is about to commit them.

Order (why it is safe against a run that commits meanwhile): list the candidate files
first, then read the leases, then the manifests. A candidate made by a live run was
written after its lease, so that lease is read; a run whose lease is gone has
committed before, so its version is read.
"""

from __future__ import annotations

import time
from typing import Any

from e5ray.lease import LEASES_DIR, info_seconds, read_leases
from e5ray.manifest import MANIFEST, VERSIONS_DIR, list_versions, read_json, read_manifest, version_name
from e5ray.shards import SHARDS_DIR
from e5ray.storage import filesystem_for, join


def collect_garbage(
    output_uri: str,
    keep: int,
    min_age_s: float = 3600.0,
    storage_options: dict[str, Any] | None = None,
    dry_run: bool = False,
    notes: list[str] | None = None,
) -> list[str]:
    """Delete unreferenced files; returns their paths relative to the output root.
    `notes` receives one line per lease found (honoured or expired)."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the current version is always kept), got {keep}")
    fs, root = filesystem_for(output_uri, storage_options)
    candidates: dict[str, dict[str, Any]] = {}
    for directory in (SHARDS_DIR, VERSIONS_DIR):
        base = join(root, directory)
        if fs.exists(base):
            candidates.update(fs.find(base, detail=True))
    # A run killed while replacing manifest.json leaves its temporary file at the root.
    if fs.exists(root):
        for info in fs.ls(root, detail=True):
            if info.get("type") == "file" and info["name"].rsplit("/", 1)[-1].startswith(f"{MANIFEST}.tmp-"):
                candidates[info["name"]] = info
    now = time.time()
    leases = read_leases(fs, root, now)
    live = [lease for lease in leases if lease.live]
    if notes is not None:
        notes.extend(lease.describe() for lease in leases)

    versions = list_versions(output_uri, storage_options)
    kept_versions = versions[-keep:]
    referenced: set[str] = {MANIFEST}
    manifests = [read_manifest(output_uri, version_name(v), storage_options) for v in kept_versions]
    if fs.exists(join(root, MANIFEST)):
        manifests.append(read_manifest(output_uri, MANIFEST, storage_options))
    for manifest in manifests:
        referenced.add(version_name(manifest["version"]))
        for shard in manifest["shards"]:
            referenced.add(shard["path"])
            for field in ("rejects", "ids"):
                if shard.get(field):
                    referenced.add(shard[field]["path"])
    # Markers of referenced shards stay too: they let a resumed run reuse those files.
    deleted = []
    for path, info in sorted(candidates.items()):
        rel = path[len(root.rstrip("/")) + 1 :]
        mtime = info_seconds(info)
        if rel in referenced or now - mtime < min_age_s or any(lease.protects(rel, mtime) for lease in live):
            continue
        if rel.endswith(".done.json"):
            try:
                marker = read_json(output_uri, rel, storage_options)
            except (OSError, ValueError):
                marker = {}
            if marker.get("path") in referenced:
                continue
        deleted.append(rel)
    deleted += [lease.rel for lease in leases if not lease.live]
    if not dry_run:
        for rel in deleted:
            fs.rm_file(join(root, rel))
    return sorted(deleted)


__all__ = ["LEASES_DIR", "collect_garbage"]
