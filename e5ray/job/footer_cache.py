"""Parquet footers read once: the row-group stats of large sources, cached in the output.

Why: planning splits a large Parquet source by its row groups, which needs its footer (one
ranged read per file, `e5ray.job.plan.read_footers`). A resume of a killed run, and a refresh
that plans an unchanged file again (`--full`, a new space), would read the same footers again:
at scale, one request per large file before any unit starts.

The stats of every footer a run knows are written to one small JSON object,
`markers/footers-<sha256 of its content>.json`, and the next plan reads it from the listing
of the output it already makes for resuming (`e5ray.job.resume`). Invariants:
- an entry is keyed by the source's URI, size, stamp (ETag, mtime or content hash) and the
  text column: a file that changed in any way, or a plan of another column, misses the cache
  and has its footer read; an unchanged file never does;
- the object is a cache only: one that is unreadable or not of this format is ignored (its
  footers are read again), never an error;
- its name is its content's hash, written create-only: a plan that knows nothing new writes
  nothing; a new one replaces the old (the run removes those it read once its own is
  written) and is listed in the run's lease before it is written, so a concurrent gc spares
  it. No version references it: gc removes it like a checkpoint of a finished run, and the
  next plan reads its footers again;
- `--dry-run` writes nothing (only a run holding a lease writes the cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from e5ray.corpus.shard import SourceShard
from e5ray.corpus.units import RowGroupStats
from e5ray.output.layout import MARKERS_DIR
from e5ray.output.listing import Listed, parallel_map
from e5ray.store.filesystem import OutputDir

log = logging.getLogger("e5ray")

PREFIX = f"{MARKERS_DIR}/footers-"
FORMAT = "e5ray-footers"
Footers = dict[str, list[RowGroupStats]]  # footer key -> row groups


def is_footer_cache(rel: str) -> bool:
    """Whether `rel` (relative to the output root) names a footer cache, never a unit's marker."""
    return rel.startswith(PREFIX) and rel.endswith(".json") and not rel.endswith(".done.json")


def footer_key(source: SourceShard, text_column: str) -> str:
    """What a cached footer is valid for: this exact file (URI, size, stamp) and text column."""
    blob = json.dumps([source.uri, source.size, source.stamp, text_column]).encode()
    return hashlib.sha256(blob).hexdigest()


def _read_one(output: OutputDir, rel: str) -> Footers:
    try:
        data = json.loads(output.read_bytes(rel))
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("footers"), dict):
            raise ValueError(f"not a {FORMAT} object")
        return {
            str(key): [RowGroupStats(int(rows), int(text)) for rows, text in groups]
            for key, groups in data["footers"].items()
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("footer cache %s ignored (the footers are read instead): %s: %s", rel, type(exc).__name__, exc)
        return {}


def read_footer_cache(output: OutputDir, listing: dict[str, Listed]) -> tuple[Footers, list[str]]:
    """Every footer the caches in `listing` hold, and the caches' paths (normally one)."""
    paths = sorted(rel for rel in listing if is_footer_cache(rel))
    known: Footers = {}
    for found in parallel_map(lambda rel: _read_one(output, rel), paths):
        known.update(found)
    return known, paths


def cache_content(footers: Footers) -> bytes:
    """The cache object's bytes: the same footers always give the same bytes (and name)."""
    data: dict[str, Any] = {
        "format": FORMAT,
        "footers": {key: [[g.rows, g.text_bytes] for g in footers[key]] for key in sorted(footers)},
    }
    return json.dumps(data, separators=(",", ":")).encode()


def write_footer_cache(
    output: OutputDir, footers: Footers, read: Iterable[str], register: Callable[[list[str]], None]
) -> str | None:
    """Write `footers` as the cache unless one of `read` (the caches found) holds exactly them;
    then remove the others of `read`. `register` (the run's lease) is told the path first.
    Returns the cache's path (None when there is nothing to cache). Never raises on a failed
    write: the cache only saves reads."""
    read = list(read)
    if not footers:
        return None
    content = cache_content(footers)
    rel = f"{PREFIX}{hashlib.sha256(content).hexdigest()[:32]}.json"
    try:
        if rel not in read:
            register([rel])
            output.write_create_only(rel, content)
        for old in read:
            if old != rel:
                output.remove(old)
    except (OSError, FileExistsError) as exc:
        log.warning("footer cache %s not written (the next plan reads the footers): %s", rel, exc)
    return rel
