"""The local executor groups small units as the Ray executor does and embeds each group in
shared batches (e5ray.worker.shared_batches): the same outputs as one unit at a time, failures that
stay with their unit, and a run killed in the middle of a group that resumes its finished units."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from corpus_utils import embed_job, make_texts, read_output, write_shard
from job_utils import Killed, assert_same_vectors, config

import e5ray.worker.shared_batches as shared
from e5ray.config import ComputeConfig
from e5ray.errors import ShardFailures
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir
from e5ray.worker.task import ShardTask
from e5ray.worker.worker import EmbeddingWorker, ShardResult, WorkerSpec

FILES = 10


def small_files(inp: Path, files: int = FILES) -> list[int]:
    """Small files of mixed lengths (1 to 60 words), so shared batches pad and sort across units."""
    ids = []
    for f in range(files):
        n = 1 + f % 4
        write_shard(
            inp / f"f{f:03d}.parquet", [f * 100 + i for i in range(n)], make_texts(n, 700 + f, 60 if f % 3 else 6)
        )
        ids += [f * 100 + i for i in range(n)]
    return ids


def one_at_a_time(tasks: list[ShardTask], spec: WorkerSpec, compute: ComputeConfig) -> Iterator[ShardResult]:
    """The local executor as it was: unit after unit, no shared batches."""
    worker = EmbeddingWorker(spec, compute.threads_per_actor)
    for task in tasks:
        yield worker.embed(task)


@pytest.fixture
def shared_groups(monkeypatch) -> list[int]:
    """The size of every group embedded in shared batches."""
    sizes: list[int] = []
    real = shared.iter_units_together

    def counting(tasks: list[ShardTask], *args: Any, **kwargs: Any) -> Iterator[tuple[int, Any]]:
        sizes.append(len(tasks))
        yield from real(tasks, *args, **kwargs)

    monkeypatch.setattr("e5ray.worker.worker.iter_units_together", counting)
    return sizes


def entries(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["source"]["relpath"]: e for e in manifest["shards"]}


def test_the_local_executor_embeds_a_group_of_small_units_in_shared_batches_with_the_outputs_of_one_at_a_time(
    tmp_path, bert_model_dir, shared_groups
):
    inp = tmp_path / "in"
    ids = small_files(inp)
    together = embed_job(config(inp, tmp_path / "together", bert_model_dir))
    assert shared_groups == [FILES]  # one group of every unit, in shared batches
    alone = embed_job(config(inp, tmp_path / "alone", bert_model_dir), executor=one_at_a_time)
    assert shared_groups == [FILES]

    got, want = read_output(str(tmp_path / "together")), read_output(str(tmp_path / "alone"))
    assert sorted(got) == sorted(ids)
    assert_same_vectors(got, want)
    assert together["totals"] == alone["totals"]
    for name, entry in entries(together).items():
        other = entries(alone)[name]
        for key in ("rows", "input_rows", "tokens", "truncated", "rejected", "key", "unit", "id_type", "reuse"):
            assert entry[key] == other[key], (name, key)
        assert entry["ids"]["path"] == other["ids"]["path"] and entry["ids"]["sha256"] == other["ids"]["sha256"]
        assert [f["rows"] for f in entry["files"]] == [f["rows"] for f in other["files"]]
    # one data file, one ids file and one marker per unit, each marker naming its unit's files
    for out in (tmp_path / "together", tmp_path / "alone"):
        assert len(list((out / "shards").glob("*.parquet"))) == FILES
        assert len(list((out / "ids").iterdir())) == FILES
        markers = list((out / "markers").glob("*.done.json"))
        assert len(markers) == FILES
        for marker in markers:
            entry = json.loads(marker.read_bytes())
            assert all((out / f["path"]).stat().st_size == f["bytes"] for f in [*entry["files"], entry["ids"]])
        assert verify_output(OutputDir(str(out))) == []


def test_a_broken_small_unit_of_a_group_is_a_failure_of_that_unit_only(tmp_path, bert_model_dir, shared_groups):
    inp, out = tmp_path / "in", tmp_path / "out"
    ids = small_files(inp)
    (inp / "broken.parquet").write_bytes(b"PAR1 not really parquet PAR1")
    with pytest.raises(ShardFailures) as failed:
        embed_job(config(inp, out, bert_model_dir))
    assert shared_groups == [FILES + 1]
    (line,) = [x for x in str(failed.value).splitlines() if x.startswith("  ")]
    assert "broken.parquet" in line
    markers = sorted(p.name.split("-")[0] for p in (out / "markers").glob("*.done.json"))
    assert markers == sorted(f"f{f:03d}.parquet" for f in range(FILES))  # its neighbours committed

    (inp / "broken.parquet").unlink()
    v = embed_job(config(inp, out, bert_model_dir))
    assert (v["run"]["reused_shards"], v["run"]["embedded_shards"]) == (FILES, 0)
    assert sorted(read_output(str(out))) == sorted(ids)


def test_a_run_killed_in_the_middle_of_a_group_resumes_its_finished_units(
    tmp_path, bert_model_dir, monkeypatch, shared_groups, reads
):
    inp, out = tmp_path / "in", tmp_path / "out"
    ids = small_files(inp)
    real = shared.write_unit
    markers = out / "markers"

    def killed_midway(unit: Any, *args: Any) -> Any:
        if unit.task.source.relpath != "f007.parquet":
            return real(unit, *args)
        deadline = time.monotonic() + 30
        while len(list(markers.glob("*.done.json"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)  # let some of the group commit first
        raise Killed  # not an Exception: nothing on the way catches it, as with a SIGKILL

    monkeypatch.setattr(shared, "write_unit", killed_midway)
    monkeypatch.setattr(shared, "IO_THREADS", 2)  # fewer commits in flight: some are still queued when it dies
    with pytest.raises(Killed):
        embed_job(config(inp, out, bert_model_dir))
    assert shared_groups == [FILES]
    assert not [t for t in threading.enumerate() if t.name.startswith("e5ray-unit-io")]  # none left running
    done = sorted(p.name.split("-")[0] for p in markers.glob("*.done.json"))
    assert 4 <= len(done) < FILES and "f007.parquet" not in done
    assert not (out / "manifest.json").exists()

    monkeypatch.setattr(shared, "write_unit", real)
    reads.clear()
    v = embed_job(config(inp, out, bert_model_dir))
    assert (v["run"]["reused_shards"], v["run"]["embedded_shards"]) == (len(done), FILES - len(done))
    assert sorted(reads) == sorted(set(f"f{f:03d}.parquet" for f in range(FILES)) - set(done))
    assert verify_output(OutputDir(str(out))) == []
    got = read_output(str(out))
    assert sorted(got) == sorted(ids)  # every id exactly once (read_output asserts no duplicates)
    embed_job(config(inp, tmp_path / "fresh", bert_model_dir))
    assert_same_vectors(got, read_output(str(tmp_path / "fresh")))
