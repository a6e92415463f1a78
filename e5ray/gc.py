"""`e5ray gc`: delete what no kept manifest version references.

Kept: the newest `keep` versions and whatever `manifest.json` names. Deleted: older
version files, shard, rejects and marker files that no kept version references,
and temporary files. Files younger than `min_age_s` are spared, since a run in
progress may be about to commit them.
"""

from __future__ import annotations

import time
from typing import Any

from e5ray.manifest import MANIFEST, VERSIONS_DIR, list_versions, read_json, version_name
from e5ray.reuse import INDEX_DIR, index_path
from e5ray.shards import SHARDS_DIR
from e5ray.storage import filesystem_for, join


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
    deleted = []
    candidates: dict[str, dict[str, Any]] = {}
    # Reuse indexes (e5ray.reuse) of kept versions stay; those of older versions go.
    referenced.update(kept_index_files(fs, root, kept_versions))
    for directory in (SHARDS_DIR, VERSIONS_DIR, INDEX_DIR):
        base = join(root, directory)
        if fs.exists(base):
            candidates.update(fs.find(base, detail=True))
    # A run killed while replacing manifest.json leaves its temporary file at the root.
    if fs.exists(root):
        for info in fs.ls(root, detail=True):
            if info.get("type") == "file" and info["name"].rsplit("/", 1)[-1].startswith(f"{MANIFEST}.tmp-"):
                candidates[info["name"]] = info
    for path, info in sorted(candidates.items()):
        rel = path[len(root.rstrip("/")) + 1 :]
        if rel in referenced or now - _mtime(info) < min_age_s:
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


def kept_index_files(fs: Any, root: str, versions: list[int]) -> set[str]:
    """Files of the reuse indexes of `versions`, relative to the root."""
    kept: set[str] = set()
    for version in versions:
        base = join(root, index_path(version))
        if fs.exists(base):
            kept.update(path[len(root.rstrip("/")) + 1 :] for path in fs.find(base))
    return kept
