"""Small units of one task embedded in shared batches (e5ray.worker.shared_batches): per unit, the
same files, vectors and entries as one unit at a time, and failures that stay with their unit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from corpus_utils import make_texts, write_shard
from job_utils import config

from e5ray.job.run import plan_run
from e5ray.output.manifest import ShardEntry
from e5ray.store.filesystem import OutputDir
from e5ray.worker.shared_batches import can_share
from e5ray.worker.task import ShardTask
from e5ray.worker.worker import EmbeddingWorker, ShardFailure, WorkerSpec


def small_corpus(inp: Path, files: int = 12) -> None:
    """Small files of mixed lengths (1 to 120 words), so shared batches pad and sort across units."""
    for f in range(files):
        n = 1 + f % 5
        texts = make_texts(n, 300 + f, max_words=120 if f % 3 == 0 else 8)
        write_shard(inp / f"f{f:03d}.parquet", [f * 100 + i for i in range(n)], texts)


def tasks_and_worker(inp: Path, out: Path, model_dir: Any, reuse_rows: bool) -> tuple[list[ShardTask], EmbeddingWorker]:
    cfg = config(inp, out, model_dir)
    planned = plan_run(cfg, OutputDir(str(out)))
    worker = EmbeddingWorker(WorkerSpec.for_job(cfg, planned.space.fingerprint), threads=1)
    tasks = [dataclasses.replace(t, reuse_rows=reuse_rows) for t in planned.todo]
    assert tasks and all(can_share(t, worker.embedder) for t in tasks)
    return tasks, worker


def unit_output(out: Path, entry: ShardEntry) -> tuple[list[Any], np.ndarray]:
    (file,) = entry.files
    table = pq.read_table(out / file.path)
    ids = table.column("id").to_pylist()
    flat = np.asarray(table.column("embedding").combine_chunks().flatten())
    return ids, flat.reshape(len(ids), -1) if ids else flat


@pytest.mark.parametrize(("reuse_rows", "wave_batches"), [(False, 4), (True, 4), (True, 0)])
def test_a_unit_embedded_with_others_gets_the_vectors_and_ids_order_it_gets_alone(
    tmp_path, bert_model_dir, monkeypatch, reuse_rows, wave_batches
):
    monkeypatch.setattr("e5ray.worker.shared_batches.WAVE_BATCHES", wave_batches)  # 0: a wave per unit
    inp = tmp_path / "in"
    small_corpus(inp)
    # A unit with a repeated text: folded once under row reuse, in both paths alike.
    write_shard(inp / "dup.parquet", [9000, 9001, 9002], ["same words", "other words", "same words"])
    tasks, worker = tasks_and_worker(inp, tmp_path / "together", bert_model_dir, reuse_rows)
    together = worker.embed_many(tasks)
    alone_tasks, alone_worker = tasks_and_worker(inp, tmp_path / "alone", bert_model_dir, reuse_rows)
    alone = [alone_worker.embed(t) for t in alone_tasks]

    assert [r.source.uri for r in together] == [t.source.uri for t in tasks]  # one result per task, in order
    for got, want in zip(together, alone, strict=True):
        assert isinstance(got, ShardEntry) and isinstance(want, ShardEntry)
        got_ids, got_vectors = unit_output(tmp_path / "together", got)
        want_ids, want_vectors = unit_output(tmp_path / "alone", want)
        assert got_ids == want_ids
        cosine = np.sum(got_vectors * want_vectors, axis=1)  # unit vectors
        assert cosine.min() >= 0.99999, (got.source.relpath, cosine.min())
        assert (got.rows, got.input_rows, got.tokens, got.truncated) == (
            want.rows,
            want.input_rows,
            want.tokens,
            want.truncated,
        )
        assert got.reuse == want.reuse and got.hash_scheme == want.hash_scheme and got.key == want.key
        # its own ids file for the cross-shard duplicate check, as one at a time
        assert got.ids is not None and want.ids is not None and got.id_type == want.id_type
        assert (got.ids.rows, got.ids.sha256) == (want.ids.rows, want.ids.sha256)
        # the content-hash column names the same tokens
        hashes = [
            pq.read_table(p / e.files[0].path).column("content_hash")
            for p, e in ((tmp_path / "together", got), (tmp_path / "alone", want))
        ]
        assert hashes[0].equals(hashes[1])
    (dup,) = [r for r in together if r.source.relpath == "dup.parquet"]
    assert dup.reuse is not None and dup.reuse["duplicates_folded"] == (1 if reuse_rows else 0)
    # one data file and one marker per unit, as one at a time
    for name in ("together", "alone"):
        assert len(list((tmp_path / name / "shards").iterdir())) == len(tasks)
        assert len(list((tmp_path / name / "markers").glob("*.done.json"))) == len(tasks)


def test_a_unit_whose_rows_are_rejected_or_whose_file_is_broken_does_not_disturb_its_neighbours(
    tmp_path, bert_model_dir
):
    inp = tmp_path / "in"
    small_corpus(inp, files=6)
    write_shard(inp / "bad-rows.parquet", [1, 2, 3], [None, "", "  "])
    (inp / "broken.parquet").write_bytes(b"PAR1 not really parquet PAR1")
    tasks, worker = tasks_and_worker(inp, tmp_path / "out", bert_model_dir, reuse_rows=True)
    results = {r.source.relpath: r for r in worker.embed_many(tasks)}

    broken = results.pop("broken.parquet")
    assert isinstance(broken, ShardFailure) and "broken.parquet" in broken.error
    bad = results.pop("bad-rows.parquet")
    assert isinstance(bad, ShardEntry) and (bad.rows, bad.rejected) == (0, 3)
    assert bad.rejects is not None
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "out" / bad.rejects.path).read_text().splitlines()]
    assert reasons == ["null text", "empty text", "empty text"]
    assert unit_output(tmp_path / "out", bad)[0] == []  # an empty output of its own

    alone_inp = tmp_path / "alone-in"
    small_corpus(alone_inp, files=6)
    alone_tasks, alone_worker = tasks_and_worker(alone_inp, tmp_path / "alone", bert_model_dir, reuse_rows=True)
    for task in alone_tasks:
        want = alone_worker.embed(task)
        got = results.pop(task.source.relpath)
        assert isinstance(got, ShardEntry) and isinstance(want, ShardEntry) and got.rejected == 0
        (got_ids, got_vectors), (want_ids, want_vectors) = (
            unit_output(tmp_path / "out", got),
            unit_output(tmp_path / "alone", want),
        )
        assert got_ids == want_ids and np.sum(got_vectors * want_vectors, axis=1).min() >= 0.99999
    assert results == {}
    markers = {p.name.split("-")[0] for p in (tmp_path / "out" / "markers").glob("*.done.json")}
    assert "broken.parquet" not in markers and "bad" in markers  # a failed unit has no marker


def test_a_transient_error_while_writing_one_unit_is_tried_again_and_leaves_one_output(
    tmp_path, bert_model_dir, monkeypatch
):
    import e5ray.worker.shared_batches as shared

    inp = tmp_path / "in"
    small_corpus(inp, files=4)
    tasks, worker = tasks_and_worker(inp, tmp_path / "out", bert_model_dir, reuse_rows=False)
    monkeypatch.setattr("e5ray.worker.worker.time.sleep", lambda s: None)
    real, failed = shared.write_unit, []

    def flaky(unit: Any, *args: Any) -> ShardEntry:
        if unit.task.source.relpath == "f002.parquet" and not failed:
            failed.append(1)
            real(unit, *args)  # its files are written, then the connection drops before the answer
            raise ConnectionResetError("connection reset by peer")
        return real(unit, *args)

    monkeypatch.setattr(shared, "write_unit", flaky)
    results = worker.embed_many(tasks)
    assert failed and all(isinstance(r, ShardEntry) for r in results)
    # the retry wrote the same content-addressed names again: still one data file per unit
    assert len(list((tmp_path / "out" / "shards").iterdir())) == len(tasks)
    assert len(list((tmp_path / "out" / "markers").glob("*.done.json"))) == len(tasks)
