"""A shard that cannot be read fails the run clearly, costs the other shards nothing, and
the run resumes once it is fixed."""

import pytest
from corpus_utils import embed_job, write_corpus, write_shard

from e5ray.config import JobConfig
from e5ray.errors import ShardFailures
from e5ray.output.versions import load_latest
from e5ray.store.filesystem import OutputDir


@pytest.fixture(params=["local", "ray"])
def executor(request):
    """Both executors; the Ray one on the shared local Ray (conftest's local_ray)."""
    if request.param == "ray":
        request.getfixturevalue("local_ray")
    return request.param


def test_unreadable_shard_is_named_and_nothing_is_committed(executor, bert_model_dir, tmp_path):
    write_corpus(tmp_path / "in", shards=2, rows=10)
    (tmp_path / "in" / "part-0009.parquet").write_bytes(b"not parquet at all")
    config = JobConfig.from_options(
        input=str(tmp_path / "in"),
        output=str(tmp_path / "out"),
        model="tiny",
        model_path=str(bert_model_dir),
        executor=executor,
    )
    with pytest.raises(
        ShardFailures, match=r"(?s)1 of 3 shards.*part-0009.parquet: CorpusError: .*not a readable Parquet"
    ):
        embed_job(config)
    assert load_latest(OutputDir(str(tmp_path / "out"))) is None
    assert len(list((tmp_path / "out" / "markers").glob("*.done.json"))) == 2

    write_shard(tmp_path / "in" / "part-0009.parquet", [99], ["now a fine document"])
    manifest = embed_job(config)
    assert manifest["run"]["reused_shards"] == 2 and manifest["run"]["embedded_shards"] == 1
    assert manifest["totals"]["embedded"] == 21


def test_the_worker_reports_data_errors_and_lets_bugs_raise(bert_model_dir, tmp_path, monkeypatch):
    from e5ray.corpus.sources import discover
    from e5ray.model.embedder import describe_space
    from e5ray.worker import worker as worker_module
    from e5ray.worker.task import ShardTask
    from e5ray.worker.worker import EmbeddingWorker, ShardFailure, WorkerSpec

    write_shard(tmp_path / "in" / "ok.parquet", [1, 2], ["one", "two"])
    (tmp_path / "in" / "cut.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00truncated")
    config = JobConfig.from_options(
        input=str(tmp_path / "in"), output=str(tmp_path / "out"), model="tiny", model_path=str(bert_model_dir)
    )
    space = describe_space("tiny", str(bert_model_dir))
    worker = EmbeddingWorker(WorkerSpec.for_job(config, space.fingerprint), threads=1)
    tasks = {s.relpath: ShardTask(s, space.fingerprint) for s in discover(str(tmp_path / "in"))}

    failure = worker.embed(tasks["cut.jsonl.gz"])
    assert isinstance(failure, ShardFailure) and failure.source.relpath == "cut.jsonl.gz"

    def buggy(*args, **kwargs):
        raise ZeroDivisionError("a bug, not bad data")

    monkeypatch.setattr(worker_module, "embed_shard", buggy)
    with pytest.raises(ZeroDivisionError):
        worker.embed(tasks["ok.parquet"])
