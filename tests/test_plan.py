"""Refresh planning on plain records: what is embedded, carried, added, changed, removed."""

from __future__ import annotations

from records import entry, manifest, source

from e5ray.plan import plan_refresh
from e5ray.shards import ShardTask


def make_task(src):
    return ShardTask(src, "space")


def test_a_first_run_embeds_every_source():
    plan = plan_refresh([source("a"), source("b")], None, make_task)
    assert [t.source.relpath for t in plan.tasks] == ["a", "b"] and plan.carried == []
    assert plan.changes()["counts"] == {"added": 2, "changed": 0, "removed": 0, "unchanged": 0}


def test_unchanged_sources_are_carried_changed_ones_embedded_and_gone_ones_removed():
    kept, changed = source("kept"), source("changed", stamp="mtime:2")
    previous = manifest(
        entry("kept", key=make_task(kept).key),
        entry("changed", key=make_task(source("changed")).key),  # made from the old stamp
        entry("gone"),
    )
    plan = plan_refresh([kept, changed, source("new")], previous, make_task)
    assert [e.source.relpath for e in plan.carried] == ["kept"]
    assert sorted(t.source.relpath for t in plan.tasks) == ["changed", "new"]
    assert plan.changes()["counts"] == {"added": 1, "changed": 1, "removed": 1, "unchanged": 1}
    assert plan.removed == ["/corpus/gone"]


def test_full_embeds_unchanged_sources_again():
    kept = source("kept")
    plan = plan_refresh([kept], manifest(entry("kept", key=make_task(kept).key)), make_task, full=True)
    assert plan.carried == [] and [t.source.relpath for t in plan.tasks] == ["kept"]
    assert plan.unchanged == ["/corpus/kept"]


def test_the_task_key_covers_the_output_format_except_parquets_historic_key():
    src = source("a")
    parquet = ShardTask(src, "space")
    assert ShardTask(src, "space", output_format="parquet").key == parquet.key
    assert ShardTask(src, "space", output_format="jsonl").key != parquet.key
    assert ShardTask(src, "space", prefix="query").key != parquet.key
