"""Parquet footers are read once: a resume or refresh plans unchanged large sources from the
footer cache in `markers/` and reads no footer of theirs again (in process, tiny model)."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_utils import embed_job, make_texts, read_output
from job_utils import Killed, config, dying

import e5ray.job.plan as plan_module
from e5ray.job.footer_cache import is_footer_cache, read_footer_cache
from e5ray.output.gc import collect_garbage
from e5ray.output.listing import list_output
from e5ray.store.filesystem import OutputDir

ROWS = 120
SLICED = {"unit_tokens": 20_000, "unit_rows": 30}  # a ~15 KB file needs its footer (as test_row_slices)


@pytest.fixture
def corpus(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for name, seed in (("a.parquet", 1), ("b.parquet", 2)):
        ids = range(seed * 1000, seed * 1000 + ROWS)
        pq.write_table(pa.table({"id": list(ids), "text": list(make_texts(ROWS, seed))}), inp / name)
    return inp


@pytest.fixture
def footer_reads(monkeypatch) -> list[str]:
    """The URIs whose footer the plan read from the file."""
    reads: list[str] = []
    real = plan_module.parquet_row_groups

    def counting(shard, *args, **kwargs):
        reads.append(shard.uri.rsplit("/", 1)[-1])
        return real(shard, *args, **kwargs)

    monkeypatch.setattr(plan_module, "parquet_row_groups", counting)
    return reads


def caches(out) -> list[str]:
    return sorted(rel for rel in list_output(OutputDir(str(out))) if is_footer_cache(rel))


def test_a_resume_reads_no_footer_of_the_unchanged_files_the_killed_run_planned(
    corpus, tmp_path, bert_model_dir, footer_reads
):
    out = tmp_path / "out"
    with pytest.raises(Killed):
        embed_job(config(corpus, out, bert_model_dir, **SLICED), executor=dying(2))
    assert sorted(footer_reads) == ["a.parquet", "b.parquet"] and len(caches(out)) == 1
    footer_reads.clear()
    done = embed_job(config(corpus, out, bert_model_dir, **SLICED))
    assert footer_reads == []  # both files as they were: their row groups came from the cache
    assert done["totals"]["embedded"] == 2 * ROWS and len(read_output(str(out))) == 2 * ROWS


def test_a_full_refresh_reads_only_the_footer_of_the_file_that_changed(corpus, tmp_path, bert_model_dir, footer_reads):
    out = tmp_path / "out"
    embed_job(config(corpus, out, bert_model_dir, **SLICED))
    first = caches(out)
    footer_reads.clear()
    embed_job(config(corpus, out, bert_model_dir, full=True, **SLICED))
    assert footer_reads == [] and caches(out) == first  # nothing new known: the same cache, nothing written
    texts = list(make_texts(ROWS, 9))
    pq.write_table(pa.table({"id": list(range(2000, 2000 + ROWS)), "text": texts}), corpus / "b.parquet")
    os.utime(corpus / "b.parquet", ns=(1, 1))  # another stamp whatever the clock's resolution
    embed_job(config(corpus, out, bert_model_dir, full=True, **SLICED))
    assert footer_reads == ["b.parquet"]
    assert len(caches(out)) == 1 and caches(out) != first  # the old cache replaced by the new one
    known, _ = read_footer_cache(OutputDir(str(out)), list_output(OutputDir(str(out))))
    assert len(known) == 2  # a.parquet's entry kept, b.parquet's new one


def test_a_dry_run_writes_no_footer_cache(corpus, tmp_path, bert_model_dir, footer_reads):
    out = tmp_path / "out"
    out.mkdir()
    plan_module.plan_run(config(corpus, out, bert_model_dir, **SLICED), OutputDir(str(out)))
    assert sorted(footer_reads) == ["a.parquet", "b.parquet"] and caches(out) == []


def test_gc_removes_the_footer_cache_like_any_unreferenced_file_and_the_next_plan_reads_the_footers(
    corpus, tmp_path, bert_model_dir, footer_reads
):
    out = tmp_path / "out"
    embed_job(config(corpus, out, bert_model_dir, **SLICED))
    cache = caches(out)
    assert len(cache) == 1
    assert cache[0] in collect_garbage(OutputDir(str(out)), keep=1, min_age_s=0)
    footer_reads.clear()
    embed_job(config(corpus, out, bert_model_dir, full=True, **SLICED))
    assert sorted(footer_reads) == ["a.parquet", "b.parquet"] and caches(out) == cache  # read, and cached again
