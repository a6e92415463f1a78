"""Are the files a version references still there? Checked by listing, never by downloading.

Two checks use it: planning (a carried-forward entry whose files are gone, or have
another size, is embedded again instead of carried) and the commit (every file the new
version references must exist with its recorded size, else nothing is committed).
One listing per directory the entries name (`shards/`, `rejects/`, `ids/`), so the cost is
a few list requests, not one request per file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from e5ray.errors import MissingFilesError
from e5ray.output.manifest import ShardEntry
from e5ray.store.filesystem import OutputDir


def entry_files(entry: ShardEntry) -> list[tuple[str, int]]:
    """(path, bytes) of every file a shard entry references."""
    return [(ref.path, ref.bytes) for ref in entry.refs()]


def listed_sizes(output: OutputDir, paths: Iterable[str]) -> dict[str, int]:
    """Size of each existing file in the directories that hold `paths` (relative to the root)."""
    sizes: dict[str, int] = {}
    for directory in sorted({p.rsplit("/", 1)[0] if "/" in p else "" for p in paths}):
        try:
            listing = output.fs.ls(output.path(directory) if directory else output.root, detail=True)
        except FileNotFoundError:
            continue
        for info in listing:
            if info.get("type") == "file":
                sizes[output.rel(info["name"])] = int(info.get("size") or 0)
    return sizes


def absent_files(entry: ShardEntry, sizes: dict[str, int]) -> list[str]:
    """The entry's files that are missing or have another size than recorded."""
    return [path for path, size in entry_files(entry) if sizes.get(path) != size]


def check_present(output: OutputDir, entries: Sequence[ShardEntry]) -> None:
    """Refuse to commit a version that references files that are gone."""
    sizes = listed_sizes(output, [p for e in entries for p, _ in entry_files(e)])
    missing = [path for entry in entries for path in absent_files(entry, sizes)]
    if missing:
        raise MissingFilesError(
            f"{len(missing)} file(s) the new version of {output.uri} would reference are gone or changed "
            f"(first: {missing[0]}); nothing was committed. Run again: the next run embeds those shards anew"
        )
