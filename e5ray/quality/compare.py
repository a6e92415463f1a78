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

Modules: `output_reader` (an output's current version, streamed), `id_join` (the per-id
join, cosines and sample), `neighbours` (overlap@k and Spearman), `summaries` (statistics).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from e5ray.quality.id_join import IdJoin, bucket_count, join_by_id
from e5ray.quality.neighbours import neighbour_agreement
from e5ray.quality.output_reader import OutputReader
from e5ray.quality.summaries import spearman, summarise

__all__ = ["FORMAT", "compare_outputs", "format_report", "spearman"]

FORMAT = "e5ray.compare/1"


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
    old, new = OutputReader.open(old_uri, storage_options), OutputReader.open(new_uri, storage_options)
    if old.windowed != new.windowed:
        raise ValueError("one output has one row per window (long_text chunk) and the other one row per id")
    count = bucket_count(old, new, memory_mb)
    joined = join_by_id(old, new, count, batch_rows=batch_rows, seed=seed, sample=sample, worst=worst)
    # After the join: the outputs' row counts are counted while it streams them.
    report = _report_head(old, new, joined)
    report["memory"] = {"buckets": count, "batch_rows": batch_rows, "memory_mb": memory_mb}
    report["cosine"] = _cosine_section(old, new, joined, worst)
    report["neighbours"] = neighbour_agreement(old, new, joined.picked, k, batch_rows, seed)
    return report


def _report_head(old: OutputReader, new: OutputReader, joined: IdJoin) -> dict[str, Any]:
    """The two outputs, how their spaces differ (the fingerprint aside), and the id counts."""
    info_old, info_new = old.describe(), new.describe()
    return {
        "format": FORMAT,
        "old": info_old,
        "new": info_new,
        "space_differences": {
            f: [info_old["space"].get(f), info_new["space"].get(f)]
            for f in sorted(set(info_old["space"]) | set(info_new["space"]))
            if f != "fingerprint" and info_old["space"].get(f) != info_new["space"].get(f)
        },
        "ids": {"key": "id+window" if old.windowed else "id", **joined.totals},
    }


def _cosine_section(old: OutputReader, new: OutputReader, joined: IdJoin, worst: int) -> dict[str, Any]:
    """The per-id cosine's summary and worst ids; where the dims differ, just the two dims."""
    if not joined.dims_match:
        return {"dims_match": False, "old_dim": old.dim, "new_dim": new.dim}
    order = np.argsort(joined.worst_cos, kind="stable")[:worst]
    return {
        "dims_match": True,
        **summarise(np.concatenate(joined.cosines) if joined.cosines else np.empty(0)),
        "worst": [{"id": _json_key(joined.worst_keys[i]), "cosine": joined.worst_cos[i]} for i in order],
    }


def _json_key(key: Any) -> Any:
    return list(key) if isinstance(key, tuple) else key


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
