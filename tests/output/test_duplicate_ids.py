"""Ids unique across the shards of a version (`--duplicate-ids`), checked per hash partition.

Duplicates across shards are rejected into the later shard's rejects file, naming the
shard that kept the id, counted and reconciled (rows + rejected == input rows, per shard
and in the totals); the result does not depend on how many partitions the check uses.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow.parquet as pq
import pytest
from corpus_utils import embed_job, make_texts, read_output, write_shard

from e5ray.config import JobConfig
from e5ray.job.run import run_job
from e5ray.output import dupes
from e5ray.output import versions as versions_module
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir


class Killed(BaseException):
    """Stands in for a SIGKILL."""


def config(inp: Any, out: Any, model_dir: Any, **kw: Any) -> JobConfig:
    return JobConfig.from_options(
        input=str(inp), output=str(out), model="tiny", model_path=str(model_dir), executor="local", **kw
    )


def by_name(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["source"]["relpath"]: s for s in manifest["shards"]}


def rejects(out: Any, entry: dict[str, Any]) -> list[dict[str, Any]]:
    if not entry["rejects"]:
        return []
    return [json.loads(line) for line in (out / entry["rejects"]["path"]).read_text().splitlines()]


def reconciled(manifest: dict[str, Any]) -> bool:
    shards, totals = manifest["shards"], manifest["totals"]
    return all(s["rows"] + s["rejected"] == s["input_rows"] for s in shards) and (
        totals["embedded"] + totals["rejected"] == totals["input_rows"]
    )


def test_an_id_in_two_shards_is_kept_once_and_the_later_row_rejected(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_shard(inp / "a.jsonl", [1, 2], ["one", "two"])
    write_shard(inp / "b.jsonl", [3, 1], ["three", "one again"])
    manifest = embed_job(config(inp, out, bert_model_dir))
    shards = by_name(manifest)
    assert (shards["a.jsonl"]["rows"], shards["b.jsonl"]["rows"], shards["b.jsonl"]["rejected"]) == (2, 1, 1)
    (record,) = rejects(out, shards["b.jsonl"])
    assert record["row"] == 1 and record["id"] == 1
    assert record["reason"] == f"duplicate id: kept in {inp / 'a.jsonl'} row 0"
    assert manifest["totals"]["duplicates"] == 1 and manifest["run"]["duplicates_rejected"] == 1
    assert reconciled(manifest) and verify_output(OutputDir(str(out))) == []
    assert sorted(read_output(str(out))) == [1, 2, 3]  # raises if an id appears twice


def test_allow_keeps_every_occurrence(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_shard(inp / "a.jsonl", [1], ["one"])
    write_shard(inp / "b.jsonl", [1], ["one again"])
    manifest = embed_job(config(inp, out, bert_model_dir, duplicate_ids="allow"))
    assert manifest["totals"]["embedded"] == 2 and manifest["totals"]["duplicates"] == 0


def test_the_check_gives_the_same_answer_for_any_number_of_partitions(tmp_path, bert_model_dir, monkeypatch):
    monkeypatch.setattr(dupes, "IDS_ROW_GROUP", 16)  # several row groups per ids file
    inp, out = tmp_path / "in", tmp_path / "out"
    for s in range(3):  # 200 ids each; shard s shares 40 ids with shard s - 1
        ids = list(range(s * 160, s * 160 + 200))
        write_shard(inp / f"p{s}.parquet", ids, make_texts(200, seed=s))
    entries = list(run_job(config(inp, out, bert_model_dir, duplicate_ids="allow")).shards)
    output = OutputDir(str(out))
    order = dupes.precedence(entries, "reject", set())
    largest = []
    real = dupes._partition_rows

    def spy(*args: Any) -> Any:
        table = real(*args)
        largest.append(table.num_rows)
        return table

    monkeypatch.setattr(dupes, "_partition_rows", spy)
    answers = {}
    for per_partition in (10_000, 100, 7):
        largest.clear()
        found = dupes.find_duplicates(output, entries, order, "parquet", rows_per_partition=per_partition)
        answers[per_partition] = {i: sorted((d.row, d.id, d.kept_row) for d in drops) for i, drops in found.items()}
        if per_partition == 7:  # 86 partitions: each reads a small part of each shard's ids
            assert max(largest) <= 30
    assert answers[10_000] == answers[100] == answers[7]
    assert sum(len(v) for v in answers[7].values()) == 80
    assert sorted(answers[7]) == [1, 2] and answers[7][1][0] == (0, "160", 160)


def test_keep_first_lets_the_id_already_in_the_output_keep_it(tmp_path, bert_model_dir):
    inp = tmp_path / "in"
    write_shard(inp / "b.jsonl", [1, 2], ["one", "two"])
    outs = {}
    for policy in ("reject", "keep-first"):
        out = tmp_path / policy
        embed_job(config(inp, out, bert_model_dir, duplicate_ids=policy))
        outs[policy] = out
    write_shard(inp / "a.jsonl", [1, 3], ["one, earlier in source order", "three"])
    for policy, out in outs.items():
        manifest = embed_job(config(inp, out, bert_model_dir, duplicate_ids=policy))
        shards = by_name(manifest)
        loser = "b.jsonl" if policy == "reject" else "a.jsonl"
        assert shards[loser]["duplicates"] == 1 and [r["id"] for r in rejects(out, shards[loser])] == [1]
        assert reconciled(manifest) and verify_output(OutputDir(str(out))) == []
        assert sorted(read_output(str(out))) == [1, 2, 3]


def test_ids_come_back_when_the_shard_that_kept_them_goes(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_shard(inp / "a.jsonl", [1], ["one"])
    write_shard(inp / "b.jsonl", [1, 2], ["one again", "two"])
    v1 = embed_job(config(inp, out, bert_model_dir))
    assert by_name(v1)["b.jsonl"]["rows"] == 1
    (inp / "a.jsonl").unlink()
    v2 = embed_job(config(inp, out, bert_model_dir))
    b = by_name(v2)["b.jsonl"]
    assert (b["rows"], b["rejected"], b.get("duplicates", 0)) == (2, 0, 0)
    assert v2["run"]["reused_shards"] == 1  # its first output, through the completion marker
    assert sorted(read_output(str(out))) == [1, 2] and verify_output(OutputDir(str(out))) == []


def test_a_run_killed_after_the_rewrite_commits_the_same_files_next_time(tmp_path, bert_model_dir, monkeypatch):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_shard(inp / "a.parquet", [1, 2, 3], ["one", "two", "three"])
    write_shard(inp / "b.parquet", [3, 4], ["three", "four"])
    real_commit = versions_module.commit

    def killed(*args: Any, **kw: Any) -> Any:
        raise Killed()

    import e5ray.job.run as job_module

    monkeypatch.setattr(job_module, "commit", killed)
    with pytest.raises(Killed):
        run_job(config(inp, out, bert_model_dir))
    assert not (out / "manifest.json").exists()
    monkeypatch.setattr(job_module, "commit", real_commit)
    manifest = embed_job(config(inp, out, bert_model_dir))
    assert manifest["run"]["reused_shards"] == 2
    b = by_name(manifest)["b.parquet"]
    assert b["rows"] == 1 and b["duplicates"] == 1
    rewritten = sorted(p.name for p in (out / "shards").glob("b.parquet-*.parquet"))
    assert len(rewritten) == 2  # the original (its marker's) and the one rewrite, written twice with one name
    assert verify_output(OutputDir(str(out))) == [] and sorted(read_output(str(out))) == [1, 2, 3, 4]


def test_a_duplicate_in_chunk_mode_drops_every_window_of_the_document(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    long_text = " ".join(make_texts(1, seed=3, max_words=2)[0] for _ in range(40))  # several windows
    write_shard(inp / "a.parquet", [1, 2], [long_text, "two"])
    write_shard(inp / "b.parquet", [3, 1], ["three", long_text])
    manifest = embed_job(config(inp, out, bert_model_dir, long_text="chunk", max_length=16))
    shards = by_name(manifest)
    b = shards["b.parquet"]
    assert (b["documents"], b["rejected"], b["duplicates"]) == (1, 1, 1)
    table = pq.read_table(out / b["files"][0]["path"])
    assert table.column_names[:3] == ["id", "embedding", "window"] and set(table["id"].to_pylist()) == {3}
    assert b["rows"] == table.num_rows and b["windows"] == table.num_rows
    assert verify_output(OutputDir(str(out))) == []
