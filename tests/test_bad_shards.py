"""A shard that cannot be read fails the run clearly, costs the other shards nothing, and
the run resumes once it is fixed."""

import pytest
from corpus_utils import embed_job, write_corpus, write_shard

from e5ray.config import JobConfig
from e5ray.errors import ShardFailures
from e5ray.storage import OutputDir
from e5ray.versions import load_latest


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
    assert len(list((tmp_path / "out" / "shards").glob("*.done.json"))) == 2

    write_shard(tmp_path / "in" / "part-0009.parquet", [99], ["now a fine document"])
    manifest = embed_job(config)
    assert manifest["run"]["reused_shards"] == 2 and manifest["run"]["embedded_shards"] == 1
    assert manifest["totals"]["embedded"] == 21
