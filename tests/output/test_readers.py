"""Reading an output: `read_embeddings` returns exactly the current version, and every
reader recipe in the docs runs here, as written (pyarrow, DuckDB, Polars, LanceDB).

The recipes are taken from the "Reading the output" section of docs/output.md: each ```python
block there starts with a comment naming its reader. A recipe whose library is not
installed is skipped with the reason; the `test` extra installs all of them.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from corpus_utils import make_texts, read_output, write_corpus, write_shard

import e5ray
from e5ray.config import JobConfig
from e5ray.job.run import run_job

RECIPES_PAGE = Path(__file__).resolve().parents[2] / "docs" / "output.md"
RECIPE_LIBRARIES = {"pyarrow": "pyarrow", "DuckDB": "duckdb", "Polars": "polars", "LanceDB": "lancedb"}


def recipes() -> dict[str, str]:
    """Reader name -> the code of its recipe in docs/output.md."""
    text = RECIPES_PAGE.read_text()
    section = text.split("## Reading the output", 1)[1].split("\n## ", 1)[0]
    found = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        name = block.splitlines()[0].lstrip("# ").split(":")[0].split(" ")[0]
        found[name] = block
    return found


@pytest.fixture(scope="module")
def refreshed_output(tmp_path_factory, bert_model_dir):
    """An output after a refresh: version 2 replaced one shard, the superseded file is still there."""
    root = tmp_path_factory.mktemp("readers")
    write_corpus(root / "in", shards=3, rows=20)
    config = JobConfig.from_options(
        input=str(root / "in"), output=str(root / "out"), model="tiny", model_path=str(bert_model_dir), executor="local"
    )
    run_job(config)
    write_shard(root / "in" / "part-0000.parquet", list(range(20)), make_texts(20, 77))  # changed
    manifest = run_job(config)
    assert manifest.version == 2
    return root / "out", read_output(str(root / "out"))


def test_read_embeddings_returns_only_the_current_version(refreshed_output):
    out, expected = refreshed_output
    assert len(list((out / "shards").rglob("*.parquet"))) == 4  # a glob would see the superseded shard too
    table = e5ray.read_embeddings(str(out)).to_table()
    assert sorted(table["id"].to_pylist()) == sorted(expected)
    vectors = table["embedding"].combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
    got = dict(zip(table["id"].to_pylist(), vectors, strict=True))
    for key, vector in expected.items():
        np.testing.assert_array_equal(got[key], vector)


def test_the_shards_directory_holds_only_data_files(refreshed_output):
    out, _ = refreshed_output
    assert {p.suffix for p in (out / "shards").iterdir()} == {".parquet"}
    pq.read_table(out / "shards")  # a plain directory read works (it includes superseded shards)


def test_every_shard_carries_the_embedding_space_in_its_metadata(refreshed_output):
    import json

    out, _ = refreshed_output
    manifest = json.loads((out / "manifest.json").read_text())
    for path in (out / "shards").glob("*.parquet"):
        metadata = pq.read_schema(path).metadata
        space = json.loads(metadata[b"e5ray.space"])
        assert space["dim"] == manifest["space"]["dim"] and space["pooling"] == "mean"
        assert space["fingerprint"] == manifest["space"]["fingerprint"]


@pytest.mark.parametrize("reader", list(RECIPE_LIBRARIES))
def test_readme_recipe_runs(reader, refreshed_output, tmp_path, monkeypatch):
    out, expected = refreshed_output
    code = recipes().get(reader)
    assert code is not None, f"docs/output.md has no {reader} recipe under 'Reading the output'"
    library = RECIPE_LIBRARIES[reader]
    if importlib.util.find_spec(library) is None:
        pytest.skip(f"{library} is not installed (pip install -e '.[test]' installs it)")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sample").symlink_to(out)
    namespace: dict = {}
    exec(compile(code, f"docs/output.md ({reader} recipe)", "exec"), namespace)
    # Every recipe ends with `ids` and `vectors` of the current version, or search `hits`.
    if "ids" in namespace:
        assert sorted(namespace["ids"]) == sorted(expected)
        assert np.asarray(namespace["vectors"]).shape == (len(expected), len(next(iter(expected.values()))))
    assert namespace.get("hits"), f"the {reader} recipe found nothing"
