"""What an output holds, per one listing of each folder: the cheap view resume and verify share.

A listing gives each file's size and stamp (ETag, else mtime) without reading it, so a resume
and `verify --quick` check thousands of units with a few paginated LISTs instead of a GET per
file. Folders are listed in threads, and so are the reads that follow (`parallel_map`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from e5ray.output.layout import SHARDS_DIR, UNIT_FOLDERS
from e5ray.store.filesystem import OutputDir, info_stamp

# Object stores answer small reads in tens of ms; this many in flight hides that latency
# without holding many connections (s3fs' default pool is 10 per host, raised by aiobotocore).
READ_THREADS = 32

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Iterable[T], threads: int = READ_THREADS) -> list[R]:
    """`[fn(x) for x in items]`, run in threads (I/O bound: the GIL is released while waiting)."""
    items = list(items)
    if len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(fn, items))


@dataclass(frozen=True)
class Listed:
    """A file as a listing shows it."""

    size: int
    stamp: str | None


def list_files(output: OutputDir, folder: str = SHARDS_DIR) -> dict[str, Listed]:
    """Every file under `folder` of the output, from one (paginated) listing."""
    if not output.exists(folder):
        return {}
    found: dict[str, Any] = output.fs.find(output.path(folder), detail=True)
    return {output.rel(path): Listed(int(info.get("size") or 0), info_stamp(info)) for path, info in found.items()}


# Every folder a unit writes to: data files, completion markers, rejects, ids (e5ray.output.layout).
OUTPUT_FOLDERS = UNIT_FOLDERS


def list_output(output: OutputDir, folders: Iterable[str] = OUTPUT_FOLDERS) -> dict[str, Listed]:
    """`list_files` of each folder (one listing each), merged: what resume and verify look up.

    The folders are listed at once, in threads: a listing's pages come one after the other
    (each names the next), so at 10,000 units the ~20 pages of `markers/`, `shards/` and `ids/`
    would otherwise take ~20 page latencies in a row."""
    listing: dict[str, Listed] = {}
    for found in parallel_map(lambda folder: list_files(output, folder), folders):
        listing.update(found)
    return listing
