"""gc and running jobs share an output: leases, and the checks before a commit.

gc runs with --min-age 0 in the middle of a refresh (from inside the executor, after the
first shard came back, so the moment is exact); the refresh then commits a version that
verifies. A commit refuses a version whose files are gone, and a refresh embeds again a
carried shard whose files are gone.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from corpus_utils import embed_job, make_texts, read_output, write_shard

from e5ray.cli.app import main as cli_main
from e5ray.config import JobConfig
from e5ray.errors import LeaseLostError, MissingFilesError
from e5ray.executors.local import run_local
from e5ray.job.run import run_job
from e5ray.output.gc import collect_garbage
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir, filesystem_for
from e5ray.store.lease import Lease, read_leases

pytestmark = pytest.mark.slow


def config(inp: Any, out: Any, model_dir: Any, **kw: Any) -> JobConfig:
    return JobConfig.from_options(
        input=str(inp), output=str(out), model="tiny", model_path=str(model_dir), executor="local", **kw
    )


def corpus_at_v1(tmp_path: Any, model_dir: Any) -> tuple[Any, Any]:
    """An output at v1 (two shards), and a corpus since grown by three shards."""
    inp, out = tmp_path / "in", tmp_path / "out"
    write_shard(inp / "a.parquet", [1, 2, 3], ["one", "two", "three"])
    write_shard(inp / "b.jsonl", [4, 5], ["four", "five"])
    embed_job(config(inp, out, model_dir))
    for s in range(3):
        write_shard(inp / f"new-{s}.parquet", list(range(100 * (s + 1), 100 * (s + 1) + 30)), make_texts(30, s))
    return inp, out


def test_gc_during_a_refresh_spares_what_the_refresh_made_and_says_so(tmp_path, bert_model_dir, capsys):
    inp, out = corpus_at_v1(tmp_path, bert_model_dir)
    for s in range(3):  # each new shard also has a rejected row: the run writes rejects files too
        ids = [*range(100 * (s + 1), 100 * (s + 1) + 30), 99_000 + s]
        write_shard(inp / f"new-{s}.parquet", ids, [*make_texts(30, s), ""])
    old_tmp = out / "shards" / ".dead-run.parquet.tmp"
    old_tmp.write_bytes(b"left by a run killed long ago")
    os.utime(old_tmp, (time.time() - 7200, time.time() - 7200))
    seen: dict[str, Any] = {}

    def executor(tasks, spec, compute) -> Iterator[Any]:
        results = run_local(tasks, spec, compute)
        first = next(results)
        yield first
        # mid-way: one shard finished (not yet referenced), one being written
        being_written = out / "shards" / ".new-1.parquet-0123.x.parquet.tmp"
        being_written.write_bytes(b"half a shard")
        assert cli_main(["gc", str(out), "--keep", "1", "--min-age", "0"]) == 0
        seen["gc"] = capsys.readouterr().out
        seen["first"] = first
        seen["markers"] = [
            f"markers/{p.name}" for p in (out / "markers").iterdir() if p.stat().st_mtime > time.time() - 60
        ]
        assert being_written.exists()
        being_written.unlink()
        yield from results

    manifest = embed_job(config(inp, out, bert_model_dir), executor=executor)
    lines = seen["gc"].splitlines()
    assert any(line.startswith("lease ") and "(honoured)" in line for line in lines), lines
    assert f"deleted shards/{old_tmp.name}" in lines  # gc still collects real garbage
    # nothing the refresh made is deleted: data, marker, rejects and ids files alike
    first = seen["first"]
    made = [first.files[0].path, first.rejects.path, first.ids.path, *seen["markers"]]
    assert [line for line in lines if line.removeprefix("deleted ") in made] == []
    assert seen["markers"] and all(
        not line.startswith(("deleted markers/", "deleted rejects/", "deleted ids/")) for line in lines
    )
    assert all((out / path).exists() for path in made)
    assert manifest["run"]["embedded_shards"] == 3
    assert verify_output(OutputDir(str(out))) == []
    assert sorted(read_output(str(out))) == [1, 2, 3, 4, 5] + [
        i for s in range(3) for i in range(100 * (s + 1), 100 * (s + 1) + 30)
    ]
    assert not (out / "leases").exists() or not list((out / "leases").iterdir())  # released


def test_gc_spares_files_a_lease_lists_even_when_old(tmp_path, bert_model_dir):
    inp, out = corpus_at_v1(tmp_path, bert_model_dir)
    v1 = json.loads((out / "manifest.json").read_bytes())
    write_shard(inp / "a.parquet", [1, 2, 3], ["uno", "dos", "tres"])  # changed: v2 drops a's old file
    embed_job(config(inp, out, bert_model_dir))
    old = next(s["files"][0] for s in v1["shards"] if s["source"]["relpath"] == "a.parquet")
    fs, root = filesystem_for(str(out))
    lease = Lease(fs, root, "run-carrying-a", interval=30, timeout=600).start()
    try:
        lease.add([old["path"]], flush=True)  # a run that still carries v1's file of a.parquet
        notes: list[str] = []
        deleted = collect_garbage(OutputDir(str(out)), keep=1, min_age_s=0, notes=notes)
        assert old["path"] not in deleted and (out / old["path"]).exists()
        assert notes and "lease run-carrying-a (honoured)" in notes[0] and "1 file(s) listed" in notes[0]
    finally:
        lease.release()
    assert old["path"] in collect_garbage(OutputDir(str(out)), keep=1, min_age_s=0)  # no lease: collected


def test_an_expired_lease_is_not_honoured_and_is_removed(tmp_path, bert_model_dir):
    _, out = corpus_at_v1(tmp_path, bert_model_dir)
    stale = out / "leases" / "killed-run.json"
    stale.parent.mkdir(exist_ok=True)
    stale.write_text(json.dumps({"run_id": "killed-run", "started": 0.0, "timeout_s": 600, "files": []}))
    garbage = out / "shards" / "orphan.parquet"
    garbage.write_bytes(b"x")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    notes: list[str] = []
    deleted = collect_garbage(OutputDir(str(out)), keep=1, min_age_s=0, notes=notes)
    assert "leases/killed-run.json" in deleted and "shards/orphan.parquet" in deleted
    assert "expired, not honoured" in notes[0]
    assert read_leases(*filesystem_for(str(out))) == []


def test_a_lease_that_could_not_be_renewed_blocks_the_commit(tmp_path):
    fs, root = filesystem_for(str(tmp_path))
    lease = Lease(fs, root, "r1", interval=0.05, timeout=0.3).start()
    lease._stop.set()  # the heartbeat stops (as when every write to the store fails)
    time.sleep(0.4)
    with pytest.raises(LeaseLostError, match="last renewed"):
        lease.check_held()
    lease.release()


def test_a_commit_refuses_a_version_whose_files_are_gone(tmp_path, bert_model_dir):
    inp, out = corpus_at_v1(tmp_path, bert_model_dir)

    def executor(tasks, spec, compute) -> Iterator[Any]:
        for entry in run_local(tasks, spec, compute):
            if entry.source.relpath == "new-0.parquet":
                (out / entry.files[0].path).unlink()  # collected by something that ignores leases
            yield entry

    with pytest.raises(MissingFilesError, match=r"1 file\(s\) .* are gone or changed \(first: shards/new-0\.parquet-"):
        run_job(config(inp, out, bert_model_dir), executor=executor)
    assert json.loads((out / "manifest.json").read_bytes())["version"] == 1
    manifest = embed_job(config(inp, out, bert_model_dir))
    assert (manifest["run"]["embedded_shards"], manifest["run"]["reused_shards"]) == (1, 2)
    assert verify_output(OutputDir(str(out))) == []


def test_a_carried_shard_whose_file_is_gone_is_embedded_again(tmp_path, bert_model_dir, capsys):
    inp, out = corpus_at_v1(tmp_path, bert_model_dir)
    v1 = json.loads((out / "manifest.json").read_bytes())
    gone = next(s["files"][0] for s in v1["shards"] if s["source"]["relpath"] == "a.parquet")
    (out / gone["path"]).unlink()
    assert cli_main(["verify", str(out)]) == 1
    printed = capsys.readouterr().out
    assert f"PROBLEM {gone['path']}: missing" in printed and "next `e5ray refresh`" in printed
    for s in range(3):
        (inp / f"new-{s}.parquet").unlink()
    v2 = embed_job(config(inp, out, bert_model_dir))
    assert (v2["run"]["embedded_shards"], v2["run"]["carried_shards"]) == (1, 1)
    assert verify_output(OutputDir(str(out))) == [] and sorted(read_output(str(out))) == [1, 2, 3, 4, 5]


def test_a_lease_whose_driver_died_on_this_host_is_not_honoured(tmp_path, bert_model_dir):
    import socket
    import subprocess
    import sys

    _, out = corpus_at_v1(tmp_path, bert_model_dir)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lease = {"run_id": "killed", "started": 0.0, "timeout_s": 600, "files": [], "host": socket.gethostname()}
    (out / "leases").mkdir(exist_ok=True)
    (out / "leases" / "killed.json").write_text(json.dumps({**lease, "pid": int(dead.stdout)}))
    (out / "shards" / "orphan.parquet.tmp").write_bytes(b"x")
    notes: list[str] = []
    deleted = collect_garbage(OutputDir(str(out)), keep=1, min_age_s=0, notes=notes)
    assert "driver gone, not honoured" in notes[0]
    assert {"leases/killed.json", "shards/orphan.parquet.tmp"} <= set(deleted)
