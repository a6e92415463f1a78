"""Are the files a version references still there? Checked by listing, never by downloading.

Two checks use it: planning (a carried-forward entry whose files are gone, or have
another size, is embedded again instead of carried) and the commit (every file the new
version references must exist with its recorded size, else nothing is committed).
One listing per directory the entries name (normally just `shards/`), so the cost is
a few list requests, not one request per file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fsspec import AbstractFileSystem

from e5ray.storage import join


class MissingFilesError(RuntimeError):
    """Files the new version would reference are gone; nothing was committed."""

    exit_code = 1


def entry_files(entry: dict[str, Any]) -> list[tuple[str, int]]:
    """(path, bytes) of every file a shard entry references."""
    files = [(entry["path"], int(entry["bytes"]))]
    for field in ("rejects", "ids"):
        ref = entry.get(field)
        if ref:
            files.append((ref["path"], int(ref["bytes"])))
    return files


def listed_sizes(fs: AbstractFileSystem, root: str, paths: Iterable[str]) -> dict[str, int]:
    """Size of each existing file in the directories that hold `paths` (relative to root)."""
    sizes: dict[str, int] = {}
    base = root.rstrip("/")
    for directory in sorted({p.rsplit("/", 1)[0] if "/" in p else "" for p in paths}):
        target = join(root, directory) if directory else root
        try:
            listing = fs.ls(target, detail=True)
        except FileNotFoundError:
            continue
        for info in listing:
            if info.get("type") == "file":
                sizes[info["name"][len(base) + 1 :]] = int(info.get("size") or 0)
    return sizes


def absent_files(entry: dict[str, Any], sizes: dict[str, int]) -> list[str]:
    """The entry's files that are missing or have another size than recorded."""
    return [path for path, size in entry_files(entry) if sizes.get(path) != size]


def check_present(fs: AbstractFileSystem, root: str, entries: list[dict[str, Any]], output_uri: str) -> None:
    """Refuse to commit a version that references files that are gone."""
    sizes = listed_sizes(fs, root, [p for e in entries for p, _ in entry_files(e)])
    missing = [path for entry in entries for path in absent_files(entry, sizes)]
    if missing:
        raise MissingFilesError(
            f"{len(missing)} file(s) the new version of {output_uri} would reference are gone or changed "
            f"(first: {missing[0]}); nothing was committed. Run again: the next run embeds those shards anew"
        )
