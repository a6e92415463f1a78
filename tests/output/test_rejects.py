"""Rows that cannot be embedded are counted and recorded with their reason, never dropped."""

from __future__ import annotations

import json
from typing import Any

from corpus_utils import embed_job, read_output, write_shard
from job_utils import (
    by_relpath,
    config,
)

from e5ray.output.gc import collect_garbage
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir

# ---------------------------------------------------------------------------
# Rejected rows
# ---------------------------------------------------------------------------


def test_rejected_rows_are_counted_and_recorded(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    lines = [
        {"id": 1, "text": "kept one"},
        {"id": 2, "text": None},
        {"id": 3, "text": "   "},
        {"id": None, "text": "no id"},
        "{this is not json",
        {"id": 1, "text": "same id again"},
        {"id": "seven", "text": "a string id in an integer shard"},
        {"id": 4.5, "text": "a float id"},
        {"id": 5, "text": "kept two"},
    ]
    (inp / "mixed.jsonl").write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    # integer ids like the other shards: a version mixing id types is refused (test_rows.py)
    write_shard(inp / "table.parquet", [20, None, 22, 22, 23], ["kept", "null id", "kept", "duplicate", None])
    write_shard(inp / "all-bad.jsonl", [1, 2], ["", None])
    write_shard(inp / "good.parquet", [10, 11], ["ten", "eleven"])
    manifest = embed_job(config(inp, out, bert_model_dir, chunk_rows=3))  # duplicates across chunks too
    shards = by_relpath(manifest)

    def reasons(rel: str) -> list[tuple[int, Any, str]]:
        lines = (out / shards[rel]["rejects"]["path"]).read_text().splitlines()
        return [(r["row"], r["id"], r["reason"]) for r in map(json.loads, lines)]

    mixed = reasons("mixed.jsonl")
    assert [(row, reason.split(":")[0]) for row, _, reason in mixed] == [
        (1, "null text"),
        (2, "empty text"),
        (3, "null id"),
        (4, "malformed JSON line"),
        (5, "duplicate id in this shard"),
        (6, "id 'seven' is a str, but this shard's ids are int"),
        (
            7,
            "id 4.5 is not a whole number (--id-type string keeps it as text)",
        ),  # e5ray.corpus.rows: one rule for every id type
    ]
    assert (shards["mixed.jsonl"]["input_rows"], shards["mixed.jsonl"]["rows"], shards["mixed.jsonl"]["rejected"]) == (
        9,
        2,
        7,
    )
    assert reasons("table.parquet") == [
        (1, None, "null id"),
        (3, 22, "duplicate id in this shard"),
        (4, 23, "null text"),
    ]
    assert (shards["all-bad.jsonl"]["rows"], shards["all-bad.jsonl"]["rejected"]) == (0, 2)
    assert shards["good.parquet"]["rejects"] is None and shards["good.parquet"]["rejected"] == 0
    for entry in manifest["shards"]:
        assert entry["input_rows"] == entry["rows"] + entry["rejected"]
        if entry["rejected"]:
            assert entry["rejects"]["rows"] == entry["rejected"]
    totals = manifest["totals"]
    # mixed.jsonl, table.parquet, all-bad.jsonl, good.parquet
    assert (totals["input_rows"], totals["embedded"], totals["rejected"]) == (
        9 + 5 + 2 + 2,
        2 + 2 + 0 + 2,
        7 + 3 + 2 + 0,
    )
    assert sorted(read_output(str(out))) == [1, 5, 10, 11, 20, 22]
    assert verify_output(OutputDir(str(out))) == []

    # a refresh carries the rejects files with their shards; gc keeps them
    write_shard(inp / "good.parquet", [10, 11, 12], ["ten", "eleven", "twelve"])
    v2 = embed_job(config(inp, out, bert_model_dir))
    assert by_relpath(v2)["mixed.jsonl"] == shards["mixed.jsonl"]
    collect_garbage(OutputDir(str(out)), keep=1, min_age_s=0)
    assert verify_output(OutputDir(str(out))) == [] and reasons("mixed.jsonl") == mixed
