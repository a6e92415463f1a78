"""`e5ray compare OLD NEW`: how far the vectors of two outputs over the same ids moved.

Reports (screen and JSON):
- ids: in both outputs, only in one, duplicated (chunk outputs are keyed by id and window);
- per-id cosine between the two vectors of an id, where the dims match: min, p1, p5,
  median, mean and the worst ids;
- for a seeded sample of common ids, the overlap of their k nearest neighbours in each
  space (overlap@k: shared neighbours / k, 1 when the neighbourhoods are the same) and the
  Spearman rank correlation between the similarities of the id's OLD neighbours in OLD
  and the similarities of the same neighbours in NEW (1: the old neighbours keep their
  order). Neighbours are searched over each output's own rows, the id itself excluded.

Memory: shards are streamed in batches of `batch_rows`. The per-id join hash-partitions
both outputs into buckets sized to `memory_mb` (spilled to a local temp dir when more than
one is needed) and joins one bucket at a time. The neighbour passes hold only the
sample's vectors and a running top k per sampled id. Sampling and bucketing use a keyed
hash of the id, so a report depends on the seed, not on shard order or bucket count.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from e5ray.quality.bucketing import Buckets, index_keys, key_hash
from e5ray.quality.search import OutputVersion, current_version, stream_vectors
from e5ray.store.filesystem import filesystem_for, join

FORMAT = "e5ray.compare/1"


@dataclass
class Output:
    """An output's current version, as `e5ray search` reads it (one place knows the manifest)."""

    uri: str
    version: OutputVersion
    fs: Any
    root: str
    rows: int = 0  # counted while streaming

    @classmethod
    def open(cls, uri: str, storage_options: dict[str, Any] | None = None) -> Output:
        fs, root = filesystem_for(uri, storage_options)
        return cls(uri, current_version(uri, storage_options), fs, root)

    @property
    def dim(self) -> int:
        return self.version.space.dim

    @property
    def windowed(self) -> bool:
        return self.version.space.long_text == "chunk"

    def size(self) -> int:
        """Bytes of its vector files (an estimate of the memory its vectors take)."""
        return sum(int(self.fs.size(join(self.root, path))) for path, _ in self.version.files)

    def batches(self, batch_rows: int) -> Iterator[tuple[list[Any], np.ndarray]]:
        """(keys, vectors) of the current version, file by file, `batch_rows` at a time."""
        for path, _ in self.version.files:
            for vectors, batch in stream_vectors(self.fs, join(self.root, path), self.dim, batch_rows, self.windowed):
                ids = batch.column("id").to_pylist()
                keys = list(zip(ids, batch.column("window").to_pylist(), strict=True)) if self.windowed else ids
                yield keys, vectors

    def describe(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "version": self.version.number,
            "rows": self.rows,
            "space": self.version.space.to_dict(),
        }


def _partition(output: Output, buckets: Buckets, batch_rows: int, seed: int) -> None:
    for keys, vectors in output.batches(batch_rows):
        output.rows += len(keys)
        hashes = np.fromiter((key_hash(k, seed) for k in keys), dtype=np.uint64, count=len(keys))
        buckets.add(keys, vectors, hashes)


class RunningTopK:
    """Per sampled key, the k highest similarities seen so far and their keys."""

    def __init__(self, samples: np.ndarray, keys: list[Any], k: int) -> None:
        self.samples, self.k = samples, k
        self.position = {key: i for i, key in enumerate(keys)}
        self.scores = np.full((len(keys), k), -np.inf, dtype=np.float32)
        self.keys = np.full((len(keys), k), None, dtype=object)

    def offer(self, batch_keys: list[Any], vectors: np.ndarray) -> np.ndarray:
        sims: np.ndarray = self.samples @ vectors.T
        for j, key in enumerate(batch_keys):  # a key is not its own neighbour
            i = self.position.get(key)
            if i is not None:
                sims[i, j] = -np.inf
        take = min(self.k, sims.shape[1])
        idx = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        merged_scores = np.concatenate([self.scores, np.take_along_axis(sims, idx, axis=1)], axis=1)
        keys = np.empty(len(batch_keys), dtype=object)
        keys[:] = batch_keys
        merged_keys = np.concatenate([self.keys, keys[idx]], axis=1)
        order = np.argsort(-merged_scores, axis=1, kind="stable")[:, : self.k]
        self.scores = np.take_along_axis(merged_scores, order, axis=1)
        self.keys = np.take_along_axis(merged_keys, order, axis=1)
        return sims


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (average ranks for ties); nan when either side is constant or < 3 values."""
    if len(x) < 3:
        return math.nan
    rx, ry = _ranks(x), _ranks(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends - 1) / 2.0)[inverse]


def _summary(values: np.ndarray, percentiles: tuple[int, ...] = (1, 5, 50)) -> dict[str, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return {"count": 0}
    p = np.percentile(values, percentiles)
    out = {"count": int(len(values)), "min": float(values.min())}
    out.update({("median" if q == 50 else f"p{q}"): float(v) for q, v in zip(percentiles, p, strict=True)})
    out["mean"] = float(values.mean())
    return out


def _json_key(key: Any) -> Any:
    return list(key) if isinstance(key, tuple) else key


def compare_outputs(
    old_uri: str,
    new_uri: str,
    *,
    sample: int = 1000,
    k: int = 10,
    seed: int = 0,
    worst: int = 10,
    batch_rows: int = 8192,
    memory_mb: float = 1024.0,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The comparison report of the current versions of two outputs (see the module docstring)."""
    if k < 1 or sample < 0 or batch_rows < 1:
        raise ValueError(f"need k >= 1, sample >= 0, batch_rows >= 1; got k={k}, sample={sample}, {batch_rows}")
    old, new = Output.open(old_uri, storage_options), Output.open(new_uri, storage_options)
    if old.windowed != new.windowed:
        raise ValueError("one output has one row per window (long_text chunk) and the other one row per id")
    dims_match = old.dim == new.dim
    size = (old.size() + new.size()) * 1.5  # file bytes ~ vector bytes; keys and copies: ~1.5x
    count = max(1, math.ceil(size / (memory_mb * 2**20)))
    cosines, worst_keys, worst_cos = [], [], []
    totals = {"old": 0, "new": 0, "common": 0, "only_old": 0, "only_new": 0, "duplicates_old": 0, "duplicates_new": 0}
    picked: list[tuple[int, Any, np.ndarray, np.ndarray]] = []  # (hash, key, old vector, new vector)
    with tempfile.TemporaryDirectory(prefix="e5ray-compare-") as tmp:
        sides = []
        for name, output in (("old", old), ("new", new)):
            directory = None
            if count > 1:
                directory = Path(tmp) / name
                directory.mkdir()
            buckets = Buckets(count, directory)
            _partition(output, buckets, batch_rows, seed)
            sides.append(buckets)
        for b in range(count):
            okeys, ovecs = sides[0].read(b, old.dim)
            nkeys, nvecs = sides[1].read(b, new.dim)
            oindex, odup = index_keys(okeys)
            nindex, ndup = index_keys(nkeys)
            common = [key for key in oindex if key in nindex]
            totals["old"] += len(oindex)
            totals["new"] += len(nindex)
            totals["common"] += len(common)
            totals["only_old"] += len(oindex) - len(common)
            totals["only_new"] += len(nindex) - len(common)
            totals["duplicates_old"] += odup
            totals["duplicates_new"] += ndup
            if not common:
                continue
            orows = np.array([oindex[key] for key in common])
            nrows = np.array([nindex[key] for key in common])
            if dims_match:
                a, c = ovecs[orows].astype(np.float64), nvecs[nrows].astype(np.float64)
                norms = np.linalg.norm(a, axis=1) * np.linalg.norm(c, axis=1)
                cos = np.divide((a * c).sum(axis=1), norms, out=np.zeros(len(common)), where=norms > 0)
                cosines.append(cos)
                low = np.argsort(cos, kind="stable")[:worst]
                worst_keys += [common[i] for i in low]
                worst_cos += [float(cos[i]) for i in low]
            hashes = [key_hash(("sample", key), seed) for key in common]
            for i in np.argsort(hashes, kind="stable")[:sample]:
                picked.append((hashes[i], common[i], ovecs[orows[i]].copy(), nvecs[nrows[i]].copy()))
            picked = sorted(picked, key=lambda p: p[0])[:sample]
        for side in sides:
            side.close()
    info_old, info_new = old.describe(), new.describe()
    report: dict[str, Any] = {
        "format": FORMAT,
        "old": info_old,
        "new": info_new,
        "space_differences": {
            f: [info_old["space"].get(f), info_new["space"].get(f)]
            for f in sorted(set(info_old["space"]) | set(info_new["space"]))
            if f != "fingerprint" and info_old["space"].get(f) != info_new["space"].get(f)
        },
        "ids": {"key": "id+window" if old.windowed else "id", **totals},
        "memory": {"buckets": count, "batch_rows": batch_rows, "memory_mb": memory_mb},
    }
    if dims_match:
        order = np.argsort(worst_cos, kind="stable")[:worst]
        report["cosine"] = {
            "dims_match": True,
            **_summary(np.concatenate(cosines) if cosines else np.empty(0)),
            "worst": [{"id": _json_key(worst_keys[i]), "cosine": worst_cos[i]} for i in order],
        }
    else:
        report["cosine"] = {"dims_match": False, "old_dim": old.dim, "new_dim": new.dim}
    report["neighbours"] = _neighbours(old, new, picked, k, batch_rows, seed)
    return report


def _neighbours(
    old: Output, new: Output, picked: list[tuple[int, Any, np.ndarray, np.ndarray]], k: int, batch_rows: int, seed: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"sample": len(picked), "k": k, "seed": seed}
    if not picked:
        return out
    keys = [p[1] for p in picked]
    top_old = RunningTopK(np.stack([p[2] for p in picked]), keys, k)
    for batch_keys, vectors in old.batches(batch_rows):
        top_old.offer(batch_keys, vectors)
    # The NEW pass also measures, in NEW, the similarity of each id's OLD neighbours.
    wanted: dict[Any, list[tuple[int, int]]] = {}
    for i, row in enumerate(top_old.keys):
        for slot, key in enumerate(row):
            if key is not None:
                wanted.setdefault(key, []).append((i, slot))
    new_samples = np.stack([p[3] for p in picked])
    old_in_new = np.full(top_old.scores.shape, np.nan)
    top_new = RunningTopK(new_samples, keys, k)
    for batch_keys, vectors in new.batches(batch_rows):
        sims = top_new.offer(batch_keys, vectors)
        for j, key in enumerate(batch_keys):
            for i, slot in wanted.get(key, ()):
                old_in_new[i, slot] = sims[i, j]
    overlaps, rhos = [], []
    for i in range(len(picked)):
        a = {key for key in top_old.keys[i] if key is not None}
        b = {key for key in top_new.keys[i] if key is not None}
        if a or b:
            overlaps.append(len(a & b) / max(len(a), len(b)))
        found = np.isfinite(old_in_new[i]) & np.isfinite(top_old.scores[i])
        rhos.append(spearman(top_old.scores[i][found], old_in_new[i][found]))
    out[f"overlap@{k}"] = _summary(np.array(overlaps), (5, 50))
    out["spearman"] = _summary(np.array(rhos), (5, 50))
    return out


def format_report(report: dict[str, Any]) -> str:
    ids, cos, nb = report["ids"], report["cosine"], report["neighbours"]
    lines = [
        f"OLD {report['old']['uri']} (version {report['old']['version']}, {report['old']['rows']} rows)",
        f"NEW {report['new']['uri']} (version {report['new']['version']}, {report['new']['rows']} rows)",
        "space differences: "
        + (", ".join(f"{f} {a!r} -> {b!r}" for f, (a, b) in report["space_differences"].items()) or "none"),
        f"ids: {ids['common']} in both, {ids['only_old']} only in OLD, {ids['only_new']} only in NEW"
        f" (duplicates: {ids['duplicates_old']} OLD, {ids['duplicates_new']} NEW)",
    ]
    if cos["dims_match"] and cos.get("count"):
        lines.append(
            "per-id cosine: "
            + ", ".join(f"{name} {cos[name]:.4f}" for name in ("min", "p1", "p5", "median", "mean"))
            + f" over {cos['count']} ids"
        )
        lines.append("worst: " + ", ".join(f"{w['id']} {w['cosine']:.4f}" for w in cos["worst"]))
    elif not cos["dims_match"]:
        lines.append(f"per-id cosine: not defined (dims {cos['old_dim']} vs {cos['new_dim']})")
    key = f"overlap@{nb['k']}"
    if nb["sample"] and nb[key].get("count"):
        ov, rho = nb[key], nb["spearman"]
        lines.append(
            f"neighbours of {nb['sample']} sampled ids (seed {nb['seed']}): {key} mean {ov['mean']:.3f}, "
            f"median {ov['median']:.3f}, p5 {ov['p5']:.3f}; Spearman of old neighbours' similarities mean "
            + (f"{rho['mean']:.3f}, median {rho['median']:.3f}" if rho.get("count") else "n/a")
        )
    return "\n".join(lines)


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", help="output dir or s3:// prefix with a manifest (the current space)")
    parser.add_argument("new", help="output to compare with it (the candidate space)")
    parser.add_argument("--sample", type=int, default=1000, help="ids whose neighbourhoods are compared")
    parser.add_argument("--k", type=int, default=10, help="neighbours per sampled id (overlap@k)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample of ids")
    parser.add_argument("--worst", type=int, default=10, help="lowest-cosine ids to list")
    parser.add_argument("--batch-rows", type=int, default=8192, help="rows read per batch (bounds memory)")
    parser.add_argument("--memory-mb", type=float, default=1024.0, help="per-bucket budget of the per-id join")
    parser.add_argument("--json-out", default=None, help="write the report as JSON here")
    parser.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL (default: $AWS_ENDPOINT_URL)")


def compare_from_args(args: argparse.Namespace) -> int:
    from e5ray.store.filesystem import s3_options

    report = compare_outputs(
        args.old,
        args.new,
        sample=args.sample,
        k=args.k,
        seed=args.seed,
        worst=args.worst,
        batch_rows=args.batch_rows,
        memory_mb=args.memory_mb,
        storage_options=s3_options(args.s3_endpoint) or None,
    )
    print(format_report(report))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str) + "\n")
    return 0
