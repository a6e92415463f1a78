"""The change feed: every version records its row changes, and `changes --since N` takes a
reader from version N to the current one, on local disk and on S3 (SeaweedFS).

The corpus goes through three refreshes (tests/change_utils.py): edits, inserts, deletes, a
rewritten and reshuffled export, a row moved between files, an id deleted and re-added, a text
edited and edited back, and a file carried unchanged throughout. In process, tiny test model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from change_utils import apply_feed, versions
from corpus_utils import embed_job, read_output
from job_utils import assert_same_vectors, config

from e5ray.cli.app import main as cli_main
from e5ray.errors import ChangesUnavailableError, ManifestInvalidError, UsageError
from e5ray.output.change_feed import open_changes
from e5ray.output.gc import collect_garbage
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory, bert_model_dir) -> tuple[Path, list[dict[Any, np.ndarray]], list[dict[str, Any]]]:
    """An output at version 4, with each version's rows and manifest as it was committed."""
    root = tmp_path_factory.mktemp("changes")
    inp, out = root / "in", root / "out"
    inp.mkdir()
    rows, manifests = [], []

    def run() -> None:
        manifests.append(embed_job(config(inp, out, bert_model_dir)))
        rows.append(read_output(str(out)))

    for _ in versions(str(inp), run):
        pass
    return out, rows, manifests


def test_each_version_records_what_changed_row_by_row(refreshed):
    out, rows, manifests = refreshed
    v1, v2, v3, v4 = manifests
    assert v1["row_changes"] == {"mode": "replaced", "reason": "the first version: every row is new"}
    assert v2["row_changes"]["counts"] == {"inserted": 2, "updated": 2, "deleted": 2, "unchanged": 76}
    # 100 deleted, 3 re-added, 6 edited; 10 moved to another file is unchanged
    assert v3["row_changes"]["counts"] == {"inserted": 1, "updated": 1, "deleted": 1, "unchanged": 78}
    assert v4["row_changes"]["counts"] == {"inserted": 1, "updated": 2, "deleted": 1, "unchanged": 77}
    for manifest in (v2, v3, v4):
        ref = manifest["row_changes"]
        assert ref["exact"] and manifest["totals"]["change_bytes"] == ref["bytes"] == (out / ref["path"]).stat().st_size
        assert manifest["totals"]["rows_updated"] == ref["counts"]["updated"]
    table = pq.read_table(out / v3["row_changes"]["path"])
    assert table.to_pylist() == [
        {"id": 3, "change": "inserted"},
        {"id": 6, "change": "updated"},
        {"id": 100, "change": "deleted"},
    ]
    assert len(rows[-1]) == 80 and verify_output(OutputDir(str(out))) == []


@pytest.mark.parametrize("since", [1, 2, 3, 4])
def test_changes_since_a_version_take_its_rows_to_the_current_ones(refreshed, since):
    out, rows, _ = refreshed
    feed = open_changes(str(out), since)
    assert_same_vectors(apply_feed(rows[since - 1], feed), rows[-1])


def test_changes_since_1_are_collapsed_across_versions(refreshed):
    out, rows, _ = refreshed
    feed = open_changes(str(out), 1)
    upserts = sorted(i for b in feed.upserts() for i in b.column("id").to_pylist())
    deletes = sorted(i for b in feed.deletes() for i in b.column("id").to_pylist())
    # 1 updated twice: one upsert; 2 edited back: its vector is v1's, read again; 100 inserted then deleted: nothing;
    # 3 deleted then re-added: an upsert
    assert upserts == [1, 2, 3, 6, 101, 102] and deletes == [4, 7]
    np.testing.assert_allclose(rows[-1][2], rows[0][2], atol=1e-6)
    assert "content_hash" not in feed.upserts().schema.names


@pytest.mark.parametrize("since", [2, 3])
def test_the_feed_decodes_the_vectors_of_upserted_rows_only(refreshed, since, monkeypatch):
    # A refresh writes the rows it embedded and those it carried in row groups of their own
    # (e5ray.worker.row_kinds), so the feed's id-first read skips the carried rows' vectors.
    out, _, _ = refreshed
    decoded: list[int] = []
    read_row_group = pq.ParquetFile.read_row_group

    def counting(self, i, columns=None, **kw):
        table = read_row_group(self, i, columns=columns, **kw)
        if columns != ["id"]:
            decoded.append(table.num_rows)
        return table

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    feed = open_changes(str(out), since)
    assert sum(b.num_rows for b in feed.upserts()) == feed.upserted > 0
    assert sum(decoded) == feed.upserted  # no carried row's vector was decoded


def test_the_cli_writes_the_feed_as_parquet_and_jsonl(refreshed, tmp_path, capsys):
    out, rows, _ = refreshed
    assert cli_main(["changes", str(out), "--since", "1", "--out", str(tmp_path / "c.parquet")]) == 0
    table = pq.read_table(tmp_path / "c.parquet")
    assert sorted(zip(table["op"].to_pylist(), table["id"].to_pylist(), strict=True)) == sorted(
        [("delete", 4), ("delete", 7)] + [("upsert", i) for i in (1, 2, 3, 6, 101, 102)]
    )
    assert "6 upserts, 2 deletes" in capsys.readouterr().out
    assert cli_main(["changes", str(out), "--since", "2", "--out", str(tmp_path / "c.jsonl"), "--format", "jsonl"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    got = {line["id"]: line for line in lines}
    assert got[7] == {"op": "delete", "id": 7, "embedding": None}
    np.testing.assert_allclose(got[102]["embedding"], rows[-1][102], atol=1e-6)


def test_changes_refuse_in_one_line_and_name_the_oldest_version_they_can_serve(refreshed, tmp_path, capsys):
    out, _, _ = refreshed
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    collect_garbage(OutputDir(str(copy)), keep=2, min_age_s=0)  # versions 3 and 4 stay
    with pytest.raises(ChangesUnavailableError, match=r"gc removed version 1 .*oldest version it can serve is 3"):
        open_changes(str(copy), 1)
    assert cli_main(["changes", str(copy), "--since", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("e5ray: error: ChangesUnavailableError:") and "\n" not in err
    assert "gc removed version 2" in err and "the oldest version it can serve is 3" in err
    with pytest.raises(UsageError, match=r"--since 9: .* has versions 1..4"):
        open_changes(str(copy), 9)


def test_a_full_refresh_replaces_everything_and_the_feed_refuses_to_cross_it(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    list(versions(str(inp), lambda: None))  # writes layouts only; the last one stays
    embed_job(config(inp, out, bert_model_dir))
    v2 = embed_job(config(inp, out, bert_model_dir, full=True))
    assert v2["row_changes"] == {"mode": "replaced", "reason": "built with --full"}
    embed_job(config(inp, out, bert_model_dir))
    with pytest.raises(
        ChangesUnavailableError, match=r"version 2 replaced everything \(built with --full\).* serve is 2"
    ):
        open_changes(str(out), 1)
    assert list(open_changes(str(out), 2).upserts()) == []


def test_verify_flags_an_altered_change_file(refreshed, tmp_path):
    out, _, manifests = refreshed
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    path = copy / manifests[2]["row_changes"]["path"]
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    problems = verify_output(OutputDir(str(copy)), manifest_path="manifests/v000003.json")
    assert len(problems) == 1 and problems[0].startswith(f"{manifests[2]['row_changes']['path']}: sha256 ")
    with pytest.raises(ManifestInvalidError, match="sha256"):
        open_changes(str(copy), 2)


def test_change_feed_on_s3(s3_server, s3_bucket, s3_env, bert_model_dir):
    fs, bucket = s3_server.filesystem(), s3_bucket
    uri = f"s3://{bucket}/emb"
    cfg = config(f"s3://{bucket}/corpus", uri, bert_model_dir)
    rows = []

    def run() -> None:
        embed_job(cfg)
        rows.append(read_output(uri, fs))

    list(versions(f"{bucket}/corpus", run, fs))
    assert_same_vectors(apply_feed(rows[0], open_changes(uri, 1)), rows[-1])
    assert verify_output(OutputDir(uri)) == []
