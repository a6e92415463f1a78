"""Row-level refresh: rows whose content hash the output holds are not embedded again.

In process (`executor="local"`) on the tiny BERT test model, local directories and the
real S3 test server. "Rows to the model" are counted by wrapping `E5Embedder.run`, not
read back from the manifest, so the manifest's own counts are checked against them.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_utils import embed_job, make_texts, read_output, write_shard
from job_utils import Killed, config, dying

from e5ray.cli.app import main as cli_main
from e5ray.errors import ConfigError, SpaceMismatchError
from e5ray.model.embedder import E5Embedder
from e5ray.output.content_hash import HASH_COLUMN, SCHEME, bucket_of, hash_token_ids
from e5ray.output.gc import collect_garbage
from e5ray.output.verify import verify_output
from e5ray.refresh.index import build_index, choose_buckets, load_index, lookup
from e5ray.store.filesystem import OutputDir, sha256_of


def run_job(cfg: Any, executor: Any = None) -> dict[str, Any]:
    """The committed manifest as readers of manifest.json see it."""
    return embed_job(cfg, executor)


def verify(out: Any) -> list[str]:
    return verify_output(OutputDir(str(out)))


@pytest.fixture
def to_model(monkeypatch) -> list[int]:
    """Rows each `E5Embedder.run` call sent to the model."""
    calls: list[int] = []
    original = E5Embedder.run

    def counting(self, tokens):
        calls.append(len(tokens))
        return original(self, tokens)

    monkeypatch.setattr(E5Embedder, "run", counting)
    return calls


def assert_same_vectors(got: dict[Any, np.ndarray], want: dict[Any, np.ndarray]) -> None:
    assert sorted(got, key=str) == sorted(want, key=str)
    ids = sorted(want, key=str)
    np.testing.assert_allclose(np.stack([got[i] for i in ids]), np.stack([want[i] for i in ids]), atol=1e-6)


def export(inp: Path, rows: dict[int, str], files: int, seed: int, names: str = "part-{:02d}.parquet") -> None:
    """Write `rows` as a fresh export: every file rewritten, rows shuffled across `files` files."""
    for old in inp.glob("*.parquet"):
        old.unlink()
    ids = list(rows)
    random.Random(seed).shuffle(ids)
    for f in range(files):
        part = ids[f::files]
        write_shard(inp / names.format(f), part, [rows[i] for i in part])


def reuse_of(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["run"]["reuse"]


def fresh(inp: Path, tmp_path: Path, model_dir: Any, **kw: Any) -> dict[Any, np.ndarray]:
    """The vectors of a full run of the corpus as it is now, into a new output."""
    out = tmp_path / f"fresh-{len(list(tmp_path.glob('fresh-*')))}"
    run_job(config(inp, out, model_dir, **kw))
    return read_output(str(out))


@pytest.fixture
def corpus() -> dict[int, str]:
    return dict(enumerate(make_texts(120, seed=5)))


# ---------------------------------------------------------------------------
# What goes to the model
# ---------------------------------------------------------------------------


def test_unchanged_rows_in_a_rewritten_export_are_reused_and_equal_a_full_run(
    tmp_path, bert_model_dir, corpus, to_model
):
    inp, out = tmp_path / "in", tmp_path / "out"
    export(inp, corpus, files=3, seed=1)
    v1 = run_job(config(inp, out, bert_model_dir))
    assert sum(to_model) == 120 and reuse_of(v1)["rows_embedded"] == 120
    assert all(s["hash_scheme"] == SCHEME for s in v1["shards"])

    export(inp, corpus, files=3, seed=2)  # same rows, every file rewritten, rows moved between files
    to_model.clear()
    v2 = run_job(config(inp, out, bert_model_dir))
    assert v2["changes"]["counts"]["changed"] == 3  # the shard level sees three changed files...
    assert sum(to_model) == 0  # ...but no row went to the model
    summary = reuse_of(v2)
    assert (summary["effective"], summary["rows_reused"], summary["rows_embedded"]) == ("rows", 120, 0)
    assert summary["index"]["built_now"] and summary["previous_version_reads"]["bytes"] > 0
    for shard in v2["shards"]:
        r = shard["reuse"]
        assert r["rows_reused"] + r["rows_embedded"] + r["duplicates_folded"] == shard["rows"] == 40
    assert verify(out) == []
    assert_same_vectors(read_output(str(out)), fresh(inp, tmp_path, bert_model_dir))


def test_an_edited_text_is_embedded_again_and_nothing_else(tmp_path, bert_model_dir, corpus, to_model):
    inp, out = tmp_path / "in", tmp_path / "out"
    export(inp, corpus, files=3, seed=1)
    run_job(config(inp, out, bert_model_dir))
    before = read_output(str(out))

    edited = {**corpus, 7: corpus[7] + " und noch ein Satz", 50: "a completely new text"}
    added = {**edited, 1000: "an added row", 1001: "another added row"}
    del added[3]
    export(inp, added, files=3, seed=3)
    to_model.clear()
    v2 = run_job(config(inp, out, bert_model_dir))
    assert sum(to_model) == 4  # two edited, two added; the deleted row is simply gone
    assert (reuse_of(v2)["rows_embedded"], reuse_of(v2)["rows_reused"]) == (4, 117)
    after = read_output(str(out))
    assert 3 not in after and {1000, 1001} <= set(after)
    assert not np.allclose(after[7], before[7]) and not np.allclose(after[50], before[50])
    assert_same_vectors(after, fresh(inp, tmp_path, bert_model_dir))


def test_a_row_moved_to_another_file_is_reused(tmp_path, bert_model_dir, to_model):
    inp, out = tmp_path / "in", tmp_path / "out"
    texts = make_texts(20, seed=11)
    write_shard(inp / "a.parquet", list(range(10)), texts[:10])
    write_shard(inp / "b.jsonl", list(range(10, 20)), texts[10:])
    run_job(config(inp, out, bert_model_dir))

    write_shard(inp / "a.parquet", list(range(9)), texts[:9])  # row 9 leaves a...
    write_shard(inp / "b.jsonl", [9, *range(10, 20)], [texts[9], *texts[10:]])  # ...for b (another format)
    to_model.clear()
    v2 = run_job(config(inp, out, bert_model_dir))
    assert sum(to_model) == 0 and reuse_of(v2)["rows_reused"] == 20
    assert_same_vectors(read_output(str(out)), fresh(inp, tmp_path, bert_model_dir))


def test_a_renamed_file_is_reused(tmp_path, bert_model_dir, corpus, to_model):
    inp, out = tmp_path / "in", tmp_path / "out"
    export(inp, corpus, files=2, seed=1)
    run_job(config(inp, out, bert_model_dir))
    (inp / "part-01.parquet").rename(inp / "renamed-01.parquet")
    to_model.clear()
    v2 = run_job(config(inp, out, bert_model_dir))
    assert v2["changes"]["counts"] == {"added": 1, "changed": 0, "removed": 1, "unchanged": 1}
    assert sum(to_model) == 0 and reuse_of(v2)["rows_reused"] == 60 and reuse_of(v2)["shards_carried"] == 1
    assert_same_vectors(read_output(str(out)), fresh(inp, tmp_path, bert_model_dir))


def test_duplicate_texts_in_a_shard_are_embedded_once(tmp_path, bert_model_dir, to_model):
    inp, out = tmp_path / "in", tmp_path / "out"
    texts = make_texts(6, seed=21)
    # 5 copies of texts[0] spread over chunks (chunk_rows=4), 2 of texts[1], three singles
    rows = [texts[0], texts[1], texts[2], texts[0], texts[0], texts[3], texts[1], texts[0], texts[4], texts[0]]
    write_shard(inp / "dups.parquet", list(range(len(rows))), rows)
    v1 = run_job(config(inp, out, bert_model_dir, chunk_rows=4))
    assert sum(to_model) == 5
    entry = v1["shards"][0]["reuse"]
    assert (entry["rows_embedded"], entry["duplicates_folded"], entry["rows_reused"]) == (5, 5, 0)
    got = read_output(str(out))
    for i in (3, 4, 7, 9):
        np.testing.assert_array_equal(got[i], got[0])
    assert_same_vectors(got, fresh(inp, tmp_path, bert_model_dir, reuse="shard"))
    table = pq.read_table(out / v1["shards"][0]["files"][0]["path"])
    hashes = table.column(HASH_COLUMN).to_pylist()
    assert hashes[0] == hashes[3] == hashes[9] and hashes[0] != hashes[1] and len(hashes[0]) == 16


# ---------------------------------------------------------------------------
# Modes, fallback, guards
# ---------------------------------------------------------------------------


def test_reuse_shard_and_none_embed_as_before(tmp_path, bert_model_dir, corpus, to_model):
    inp, out = tmp_path / "in", tmp_path / "out"
    export(inp, corpus, files=3, seed=1)
    run_job(config(inp, out, bert_model_dir))
    write_shard(inp / "part-00.parquet", [5000], ["one row replaces a file"])
    to_model.clear()
    v2 = run_job(config(inp, out, bert_model_dir, reuse="shard"))
    assert sum(to_model) == 1 and reuse_of(v2)["effective"] == "shard" and reuse_of(v2)["index"] is None
    to_model.clear()
    v3 = run_job(config(inp, out, bert_model_dir, reuse="none"))
    assert sum(to_model) == 81 and v3["run"]["embedded_shards"] == 3 and v3["run"]["carried_shards"] == 0
    with pytest.raises(ConfigError, match=r"reuse \(--reuse\): 'some' is not valid; valid: none, shard, rows"):
        run_job(config(inp, out, bert_model_dir, reuse="some"))


def test_cli_reuse_flag_and_summary(tmp_path, bert_model_dir, corpus, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    export(inp, corpus, files=2, seed=1)
    args = ["embed", "--input", str(inp), "--output", str(out), "--model", "tiny"]
    args += ["--model-path", str(bert_model_dir), "--executor", "local", "--quiet"]
    assert cli_main(args) == 0
    export(inp, corpus, files=2, seed=9)
    capsys.readouterr()
    assert cli_main([*args, "--reuse", "rows", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["reuse"]["rows_reused"] == 120 and summary["reuse"]["rows_embedded"] == 0
    assert summary["reuse"]["previous_version_reads"]["requests"] > 0
    with pytest.raises(SystemExit):
        cli_main([*args, "--reuse", "all"])


def strip_hashes(out: Path) -> None:
    """Turn a fresh output into one written before content hashes: no column, no scheme."""
    manifest = json.loads((out / "manifest.json").read_bytes())
    for shard in manifest["shards"]:
        (ref,) = shard["files"]
        path = out / ref["path"]
        table = pq.read_table(path).drop_columns([HASH_COLUMN])
        pq.write_table(table, path)
        ref["bytes"], ref["sha256"] = path.stat().st_size, sha256_of_local(path)
        del shard["hash_scheme"], shard["reuse"]
        (out / "markers" / f"{Path(ref['path']).name.rsplit('-', 1)[0]}.done.json").unlink()
    blob = json.dumps(manifest, indent=1).encode()
    (out / "manifest.json").write_bytes(blob)
    (out / "manifests" / f"v{manifest['version']:06d}.json").write_bytes(blob)


def sha256_of_local(path: Path) -> str:
    import fsspec

    return sha256_of(fsspec.filesystem("file"), str(path))


def test_old_outputs_without_hashes_fall_back_to_shards_then_reuse_rows(
    tmp_path, bert_model_dir, corpus, to_model, caplog
):
    inp, out = tmp_path / "in", tmp_path / "out"
    export(inp, corpus, files=3, seed=1)
    run_job(config(inp, out, bert_model_dir))
    strip_hashes(out)
    assert verify(out) == []

    write_shard(inp / "part-00.parquet", [9000, 9001], ["first new text", "second new text"])
    (inp / "part-01.parquet").write_bytes((inp / "part-01.parquet").read_bytes())  # rewritten, same rows
    to_model.clear()
    with caplog.at_level(logging.WARNING, logger="e5ray"):
        v2 = run_job(config(inp, out, bert_model_dir))
    assert "falling back to shard-level refresh" in caplog.text
    summary = reuse_of(v2)
    assert summary["effective"] == "shard" and "has no content hashes" in summary["reason"]
    assert sum(to_model) == 42  # both changed files embedded whole
    assert verify(out) == []

    # the next refresh reuses rows of the shards v2 wrote; the carried one (no hashes) is not indexed
    (inp / "part-01.parquet").write_bytes((inp / "part-01.parquet").read_bytes())
    to_model.clear()
    v3 = run_job(config(inp, out, bert_model_dir))
    assert reuse_of(v3)["effective"] == "rows" and reuse_of(v3)["notes"] == [
        "1 of 3 shards of v000002 have no hashes: not indexed"
    ]
    assert sum(to_model) == 0 and reuse_of(v3)["rows_reused"] == 40
    assert_same_vectors(read_output(str(out)), fresh(inp, tmp_path, bert_model_dir))


def test_a_space_change_still_refuses(tmp_path, bert_model_dir, corpus):
    inp, out = tmp_path / "in", tmp_path / "out"
    export(inp, corpus, files=2, seed=1)
    run_job(config(inp, out, bert_model_dir))
    export(inp, corpus, files=2, seed=2)
    for mode in ("rows", "shard", "none"):
        with pytest.raises(SpaceMismatchError, match="max_length: 512 in the output, 64 now"):
            run_job(config(inp, out, bert_model_dir, max_length=64, reuse=mode))
    v2 = run_job(config(inp, out, bert_model_dir, max_length=64, full=True))  # --full switches, reusing no row
    assert reuse_of(v2)["effective"] == "none" and reuse_of(v2)["rows_reused"] == 0
    assert_same_vectors(read_output(str(out)), fresh(inp, tmp_path, bert_model_dir, max_length=64))


# ---------------------------------------------------------------------------
# Killed refresh
# ---------------------------------------------------------------------------


def test_a_killed_refresh_resumes_and_equals_a_full_run(tmp_path, bert_model_dir, corpus, to_model):
    inp, out = tmp_path / "in", tmp_path / "out"
    export(inp, corpus, files=4, seed=1)
    v1 = run_job(config(inp, out, bert_model_dir))
    export(inp, {**corpus, 2: "edited text two", 90: "edited text ninety"}, files=4, seed=2)
    with pytest.raises(Killed):
        run_job(config(inp, out, bert_model_dir), executor=dying(2))
    assert json.loads((out / "manifest.json").read_bytes()) == v1
    assert load_index(str(out), "index/v000001") is not None  # built by the killed run

    to_model.clear()
    v2 = run_job(config(inp, out, bert_model_dir))
    assert (v2["run"]["reused_shards"], v2["run"]["embedded_shards"]) == (2, 2)
    summary = reuse_of(v2)
    assert summary["index"]["built_now"] is False  # the killed run's index is used, not rebuilt
    assert summary["rows_reused"] + summary["rows_embedded"] == 120 and summary["rows_embedded"] == 2
    assert sum(to_model) <= 2  # what the killed run embedded is not embedded again
    assert verify(out) == []
    assert_same_vectors(read_output(str(out)), fresh(inp, tmp_path, bert_model_dir))


def test_gc_keeps_the_index_of_kept_versions_only(tmp_path, bert_model_dir, corpus):
    inp, out = tmp_path / "in", tmp_path / "out"
    export(inp, corpus, files=2, seed=1)
    run_job(config(inp, out, bert_model_dir))
    for seed in (2, 3):  # each refresh builds the previous version's index
        export(inp, corpus, files=2, seed=seed)
        run_job(config(inp, out, bert_model_dir))
    assert sorted(p.name for p in (out / "index").iterdir()) == ["v000001", "v000002"]
    deleted = collect_garbage(OutputDir(str(out)), keep=2, min_age_s=0)
    assert any(d.startswith("index/v000001/") for d in deleted)
    assert not any(d.startswith("index/v000002/") for d in deleted)
    assert load_index(str(out), "index/v000002") is not None


# ---------------------------------------------------------------------------
# The index itself
# ---------------------------------------------------------------------------


def test_index_lookup_reads_only_what_it_needs(tmp_path):
    dim, n = 8, 500
    rng = np.random.default_rng(0)
    hashes = hash_token_ids([[101, i, 102] for i in range(n)])
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    import pyarrow as pa

    from e5ray.output.content_hash import hash_array

    table = pa.table(
        {
            "id": list(range(n)),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
            HASH_COLUMN: hash_array(hashes),
        }
    )
    (tmp_path / "shards").mkdir()
    pq.write_table(table.slice(0, 300), tmp_path / "shards/a.parquet")
    pq.write_table(table.slice(300), tmp_path / "shards/b.parquet")
    info = build_index(str(tmp_path), 1, ["shards/a.parquet", "shards/b.parquet"], dim, n)  # local: no options
    assert info.buckets == choose_buckets(n, dim) == 8 and sum(info.rows) == n
    counts = np.bincount(bucket_of(hashes, 8), minlength=8)
    assert list(info.rows) == counts.tolist()

    wanted = [hashes[3], hashes[450], b"\x00" * 16, hashes[3 + 1]]
    out = np.zeros((4, dim), dtype=np.float32)
    found, stats = lookup(str(tmp_path), info, wanted, out, gap_bytes=0)
    assert found.tolist() == [True, True, False, True]
    np.testing.assert_array_equal(out[[0, 1, 3]], vectors[[3, 450, 4]])
    touched = len(set(bucket_of(wanted, 8).tolist()))
    # per touched bucket: its hashes; then one request per found vector (no merging at gap 0)
    assert stats.requests == touched + 3
    hash_bytes = sum(info.rows[b] * 16 for b in set(bucket_of(wanted, 8).tolist()))
    assert stats.bytes == hash_bytes + 3 * 4 * dim

    # with a large gap, vectors of one bucket come in one request
    all_out = np.zeros((n, dim), dtype=np.float32)
    found, stats = lookup(str(tmp_path), info, hashes, all_out, gap_bytes=1 << 20)
    assert found.all() and stats.requests == 16
    np.testing.assert_array_equal(all_out, vectors)


# ---------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------


def test_row_reuse_on_s3(s3_server, s3_bucket, s3_env, bert_model_dir, corpus, to_model, tmp_path):
    fs, bucket = s3_server.filesystem(), s3_bucket
    ids = list(corpus)

    def s3_export(seed: int, rows: dict[int, str]) -> None:
        for path in fs.ls(f"{bucket}/corpus", detail=False) if fs.exists(f"{bucket}/corpus") else []:
            fs.rm_file(path)
        order = list(rows)
        random.Random(seed).shuffle(order)
        for f in range(3):
            part = order[f::3]
            write_shard(f"{bucket}/corpus/part-{f}.parquet", part, [rows[i] for i in part], fs)

    s3_export(1, corpus)
    cfg = config(f"s3://{bucket}/corpus", f"s3://{bucket}/emb", bert_model_dir)
    run_job(cfg)
    s3_export(2, {**{i: corpus[i] for i in ids[:-2]}, 7: "an edited text on S3"})
    to_model.clear()
    v2 = run_job(cfg)
    summary = reuse_of(v2)
    assert sum(to_model) == 1 and (summary["rows_reused"], summary["rows_embedded"]) == (117, 1)
    assert summary["previous_version_reads"]["requests"] > 0 and fs.exists(f"{bucket}/emb/index/v000001/meta.json")
    assert verify(f"s3://{bucket}/emb") == []
    local = tmp_path / "in"
    for f in range(3):
        (local).mkdir(exist_ok=True)
        (local / f"part-{f}.parquet").write_bytes(fs.cat_file(f"{bucket}/corpus/part-{f}.parquet"))
    assert_same_vectors(read_output(f"s3://{bucket}/emb", fs), fresh(local, tmp_path, bert_model_dir))


def test_the_refresh_benchmark_embeds_exactly_the_changed_rows(tmp_path):
    from e5ray.bench.refresh import RefreshBenchConfig, format_refresh_report, run_refresh_benchmark

    result = run_refresh_benchmark(RefreshBenchConfig(shape="tiny", docs=300, shards=3, workdir=str(tmp_path)))
    assert result["day2"] == {
        "docs": 300 - 3 + 6,
        "deleted": 3,
        "edited": 15,
        "added": 6,
        "changes": {"added": 0, "changed": 3, "removed": 0, "unchanged": 0},
    }
    assert result["rows_embedded"] == result["rows_expected"] == 21
    assert result["rows_reused"] == 300 - 3 - 15
    assert result["previous_version_reads"]["requests"] > 0
    assert "rows embedded by the refresh: 21 (expected: changed + added = 21)" in format_refresh_report(result)


def test_a_jsonl_output_refreshes_by_shard_and_says_why(tmp_path, bert_model_dir, corpus, to_model):
    inp, out = tmp_path / "in", tmp_path / "out"
    export(inp, corpus, files=2, seed=1)
    run_job(config(inp, out, bert_model_dir, output_format="jsonl"))
    export(inp, corpus, files=2, seed=2)
    to_model.clear()
    v2 = run_job(config(inp, out, bert_model_dir, output_format="jsonl"))
    assert reuse_of(v2)["effective"] == "shard" and "Parquet" in reuse_of(v2)["reason"]
    assert sum(to_model) == 120 and all(s["hash_scheme"] is None for s in v2["shards"])


def test_chunk_mode_refreshes_by_shard_and_says_why(tmp_path, bert_model_dir, corpus, to_model):
    inp, out = tmp_path / "in", tmp_path / "out"
    export(inp, corpus, files=2, seed=1)
    run_job(config(inp, out, bert_model_dir, long_text="chunk", max_length=16))
    export(inp, corpus, files=2, seed=2)
    v2 = run_job(config(inp, out, bert_model_dir, long_text="chunk", max_length=16))
    assert reuse_of(v2)["effective"] == "shard" and "--long-text truncate" in reuse_of(v2)["reason"]
    assert all(s["hash_scheme"] is None for s in v2["shards"]) and verify(out) == []


def row_groups(path: Path) -> list[list[Any]]:
    """The ids of each row group of an output file, in file order."""
    parquet = pq.ParquetFile(path)
    return [parquet.read_row_group(g, columns=["id"]).column("id").to_pylist() for g in range(parquet.num_row_groups)]


def test_no_row_group_of_a_refresh_mixes_carried_rows_with_new_ones(tmp_path, bert_model_dir, corpus, to_model):
    inp, out = tmp_path / "in", tmp_path / "out"
    export(inp, corpus, files=3, seed=1)
    run_job(config(inp, out, bert_model_dir, chunk_rows=8))
    new_ids = set(range(0, 120, 4)) | {1000, 1001, 1002}  # 30 edited, 3 added: more than a chunk per file
    day2 = {i: (t + " und noch ein Satz" if i in new_ids else t) for i, t in corpus.items()}
    day2 |= {i: f"an added row number {i}" for i in (1000, 1001, 1002)}
    export(inp, day2, files=3, seed=4)
    to_model.clear()
    v2 = run_job(config(inp, out, bert_model_dir, chunk_rows=8))
    assert sum(to_model) == len(new_ids) and reuse_of(v2)["rows_embedded"] == len(new_ids)

    seen: list[Any] = []
    for shard in v2["shards"]:
        groups = row_groups(out / shard["files"][0]["path"])
        kinds = [{i in new_ids for i in group} for group in groups]
        assert max(len(g) for g, k in zip(groups, kinds, strict=True) if k == {True}) >= 8  # flushed at 8 rows
        assert all(len(k) == 1 for k in kinds), groups  # each row group: carried rows only, or new rows only
        assert {True} in kinds and {False} in kinds  # every file here holds both kinds
        source = pq.read_table(inp / shard["source"]["relpath"]).column("id").to_pylist()
        for kind in (True, False):  # each kind keeps input order
            in_file = [i for group in groups for i in group if (i in new_ids) == kind]
            assert in_file == [i for i in source if (i in new_ids) == kind]
        seen += [i for group in groups for i in group]
    assert sorted(seen) == sorted(day2)  # every row exactly once
    assert verify(out) == []
    assert_same_vectors(read_output(str(out)), fresh(inp, tmp_path, bert_model_dir))


def test_a_refresh_whose_rows_are_all_carried_writes_the_file_a_full_run_writes(tmp_path, bert_model_dir, corpus):
    inp, out = tmp_path / "in", tmp_path / "out"
    export(inp, corpus, files=3, seed=1)
    run_job(config(inp, out, bert_model_dir, chunk_rows=8))
    export(inp, corpus, files=3, seed=2)  # every row moved: each unit is all carried
    v2 = run_job(config(inp, out, bert_model_dir, chunk_rows=8))
    full = tmp_path / "full"
    v_full = run_job(config(inp, full, bert_model_dir, chunk_rows=8))
    for got, want in zip(v2["shards"], v_full["shards"], strict=True):
        assert [len(g) for g in row_groups(out / got["files"][0]["path"])] == [8] * 5  # input order, chunk by chunk
        assert row_groups(out / got["files"][0]["path"]) == row_groups(full / want["files"][0]["path"])


def test_kept_columns_stay_with_their_rows_when_carried_and_new_rows_are_separated(tmp_path, bert_model_dir, corpus):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()

    def write(rows: dict[int, str], seed: int) -> None:
        ids = list(rows)
        random.Random(seed).shuffle(ids)
        for f in range(2):
            part = ids[f::2]
            table = {"id": part, "text": [rows[i] for i in part], "label": [f"label-{i}" for i in part]}
            pq.write_table(pa.table(table), inp / f"part-{f}.parquet")

    write(corpus, seed=1)
    run_job(config(inp, out, bert_model_dir, chunk_rows=8, keep_columns=["label"]))
    day2 = {i: (t + " und noch ein Satz" if i % 5 == 0 else t) for i, t in corpus.items()}
    write(day2, seed=2)
    v2 = run_job(config(inp, out, bert_model_dir, chunk_rows=8, keep_columns=["label"]))
    assert reuse_of(v2)["rows_embedded"] == 24
    for shard in v2["shards"]:
        table = pq.read_table(out / shard["files"][0]["path"])
        assert table.column("label").to_pylist() == [f"label-{i}" for i in table.column("id").to_pylist()]
        assert len(row_groups(out / shard["files"][0]["path"])) > 1
    assert verify(out) == []
    assert_same_vectors(read_output(str(out)), fresh(inp, tmp_path, bert_model_dir, keep_columns=["label"]))
