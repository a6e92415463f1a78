"""Work units on plain numbers: how sources are split, grouped and carried (no I/O)."""

from __future__ import annotations

import pytest
from records import entry, manifest, source

from e5ray.corpus.sources import SourceShard
from e5ray.corpus.units import (
    MAX_SLICES,
    MIN_UNIT_TOKENS,
    RowGroupStats,
    UnitRange,
    UnitTarget,
    balanced_target,
    balanced_tokens,
    group_small,
    needs_footer,
    source_units,
    split_bytes,
    split_row_groups,
)
from e5ray.job.refresh_plan import plan_refresh, split_tasks
from e5ray.output.manifest import ShardEntry
from e5ray.worker.task import ShardTask


def groups(n: int, rows: int = 1000, text_bytes: int = 40_000) -> list[RowGroupStats]:
    return [RowGroupStats(rows, text_bytes) for _ in range(n)]


def test_row_groups_are_cut_into_contiguous_ranges_that_cover_the_file_once():
    units = split_row_groups(groups(10), UnitTarget(rows=3000, tokens=10**9))
    assert [(u.start, u.stop) for u in units] == [(0, 3), (3, 6), (6, 9), (9, 10)]


def test_a_unit_closes_at_the_token_target_before_the_row_target():
    # 40,000 text bytes per group = 10,000 tokens; a target of 25,000 tokens closes every 3 groups
    units = split_row_groups(groups(6), UnitTarget(rows=10**9, tokens=25_000))
    assert [(u.start, u.stop) for u in units] == [(0, 3), (3, 6)]


def test_a_file_that_fits_in_one_unit_stays_whole():
    assert split_row_groups(groups(3), UnitTarget(rows=10_000)) == []
    assert source_units("/c/a.parquet", 10, "parquet", UnitTarget(rows=10_000), groups(3))[0][0] is None


def test_a_row_group_bigger_than_the_target_is_cut_into_row_slices_numbered_in_the_file():
    units = split_row_groups(
        [RowGroupStats(10, 10), RowGroupStats(250, 10), RowGroupStats(10, 10)], UnitTarget(rows=100)
    )
    assert [(u.kind, u.start, u.stop) for u in units] == [
        ("rows", 0, 1),
        ("slice", 10, 94),
        ("slice", 94, 178),
        ("slice", 178, 260),
        ("rows", 2, 3),
    ]
    assert UnitRange("slice", 10, 94).label == "r10-94"
    assert split_row_groups([RowGroupStats(200, 10)], UnitTarget(rows=100)) == []  # up to 2x: whole, as before


@pytest.mark.parametrize("rows", [201, 1000, 1001, 12_345])
def test_a_one_group_file_of_n_rows_becomes_ceil_n_over_the_target_slices_covering_every_row_once(rows):
    units = split_row_groups([RowGroupStats(rows, 10)], UnitTarget(rows=100))
    assert len(units) == min(-(-rows // 100), MAX_SLICES)
    assert units[0].start == 0 and units[-1].stop == rows
    assert all(a.stop == b.start for a, b in zip(units, units[1:], strict=False))


def test_a_group_is_sliced_by_its_text_bytes_too_and_each_slice_weighs_its_share():
    # 4,000,000 text bytes = 1,000,000 tokens against a target of 300,000 tokens: 4 slices
    units = source_units("/c/a.parquet", 10**7, "parquet", UnitTarget(tokens=300_000), [RowGroupStats(1000, 4_000_000)])
    assert [(u.start, u.stop) for u, _ in units] == [(0, 250), (250, 500), (500, 750), (750, 1000)]
    assert [w for _, w in units] == [250_000] * 4


def test_byte_ranges_are_about_equal_and_cover_every_byte_once():
    units = split_bytes(10_001, UnitTarget(tokens=1000))  # 4,000 bytes per unit
    assert [(u.start, u.stop) for u in units] == [(0, 3334), (3334, 6668), (6668, 10_001)]
    assert split_bytes(4000, UnitTarget(tokens=1000)) == []


def test_gzip_stays_whole_and_warns_when_over_the_target(caplog):
    units = source_units("/c/big.jsonl.gz", 10_000, "jsonl", UnitTarget(tokens=1000))
    assert [u for u, _ in units] == [None]
    assert "cannot be split" in caplog.text
    assert len(source_units("/c/big.jsonl", 10_000, "jsonl", UnitTarget(tokens=1000))) == 3


def test_small_parquet_files_need_no_footer_read():
    target = UnitTarget(tokens=1_000_000)  # 4 MB of text
    assert not needs_footer(400_000, target) and needs_footer(600_000, target)


def test_small_units_are_packed_into_groups_up_to_the_target_and_big_ones_go_alone():
    weights = [50, 5, 5, 5, 5, 120, 5]
    packed = group_small(weights, target_tokens=12, max_group=3)
    assert packed[:2] == [[5], [0]]  # the two at or over the target, largest first
    assert sorted(i for g in packed for i in g) == list(range(len(weights)))
    assert all(len(g) <= 3 and sum(weights[i] for i in g) <= 12 for g in packed[2:])


def test_a_unit_range_names_its_kind_and_refuses_empty_ranges():
    assert UnitRange("rows", 2, 5).label == "rg2-5" and UnitRange("bytes", 0, 9).label == "b0-9"
    assert UnitRange.from_dict(UnitRange("bytes", 3, 9).to_dict()) == UnitRange("bytes", 3, 9)
    with pytest.raises(ValueError, match="valid: rows, bytes"):
        UnitRange("lines", 0, 1)
    with pytest.raises(ValueError, match="empty"):
        UnitRange("rows", 4, 4)


def test_units_of_one_source_share_its_key_but_not_their_names_or_markers():
    src = source("big.jsonl", size=10_000)
    task = ShardTask(SourceShard(src.uri, src.relpath, src.size, src.stamp, "jsonl"), "space")
    units = split_tasks([task], UnitTarget(tokens=1000))
    assert len(units) == 3 and {u.key for u in units} == {task.key}
    assert len({u.marker_path for u in units}) == 3 and all("-b" in u.stem for u in units)
    assert ShardTask.from_dict(units[1].to_dict()) == units[1]


def _unit_entry(name: str, key: str, unit: UnitRange) -> ShardEntry:
    base = entry(name, key=key)
    return ShardEntry.from_dict({**base.to_dict(), "unit": unit.to_dict()})


def test_an_unchanged_source_carries_all_its_units_and_a_changed_one_is_split_again():
    kept, changed = source("kept"), source("changed", stamp="mtime:2")
    kept_key, old_changed_key = ShardTask(kept, "s").key, ShardTask(source("changed"), "s").key
    previous = manifest(
        _unit_entry("kept", kept_key, UnitRange("bytes", 0, 50)),
        _unit_entry("kept", kept_key, UnitRange("bytes", 50, 100)),
        _unit_entry("changed", old_changed_key, UnitRange("bytes", 0, 100)),
    )
    plan = plan_refresh([kept, changed], previous, lambda s: ShardTask(s, "s"))
    assert [e.unit for e in plan.carried] == [UnitRange("bytes", 0, 50), UnitRange("bytes", 50, 100)]
    assert [t.source.relpath for t in plan.tasks] == ["changed"]
    assert plan.changes()["counts"] == {"added": 0, "changed": 1, "removed": 0, "unchanged": 1}


def test_a_big_file_on_three_actors_is_cut_into_units_of_one_row_group_not_seven_of_three():
    # The benchmark's file: 20 row groups of ~1.97 MB of text (~492k tokens each).
    big = [RowGroupStats(10_000, 1_969_733)] * 20
    total = sum(g.text_bytes for g in big) // 4
    alone = source_units("big.parquet", 18_000_000, "parquet", balanced_target(UnitTarget(), total, 1), big)
    pooled = source_units("big.parquet", 18_000_000, "parquet", balanced_target(UnitTarget(), total, 3), big)
    assert len(alone) == 7  # 6 units of 3 groups + 1 of 2: three actors would end on one of them
    assert len(pooled) == 20 and all(u.stop - u.start == 1 for u, _ in pooled)


def test_the_balanced_target_is_a_power_of_two_that_a_slightly_different_pool_keeps():
    total = 10_000_000
    assert balanced_tokens(1_000_000, total, 3) == 262_144  # 10M / 24 = 416k, rounded down
    assert balanced_tokens(1_000_000, total, 4) == 262_144  # a node fewer or more: the same units
    assert balanced_tokens(1_000_000, total, 64) == MIN_UNIT_TOKENS  # never split finer than the floor


def test_one_actor_or_a_smaller_given_target_leaves_the_target_as_it_is():
    assert balanced_tokens(1_000_000, 10**9, 1) == 1_000_000
    assert balanced_tokens(100_000, 10_000_000, 3) == 100_000
    assert balanced_target(UnitTarget(rows=500, tokens=100_000), 10_000_000, 3) == UnitTarget(500, 100_000)
