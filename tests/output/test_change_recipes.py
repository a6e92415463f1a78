"""The change-feed recipes of docs/changes.md run here as written: a dict and SQLite, brought from
version 1 to the current one by the feed, hold exactly the current version's rows and vectors.

Each ```python block of the page's "Recipes for other stores" section starts with a comment naming
its store; the block defines `apply_to_<store>(target, feed)`.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from change_utils import versions
from corpus_utils import embed_job, read_output
from job_utils import assert_same_vectors, config

from e5ray.output.change_feed import open_changes

PAGE = Path(__file__).resolve().parents[2] / "docs" / "changes.md"


def recipes() -> dict[str, dict]:
    """Store name -> the namespace its recipe defines."""
    section = PAGE.read_text().split("## Recipes for other stores", 1)[1]
    found = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        name = block.splitlines()[0].lstrip("# ").split(":")[0]
        namespace: dict = {}
        exec(compile(block, f"{PAGE}:{name}", "exec"), namespace)
        found[name] = namespace
    return found


@pytest.fixture(scope="module")
def output(tmp_path_factory, bert_model_dir):
    root = tmp_path_factory.mktemp("recipes")
    inp, out = root / "in", root / "out"
    inp.mkdir()
    rows = []

    def run() -> None:
        embed_job(config(inp, out, bert_model_dir))
        rows.append(read_output(str(out)))

    list(versions(str(inp), run))
    return out, rows


def test_the_docs_have_a_dict_and_a_sqlite_recipe():
    assert sorted(recipes()) == ["dict", "sqlite3"]


def test_the_dict_recipe_brings_a_store_to_the_current_version(output):
    out, rows = output
    store = dict(rows[0])
    recipes()["dict"]["apply_to_dict"](store, open_changes(str(out), 1))
    assert_same_vectors(store, rows[-1])


def test_the_sqlite_recipe_brings_a_table_to_the_current_version(output, tmp_path):
    out, rows = output
    con = sqlite3.connect(tmp_path / "vectors.db")
    con.execute("CREATE TABLE vectors (id PRIMARY KEY, embedding BLOB NOT NULL)")
    con.executemany("INSERT INTO vectors VALUES (?, ?)", [(i, v.astype("<f4").tobytes()) for i, v in rows[0].items()])
    con.commit()
    apply = recipes()["sqlite3"]["apply_to_sqlite"]
    apply(con, open_changes(str(out), 1))
    got = {i: np.frombuffer(blob, "<f4") for i, blob in con.execute("SELECT id, embedding FROM vectors")}
    assert_same_vectors(got, rows[-1])
    apply(con, open_changes(str(out), len(rows)))  # nothing since the current version: nothing changes
    assert con.execute("SELECT count(*) FROM vectors").fetchone()[0] == len(rows[-1])
