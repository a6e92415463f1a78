"""Confinement of the paths an output's own files name (manifests, markers, leases).

Invariant: every path e5ray reads from a manifest, a completion marker or a lease is a
relative, normalised, '/'-separated path below the output root: no scheme, no drive, no
leading '/', no '.', '..' or empty segment, no backslash or control character. Such a
path joined to the output root can only name a file inside the output, on every
filesystem (local, S3, any fsspec store), so verify, gc, refresh and resume never read,
hash, carry forward or delete anything outside it, whatever a hand-edited or hostile
manifest says. Anything else is refused with one line naming the entry and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from e5ray.errors import UnsafePathError

__all__ = ["UnsafePathError", "check_entry_paths", "check_manifest_paths", "confined", "path_problem"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # s3:, file:, http:, C: (a drive) ...
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # one regex search: a manifest of 100,000 units names 300,000 paths


def path_problem(path: Any) -> str | None:
    """Why `path` is not a confined relative path, or None when it is one."""
    if not isinstance(path, str):
        return f"is a {type(path).__name__}, not a string"
    if not path:
        return "is empty"
    if _CONTROL.search(path):
        return "holds a control character"
    if "\\" in path:
        return "holds a backslash"
    if _SCHEME.match(path) or "://" in path:
        return "has a scheme or drive part"
    if path.startswith("/"):
        return "is absolute"
    segments = path.split("/")
    if ".." in segments:
        return "holds a '..' segment"
    if any(seg in ("", ".") for seg in segments):
        return "is not normalised (empty or '.' segment)"
    return None


def confined(path: Any, entry: str) -> str:
    """`path` itself when it is confined; UnsafePathError naming `entry` otherwise."""
    problem = path_problem(path)
    if problem is not None:
        raise UnsafePathError(f"{entry}: path {path!r:.200} {problem}; only paths inside the output root are allowed")
    return str(path)


def entry_paths(entry: dict[str, Any], label: str) -> Iterator[tuple[str, Any]]:
    """(where, path) for every file a shard entry (manifest entry or marker) names."""
    if "path" in entry:
        yield f"{label}.path", entry["path"]
    for i, ref in enumerate(entry.get("files") or []):
        if isinstance(ref, dict):
            yield f"{label}.files[{i}].path", ref.get("path")
    for field in ("rejects", "ids"):
        ref = entry.get(field)
        if isinstance(ref, dict):
            yield f"{label}.{field}.path", ref.get("path")


def check_entry_paths(entry: dict[str, Any], label: str) -> None:
    """Refuse a shard entry that names any unconfined path."""
    for where, path in entry_paths(entry, label):
        confined(path, where)


def check_manifest_paths(manifest: dict[str, Any], name: str) -> None:
    """Refuse a manifest (read from `name`) whose shards, shards file or change file name any unconfined path."""
    for key in ("shards_file", "row_changes"):  # the side files a version names
        side = manifest.get(key)
        if isinstance(side, dict) and (key == "shards_file" or "path" in side):
            confined(side.get("path"), f"{name}: {key}.path")
    for i, entry in enumerate(manifest.get("shards") or []):
        if isinstance(entry, dict):
            check_entry_paths(entry, f"{name}: shards[{i}]")
