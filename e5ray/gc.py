"""`e5ray gc`: delete what no kept manifest version references.

Kept: the newest `keep` versions and whatever `manifest.json` names. Deleted: older
version files, shard, rejects and marker files that no kept version references,
and temporary files. Files younger than `min_age_s` are spared, since a run in
progress may be about to commit them; temporary files whose writer ran on this host
and is dead are removed at any age (see `e5ray.tempfiles`).
"""

from __future__ import annotations

import time
from typing import Any

from e5ray.manifest import MANIFEST, VERSIONS_DIR, list_versions, read_json, version_name
from e5ray.progress import PROGRESS_FILE
from e5ray.shards import SHARDS_DIR
from e5ray.storage import filesystem_for, is_local_fs, join
from e5ray.tempfiles import writer_is_dead


def _mtime(info: dict[str, Any]) -> float:
    value = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    if value is None:
        return 0.0
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def collect_garbage(
    output_uri: str,
    keep: int,
    min_age_s: float = 3600.0,
    storage_options: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Delete unreferenced files; returns their paths relative to the output root."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the current version is always kept), got {keep}")
    fs, root = filesystem_for(output_uri, storage_options)
    versions = list_versions(output_uri, storage_options)
    kept_versions = versions[-keep:]
    referenced: set[str] = {MANIFEST}
    manifests = [read_json(output_uri, version_name(v), storage_options) for v in kept_versions]
    if fs.exists(join(root, MANIFEST)):
        manifests.append(read_json(output_uri, MANIFEST, storage_options))
    for manifest in manifests:
        referenced.add(version_name(manifest["version"]))
        for shard in manifest["shards"]:
            referenced.add(shard["path"])
            if shard.get("rejects"):
                referenced.add(shard["rejects"]["path"])
    # Markers of referenced shards stay too: they let a resumed run reuse those files.
    now = time.time()
    local = is_local_fs(fs)
    deleted = []
    candidates: dict[str, dict[str, Any]] = {}
    for directory in (SHARDS_DIR, VERSIONS_DIR):
        base = join(root, directory)
        if fs.exists(base):
            candidates.update(fs.find(base, detail=True))
    # A run killed while replacing manifest.json (or progress.json) leaves its temporary file at the root.
    if fs.exists(root):
        for info in fs.ls(root, detail=True):
            base = info["name"].rsplit("/", 1)[-1]
            if info.get("type") == "file" and base.startswith((f"{MANIFEST}.tmp-", f"{PROGRESS_FILE}.tmp-")):
                candidates[info["name"]] = info
    for path, info in sorted(candidates.items()):
        rel = path[len(root.rstrip("/")) + 1 :]
        if rel in referenced:
            continue
        # A temporary file whose writer on this host is dead can never be finished.
        if now - _mtime(info) < min_age_s and not (local and writer_is_dead(rel)):
            continue
        if rel.endswith(".done.json"):
            try:
                marker = read_json(output_uri, rel, storage_options)
            except (OSError, ValueError):
                marker = {}
            if marker.get("path") in referenced:
                continue
        deleted.append(rel)
    if not dry_run:
        for rel in deleted:
            fs.rm_file(join(root, rel))
    return sorted(deleted)
