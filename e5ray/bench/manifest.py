"""Manifest size and load time at many units: plain JSON against the Parquet side file.

The entries are a real run's, repeated to `n` with what differs between real units made
distinct (source path, stamps, file paths, checksums, keys, seconds), so that the side file
compresses no better than a real one would. The side file is written and read through
`e5ray.output.versions` (`commit`, `read_manifest`, whatever the number of entries), the code every
command uses. The JSON layout is timed in its parts: `json.dumps` (commit), `json.loads` +
`Manifest.from_dict` (load), and the JSON schema check that `commit` and `read_manifest` run
on every JSON entry, which costs milliseconds an entry (jsonschema): it is timed on at most
`validate_entries` entries. Times are wall seconds (best of `repeat`) on whatever machine runs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from e5ray.output import versions
from e5ray.output.manifest import Manifest, ShardEntry
from e5ray.output.manifest_schema import validate_manifest
from e5ray.store.filesystem import OutputDir


def scaled(manifest: Manifest, n: int, seed: int = 0) -> Manifest:
    """`manifest` with `n` entries: its own, repeated, each made a distinct unit."""
    rng = random.Random(seed)
    entries = []
    for i in range(n):
        data = manifest.shards[i % len(manifest.shards)].to_dict()

        def fresh(text: str, i: int = i) -> str:
            return hashlib.sha256(f"{text}|{i}".encode()).hexdigest()

        relpath = f"part-{i // 1000:03d}/doc-{i:07d}.jsonl"
        key = fresh(relpath)[:16]
        src = data["source"]
        data["source"] = {**src, "uri": src["uri"].rsplit("/", 1)[0] + "/" + relpath, "relpath": relpath}
        data["source"]["stamp"] = f"mtime:{1795806094185208576 + rng.randrange(10**12)}"
        data["key"] = key
        for ref in [*data["files"], *(data[k] for k in ("rejects", "ids") if data.get(k))]:
            sha = fresh(ref["sha256"])
            folder, tail = ref["path"].split("/", 1)[0], ref["path"].rsplit("-", 1)[-1]
            suffix = tail[tail.index(".") :]  # .parquet, .rejects.jsonl, .ids.pq
            ref["path"] = f"{folder}/{relpath.replace('/', '_')}-{key}-{sha[:12]}{suffix}"
            ref["sha256"] = sha
            if ref.get("stamp"):
                ref["stamp"] = f"mtime:{1795806096 + rng.random() * 1e5:.7f}"
        data["seconds"] = round(data["seconds"] * (0.5 + rng.random()), 3)
        data["embed_seconds"] = round(data["embed_seconds"] * (0.5 + rng.random()), 3)
        entries.append(ShardEntry.from_dict(data))
    return dataclasses.replace(manifest, version=manifest.version + 1, shards=tuple(entries), totals={})


def _best(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return round(best, 3), result


def measure(manifest: Manifest, n: int, validate_entries: int = 10_000, repeat: int = 1) -> dict[str, Any]:
    """Bytes and seconds of both layouts for `manifest` scaled to `n` entries."""
    big = scaled(manifest, n)
    pa.array([{"a": 1}])  # pyarrow imports pandas on its first list-of-dicts conversion: not a per-commit cost
    out: dict[str, Any] = {"entries": n}
    with tempfile.TemporaryDirectory() as tmp:
        side = OutputDir(f"{tmp}/side")
        threshold, versions.SIDE_FILE_MIN_ENTRIES = versions.SIDE_FILE_MIN_ENTRIES, 1  # a side file at any n
        try:
            seconds, _ = _best(1, lambda: versions.commit(side, big))
        finally:
            versions.SIDE_FILE_MIN_ENTRIES = threshold
        ref = json.loads(side.read_bytes(versions.MANIFEST))["shards_file"]
        seconds_load, loaded = _best(repeat, lambda: versions.read_manifest(side, versions.MANIFEST))
        assert loaded == big, "the side file did not give back the entries it was written from"
        blob = side.read_bytes(ref["path"])
        out["side_file"] = {
            "manifest_json_bytes": side.size(versions.MANIFEST),
            "side_file_bytes": ref["bytes"],
            "bytes_per_entry": round(ref["bytes"] / n, 1),
            "commit_seconds": seconds,
            "load_seconds": seconds_load,
            "parts_seconds": _side_parts(blob, repeat),
        }
    data = big.to_dict()
    seconds_dump, text = _best(repeat, lambda: json.dumps(data, indent=1, ensure_ascii=False).encode())
    seconds_parse, _ = _best(repeat, lambda: Manifest.from_dict(json.loads(text)))
    checked = min(n, validate_entries)
    sample = {**data, "shards": data["shards"][:checked]}
    seconds_check, _ = _best(1, lambda: validate_manifest(sample, "bench"))
    out["json"] = {
        "manifest_json_bytes": len(text),
        "bytes_per_entry": round(len(text) / n, 1),
        "dump_seconds": seconds_dump,  # what commit does besides the schema check and the write
        "parse_seconds": seconds_parse,  # json.loads + Manifest.from_dict, no schema check
        "schema_check_entries": checked,
        "schema_check_seconds": seconds_check,
        "schema_check_ms_per_entry": round(1000 * seconds_check / checked, 3),
    }
    out["one_json_string_column"] = _json_column(data["shards"], repeat)
    return out


def _side_parts(blob: bytes, repeat: int) -> dict[str, float]:
    """Where a side-file load spends its time."""
    from e5ray.output.manifest_table import check_table, table_to_entries

    parts: dict[str, float] = {}
    parts["sha256"], _ = _best(repeat, lambda: hashlib.sha256(blob).hexdigest())
    parts["parquet_read"], table = _best(repeat, lambda: pq.read_table(pa.BufferReader(blob)))
    parts["check_table"], _ = _best(repeat, lambda: check_table(table, "bench"))
    parts["to_dicts"], entries = _best(repeat, lambda: table_to_entries(table))
    parts["from_dict"], _ = _best(repeat, lambda: [ShardEntry.from_dict(e) for e in entries])
    return parts


def _json_column(entries: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    """The other layout considered: one compact JSON string per entry, in one zstd column."""
    table = pa.table({"entry": [json.dumps(e, separators=(",", ":")) for e in entries]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    blob = sink.getvalue().to_pybytes()

    def load() -> list[ShardEntry]:
        column = pq.read_table(pa.BufferReader(blob)).column("entry").to_pylist()
        return [ShardEntry.from_dict(json.loads(text)) for text in column]

    seconds, _ = _best(repeat, load)
    return {"bytes": len(blob), "bytes_per_entry": round(len(blob) / len(entries), 1), "load_seconds": seconds}
