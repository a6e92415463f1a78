"""Ids of every type a reader can meet, and corpora that mix id types.

Every id is converted by the stated rule (`e5ray.corpus.rows.normalise_id`) or its row is
rejected with the reason; no Arrow error fails a run. A corpus whose shards would hold ids
of different types is refused while planning, before one unit is embedded.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_utils import embed_job, write_shard

from e5ray.config import JobConfig
from e5ray.corpus.rows import normalise_id
from e5ray.errors import MixedIdTypesError
from e5ray.executors.local import run_local
from e5ray.job.run import run_job
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir


def config(inp: Any, out: Any, model_dir: Any, **kw: Any) -> JobConfig:
    return JobConfig.from_options(
        input=str(inp), output=str(out), model="tiny", model_path=str(model_dir), executor="local", **kw
    )


class CountingExecutor:
    """The local executor, counting the units it is asked to embed."""

    def __init__(self) -> None:
        self.units = 0

    def __call__(self, tasks: Any, spec: Any, compute: Any) -> Any:
        self.units += len(tasks)
        return run_local(tasks, spec, compute)


def write_ids(path: Any, ids: pa.Array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "text": [f"text {i}" for i in range(len(ids))]}), str(path))


def outcome(out: Any, manifest: dict[str, Any]) -> tuple[list[Any], dict[str, str], pa.DataType]:
    """(the ids written, the rejected rows' reasons by their raw id, the id column's type)."""
    (entry,) = manifest["shards"]
    table = pq.read_table(str(out / entry["files"][0]["path"]))
    rejects = entry["rejects"]
    lines = (out / rejects["path"]).read_text().splitlines() if rejects else []
    reasons = {str(r["id"]): r["reason"] for r in map(json.loads, lines)}
    return table["id"].to_pylist(), reasons, table.schema.field("id").type


def test_the_id_rule_converts_or_rejects_every_type_with_a_reason():
    assert normalise_id(7, "auto") == (7, None) and normalise_id(7, "string") == ("7", None)
    assert normalise_id(3400.0, "auto") == (3400, None) and normalise_id(3400.0, "string") == ("3400", None)
    assert normalise_id(3401.5, "string") == ("3401.5", None)
    assert "not a whole number (--id-type string keeps it as text)" in str(normalise_id(3401.5, "auto")[1])
    assert normalise_id(Decimal("12.00"), "auto") == (12, None)
    assert normalise_id(Decimal("12.50"), "string") == ("12.5", None)
    assert normalise_id(b"doc-1", "auto") == ("doc-1", None)
    assert "binary and not valid UTF-8" in str(normalise_id(b"\xff", "string")[1])
    assert normalise_id(None, "string") == (None, "null id")
    assert "not a finite number" in str(normalise_id(math.nan, "string")[1])
    assert "is a boolean" in str(normalise_id(True, "auto")[1])
    assert "is a list; ids must be integers, strings" in str(normalise_id([1], "string")[1])


def test_a_corpus_mixing_id_types_is_refused_before_anything_is_embedded(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_shard(inp / "a.jsonl", [1, 2], ["one", "two"])
    write_shard(inp / "b.parquet", ["x", "y"], ["ex", "why"])
    counting = CountingExecutor()
    with pytest.raises(MixedIdTypesError) as caught:
        run_job(config(inp, out, bert_model_dir), executor=counting)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and "nothing was embedded" in message
    assert "a.jsonl has int64 ids" in message and "b.parquet has string ids" in message
    assert "--id-type string" in message
    assert counting.units == 0 and not list(out.glob("markers/*")) and not (out / "manifest.json").exists()


def test_a_refresh_adding_a_shard_of_another_id_type_is_refused_before_embedding(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_shard(inp / "a.parquet", [1, 2], ["one", "two"])
    embed_job(config(inp, out, bert_model_dir))
    write_shard(inp / "b.jsonl", ["x"], ["ex"])
    counting = CountingExecutor()
    with pytest.raises(MixedIdTypesError, match=r"a\.parquet has int64 ids; .*b\.jsonl has string ids"):
        run_job(config(inp, out, bert_model_dir), executor=counting)
    assert counting.units == 0


def test_the_check_before_the_commit_still_refuses_what_a_peek_could_not_tell(tmp_path, bert_model_dir, monkeypatch):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_shard(inp / "a.parquet", [1, 2], ["one", "two"])
    write_shard(inp / "b.jsonl", ["x", "y"], ["ex", "why"])
    monkeypatch.setattr("e5ray.job.precommit.peek_id_type", lambda *a, **k: None)
    counting = CountingExecutor()
    with pytest.raises(MixedIdTypesError, match="nothing was committed"):
        run_job(config(inp, out, bert_model_dir), executor=counting)
    assert counting.units == 2 and not (out / "manifest.json").exists()


PARQUET_CASES = {
    "double": (pa.array([3400.0, 3401.5, math.nan, None]), [3400], ["3400", "3401.5"]),
    "decimal": (pa.array([Decimal("7.00"), Decimal("7.50"), None], pa.decimal128(6, 2)), [7], ["7", "7.5"]),
    "binary": (pa.array([b"doc-1", b"\xff\xfe", None], pa.binary()), ["doc-1"], ["doc-1"]),
    "null": (pa.nulls(2), [], []),
    "int with nulls": (pa.array([5, None, 6], pa.int32()), [5, 6], ["5", "6"]),
}


@pytest.mark.parametrize("case", sorted(PARQUET_CASES))
def test_every_parquet_id_type_is_converted_or_rejected_per_row(case, tmp_path, bert_model_dir):
    ids, as_auto, as_string = PARQUET_CASES[case]
    inp = tmp_path / "in"
    write_ids(inp / "c34.parquet", ids)
    for id_type, want in (("auto", as_auto), ("string", as_string)):
        out = tmp_path / f"out-{id_type}"
        manifest = embed_job(config(inp, out, bert_model_dir, id_type=id_type))
        got, reasons, arrow_type = outcome(out, manifest)
        assert sorted(got) == sorted(want), (id_type, got, reasons)
        assert all(reasons.values()) and manifest["totals"]["rejected"] == len(ids) - len(want), reasons
        if id_type == "string":
            assert arrow_type == pa.string()
        assert verify_output(OutputDir(str(out))) == []


def test_every_json_id_type_is_converted_or_rejected_per_row(tmp_path, bert_model_dir):
    inp = tmp_path / "in"
    inp.mkdir()
    rows = [3400.0, 3401.5, None, True, [1], {"a": 1}, 1e300, 12]
    (inp / "a.jsonl").write_text("".join(json.dumps({"id": i, "text": f"t{n}"}) + "\n" for n, i in enumerate(rows)))
    manifest = embed_job(config(inp, tmp_path / "auto", bert_model_dir))
    got, reasons, _ = outcome(tmp_path / "auto", manifest)
    assert sorted(got) == [12, 3400]
    assert reasons["3401.5"].startswith("id 3401.5 is not a whole number")
    assert reasons["None"] == "null id" and "is a boolean" in reasons["True"]
    assert "outside the int64 range" in reasons[str(int(1e300))]
    manifest = embed_job(config(inp, tmp_path / "string", bert_model_dir, id_type="string"))
    got, reasons, _ = outcome(tmp_path / "string", manifest)
    assert sorted(got) == sorted(["12", "3400", "3401.5", str(int(1e300))])
    assert set(reasons) == {"None", "True", "[1]", "{'a': 1}"}


def test_id_type_string_reads_a_corpus_of_int_string_and_double_ids_as_one_table(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_shard(inp / "a.jsonl", [1, 2], ["one", "two"])
    write_shard(inp / "b.parquet", ["x", "y"], ["ex", "why"])
    write_ids(inp / "c34.parquet", pa.array([3400.0, 3401.5]))
    counting = CountingExecutor()
    with pytest.raises(MixedIdTypesError):
        run_job(config(inp, out, bert_model_dir), executor=counting)
    assert counting.units == 0
    manifest = embed_job(config(inp, out, bert_model_dir, id_type="string"))
    table = pq.read_table([str(out / f["path"]) for s in manifest["shards"] for f in s["files"]])
    assert sorted(table["id"].to_pylist()) == ["1", "2", "3400", "3401.5", "x", "y"]
    assert manifest["totals"]["rejected"] == 0 and verify_output(OutputDir(str(out))) == []
