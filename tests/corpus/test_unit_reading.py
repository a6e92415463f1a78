"""Readers on work units: every row of a file is read by exactly one of its units."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from e5ray.corpus.sources import discover, parquet_row_groups, read_chunks
from e5ray.corpus.units import UnitRange, UnitTarget, split_bytes, split_row_groups
from e5ray.errors import CorpusError


def rows_of(shard, unit):
    out = []
    for chunk in read_chunks(shard, chunk_rows=4, unit=unit):
        for pos, (i, t) in enumerate(zip(chunk.ids, chunk.texts, strict=True)):
            out.append((i, t, chunk.locate(pos)))
    return out


@pytest.fixture
def jsonl_file(tmp_path):
    lines = []
    for i in range(60):
        text = "ünïcödé " * (i % 7) + f"row {i}"  # multi-byte characters, lines of varying length
        lines.append(json.dumps({"id": i, "text": text}, ensure_ascii=False))
        if i % 13 == 0:
            lines.append("")  # a blank line is not a row
    lines.insert(20, "{not json")
    path = tmp_path / "c.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode())
    return path


def test_jsonl_byte_ranges_cut_anywhere_read_each_line_once(jsonl_file):
    (shard,) = discover(str(jsonl_file))
    whole = [(i, t) for i, t, _ in rows_of(shard, None)]
    size = jsonl_file.stat().st_size
    for cuts in ([size // 2], [1, 2, 3], list(range(7, size, 97)), list(range(50, size, 300))):
        bounds = [0, *cuts, size]
        units = [UnitRange("bytes", a, b) for a, b in zip(bounds, bounds[1:], strict=False) if a < b]
        got = [(i, t) for u in units for i, t, _ in rows_of(shard, u)]
        assert got == whole, f"cuts {cuts}"


def test_a_cut_exactly_at_a_line_start_gives_that_line_to_the_later_unit(jsonl_file):
    (shard,) = discover(str(jsonl_file))
    data = jsonl_file.read_bytes()
    second = data.index(b"\n") + 1
    first = rows_of(shard, UnitRange("bytes", 0, second))
    rest = rows_of(shard, UnitRange("bytes", second, len(data)))
    assert [r[0] for r in first] == [0] and rest[0][0] == 1


def test_rows_in_a_byte_range_are_located_by_their_byte_offset(jsonl_file):
    (shard,) = discover(str(jsonl_file))
    data = jsonl_file.read_bytes()
    for unit in split_bytes(len(data), UnitTarget(tokens=100)):
        for i, _, where in rows_of(shard, unit):
            line = data[where["offset"] :].split(b"\n", 1)[0]
            assert line.startswith(b"{not json") if i is None else json.loads(line)["id"] == i


def test_parquet_row_group_ranges_read_their_groups_and_number_rows_as_in_the_file(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"id": list(range(100)), "text": [f"t{i}" for i in range(100)]}), path, row_group_size=10)
    (shard,) = discover(str(path))
    stats = parquet_row_groups(shard, "text")
    assert [g.rows for g in stats] == [10] * 10 and all(g.text_bytes > 0 for g in stats)
    units = split_row_groups(stats, UnitTarget(rows=30))
    got = [(i, where) for u in units for i, _, where in rows_of(shard, u)]
    assert got == [(i, {"row": i}) for i in range(100)]


def test_row_slices_of_big_groups_read_each_row_once_in_file_order_with_its_file_row_number(tmp_path):
    path = tmp_path / "p.parquet"
    table = pa.table({"id": list(range(250)), "text": [f"t{i}" for i in range(250)]})
    pq.write_table(table, path, row_group_size=100)  # groups of 100, 100 and 50 rows
    (shard,) = discover(str(path))
    units = split_row_groups(parquet_row_groups(shard, "text"), UnitTarget(rows=20))
    assert {u.kind for u in units} == {"slice"} and len(units) == 5 + 5 + 3
    got = [(i, t, where) for u in units for i, t, where in rows_of(shard, u)]  # chunks of 4 rows cut by slices
    assert got == [(i, f"t{i}", {"row": i}) for i in range(250)]


def test_a_slice_that_crosses_a_row_group_boundary_is_refused_naming_it(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"id": list(range(20)), "text": ["x"] * 20}), path, row_group_size=10)
    (shard,) = discover(str(path))
    with pytest.raises(CorpusError, match="r5-15"):
        rows_of(shard, UnitRange("slice", 5, 15))


def test_a_row_slice_stops_reading_soon_after_its_last_row(tmp_path):
    from e5ray.corpus.parquet_reader import SLICE_BUFFER, parquet_chunks

    path = tmp_path / "p.parquet"
    rng = np.random.default_rng(0)
    texts = [rng.bytes(150).hex() for _ in range(40_000)]  # ~12 MB of text that barely compresses
    pq.write_table(pa.table({"id": list(range(40_000)), "text": texts}), path)
    read = []

    class Counting:
        def open(self, p, mode="rb"):
            fh = open(p, mode)
            original = fh.read
            fh.read = lambda n=-1: read.append(len(data := original(n))) or data
            return fh

    first = UnitRange("slice", 0, 4000)  # a tenth of the group
    assert sum(len(c.ids) for c in parquet_chunks(Counting(), str(path), str(path), "id", "text", 512, first)) == 4000
    assert 0 < sum(read) < path.stat().st_size / 10 + 3 * SLICE_BUFFER
