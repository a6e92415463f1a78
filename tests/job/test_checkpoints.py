"""Driver checkpoints: a resume reads a few checkpoint objects instead of one marker per unit.

Runs in process on the tiny test model with a local output; the driver is "killed" by an
exception out of the executor (`job_utils.dying`), and `no_final_checkpoint` stands for a
SIGKILL, which leaves the driver no chance to write its last checkpoint. Reads are counted at
`OutputDir.read_bytes`, which every marker and checkpoint read goes through. The same on
SeaweedFS, counted per request: tests/test_bench_driver.py.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from corpus_utils import embed_job, make_texts, write_shard
from job_utils import Killed, config, dying

from e5ray.bench.driver import no_final_checkpoint
from e5ray.errors import UnsafePathError
from e5ray.job import checkpoints
from e5ray.job.checkpoints import CheckpointWriter, is_checkpoint, read_checkpoint
from e5ray.job.run import plan_run
from e5ray.output.gc import collect_garbage
from e5ray.output.manifest import ShardEntry
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir

SHARDS = 8


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    inp = tmp_path / "in"
    for s in range(SHARDS):
        write_shard(inp / f"part-{s}.parquet", [100 * s + i for i in range(4)], make_texts(4, 40 + s))
    return inp


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file of the output read whole through OutputDir (markers, checkpoints, manifests)."""
    seen: list[str] = []
    original = OutputDir.read_bytes

    def counting(self: OutputDir, rel: str) -> bytes:
        seen.append(rel)
        return original(self, rel)

    monkeypatch.setattr(OutputDir, "read_bytes", counting)
    return seen


def checkpoint_files(out: Path) -> list[str]:
    return sorted(f"markers/{p.name}" for p in (out / "markers").iterdir() if is_checkpoint(f"markers/{p.name}"))


def kill(inp: Path, out: Path, model: Path, after: int, flush: bool) -> None:
    """A run killed after `after` units; `flush=False`: as by SIGKILL, no final checkpoint."""
    job = config(inp, out, model)
    with pytest.raises(Killed):
        if flush:
            embed_job(job, executor=dying(after))
        else:
            with no_final_checkpoint():
                embed_job(job, executor=dying(after))


def marker_reads(seen: list[str]) -> list[str]:
    return [r for r in seen if r.endswith(".done.json")]


def test_a_resume_after_a_kill_reads_checkpoints_not_markers_and_the_commit_removes_them(
    corpus, tmp_path, bert_model_dir, reads, monkeypatch
):
    monkeypatch.setattr(checkpoints, "EVERY_UNITS", 2)
    monkeypatch.setattr(checkpoints, "EVERY_S", 3600.0)
    out = tmp_path / "out"
    kill(corpus, out, bert_model_dir, after=6, flush=False)
    assert len(checkpoint_files(out)) == 3 and len(list((out / "markers").glob("*.done.json"))) == 6

    reads.clear()
    planned = plan_run(config(corpus, out, bert_model_dir), OutputDir(str(out)))
    assert (len(planned.reused), len(planned.todo)) == (6, SHARDS - 6)
    assert marker_reads(reads) == []  # every finished unit came from a checkpoint
    assert sorted(r for r in reads if is_checkpoint(r)) == checkpoint_files(out)

    v = embed_job(config(corpus, out, bert_model_dir))
    assert v["run"]["reused_shards"] == 6 and v["run"]["embedded_shards"] == SHARDS - 6
    assert checkpoint_files(out) == []  # its own and the killed run's: the manifest holds their entries
    assert verify_output(OutputDir(str(out))) == []


def test_units_finished_after_the_last_checkpoint_are_reused_from_their_markers(
    corpus, tmp_path, bert_model_dir, reads, monkeypatch
):
    monkeypatch.setattr(checkpoints, "EVERY_UNITS", 4)
    monkeypatch.setattr(checkpoints, "EVERY_S", 3600.0)
    out = tmp_path / "out"
    kill(corpus, out, bert_model_dir, after=6, flush=False)
    assert len(checkpoint_files(out)) == 1  # 4 units; the 2 after it are only in their markers

    reads.clear()
    planned = plan_run(config(corpus, out, bert_model_dir), OutputDir(str(out)))
    assert len(planned.reused) == 6
    assert len(marker_reads(reads)) == 2


def test_an_interrupted_run_writes_its_last_checkpoint_on_the_way_out(
    corpus, tmp_path, bert_model_dir, reads, monkeypatch
):
    monkeypatch.setattr(checkpoints, "EVERY_UNITS", 1000)
    out = tmp_path / "out"
    kill(corpus, out, bert_model_dir, after=5, flush=True)
    assert len(checkpoint_files(out)) == 1

    reads.clear()
    planned = plan_run(config(corpus, out, bert_model_dir), OutputDir(str(out)))
    assert len(planned.reused) == 5 and marker_reads(reads) == []


def test_a_corrupt_checkpoint_is_ignored_and_its_units_are_reused_from_their_markers(
    corpus, tmp_path, bert_model_dir, reads
):
    out = tmp_path / "out"
    kill(corpus, out, bert_model_dir, after=5, flush=True)
    (only,) = checkpoint_files(out)
    (out / only).write_bytes(b'{"format": "e5ray-checkpoint", "units": [{"marker"')  # cut short

    reads.clear()
    planned = plan_run(config(corpus, out, bert_model_dir), OutputDir(str(out)))
    assert len(planned.reused) == 5 and len(marker_reads(reads)) == 5
    v = embed_job(config(corpus, out, bert_model_dir))
    assert v["run"]["reused_shards"] == 5 and checkpoint_files(out) == []


def test_a_checkpoint_entry_whose_file_was_rewritten_is_not_reused(corpus, tmp_path, bert_model_dir, reads):
    out = tmp_path / "out"
    kill(corpus, out, bert_model_dir, after=5, flush=True)
    (only,) = checkpoint_files(out)
    entry = json.loads((out / only).read_bytes())["units"][0]["entry"]
    rewritten = out / entry["files"][0]["path"]
    st = rewritten.stat()
    os.utime(rewritten, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # same size, new stamp

    reads.clear()
    planned = plan_run(config(corpus, out, bert_model_dir), OutputDir(str(out)))
    assert len(planned.reused) == 4 and len(planned.todo) == SHARDS - 4
    assert entry["source"]["uri"] in {t.source.uri for t in planned.todo}
    assert len(marker_reads(reads)) == 1  # the checkpoint's entry failed: its marker, the truth, was asked too


def test_a_checkpoint_naming_a_file_outside_the_output_is_refused(corpus, tmp_path, bert_model_dir):
    out = tmp_path / "out"
    kill(corpus, out, bert_model_dir, after=2, flush=True)
    (only,) = checkpoint_files(out)
    data = json.loads((out / only).read_bytes())
    data["units"][0]["entry"]["files"][0]["path"] = "../../etc/passwd"
    (out / only).write_text(json.dumps(data))
    with pytest.raises(UnsafePathError, match=r"checkpoint-.*units\[0\]\.entry\.files\[0\]\.path"):
        plan_run(config(corpus, out, bert_model_dir), OutputDir(str(out)))


def test_gc_removes_checkpoints_of_a_run_whose_lease_is_gone_and_verify_ignores_them(
    corpus, tmp_path, bert_model_dir, monkeypatch
):
    out = tmp_path / "out"
    embed_job(config(corpus, out, bert_model_dir))
    for s in range(SHARDS, SHARDS + 3):  # a refresh with 3 new shards, killed after 2
        write_shard(corpus / f"part-{s}.parquet", [100 * s + i for i in range(4)], make_texts(4, 40 + s))
    monkeypatch.setattr(checkpoints, "EVERY_UNITS", 1)
    kill(corpus, out, bert_model_dir, after=2, flush=False)
    left = checkpoint_files(out)
    assert len(left) == 2
    assert not list(out.glob("leases/*.json"))  # the killed run's lease is gone

    assert verify_output(OutputDir(str(out))) == []
    assert verify_output(OutputDir(str(out)), quick=True) == []
    deleted = collect_garbage(OutputDir(str(out)), keep=1, min_age_s=0)
    assert set(left) <= set(deleted) and checkpoint_files(out) == []
    assert verify_output(OutputDir(str(out))) == []


def test_a_slow_run_writes_a_checkpoint_after_every_s_seconds_with_fewer_units(corpus, tmp_path, bert_model_dir):
    out = tmp_path / "out"
    embed_job(config(corpus, out, bert_model_dir))
    marker = sorted((out / "markers").glob("*.done.json"))[0]
    entry = ShardEntry.from_dict(json.loads(marker.read_bytes()))
    output, registered = OutputDir(str(out)), []
    writer = CheckpointWriter(output, "slowrun", registered.extend, every_units=1000, every_s=0.2).start()
    writer.add(f"markers/{marker.name}", entry)
    for _ in range(100):  # up to 10 s on a loaded machine; written after ~0.2 s
        if writer.written:
            break
        time.sleep(0.1)
    writer.close()
    assert writer.written == registered == ["markers/checkpoint-slowrun-000000.json"]  # in the lease before written
    assert read_checkpoint(output, writer.written[0]) == {f"markers/{marker.name}": [entry.to_dict()]}


def test_a_checkpoint_entry_without_stamps_is_left_to_its_marker_and_no_output_is_read(
    corpus, tmp_path, bert_model_dir, reads, monkeypatch
):
    out = tmp_path / "out"
    kill(corpus, out, bert_model_dir, after=3, flush=True)
    (only,) = checkpoint_files(out)
    data = json.loads((out / only).read_bytes())
    for ref in data["units"][0]["entry"]["files"]:
        ref.pop("stamp", None)  # checked without a stamp, a file would be hashed (downloaded)
    (out / only).write_text(json.dumps(data))

    def no_download(self: OutputDir, rel: str) -> str:
        raise AssertionError(f"resume read the output file {rel}")

    monkeypatch.setattr(OutputDir, "sha256", no_download)
    reads.clear()
    planned = plan_run(config(corpus, out, bert_model_dir), OutputDir(str(out)))
    assert len(planned.reused) == 3 and marker_reads(reads) == [data["units"][0]["marker"]]


def test_closing_the_writer_waits_no_longer_than_asked_for_a_store_that_does_not_answer(
    corpus, tmp_path, bert_model_dir, monkeypatch
):
    out = tmp_path / "out"
    embed_job(config(corpus, out, bert_model_dir))
    marker = sorted((out / "markers").glob("*.done.json"))[0]
    entry = ShardEntry.from_dict(json.loads(marker.read_bytes()))
    answer = threading.Event()
    monkeypatch.setattr(OutputDir, "write_create_only", lambda self, rel, data: answer.wait(30))  # a frozen store
    writer = CheckpointWriter(OutputDir(str(out)), "frozen", every_units=1).start()
    writer.add(f"markers/{marker.name}", entry)
    t0 = time.monotonic()
    writer.close(wait_s=0.5)
    assert time.monotonic() - t0 < 5
    answer.set()
