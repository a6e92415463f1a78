"""Refresh planning on plain records: what is embedded, carried, added, changed, removed."""

from __future__ import annotations

import pytest
from records import entry, manifest, source

from e5ray.config import ComputeConfig
from e5ray.corpus.units import RowGroupStats
from e5ray.executors.base import planned_pool_size
from e5ray.job.refresh_plan import plan_refresh, planned_tokens
from e5ray.worker.task import ShardTask


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


def test_planned_tokens_count_a_read_footers_text_and_otherwise_the_files_size():
    big, small = make_task(source("big.parquet", size=1_000)), make_task(source("small.jsonl.gz", size=400))
    footers = {big.source.uri: [RowGroupStats(10, 8_000), RowGroupStats(10, 4_000)]}
    assert planned_tokens([big, small]) == 1_000 // 4 + 3 * 400 // 4  # compressed text counts 3x
    assert planned_tokens([big, small], footers) == 12_000 // 4 + 3 * 400 // 4


def test_the_in_process_executor_plans_for_one_worker_and_max_actors_wins_for_ray():
    assert planned_pool_size(ComputeConfig(executor="local", max_actors=7)) == 1
    assert planned_pool_size(ComputeConfig(executor="ray", max_actors=7)) == 7


def test_without_a_cluster_the_ray_pool_is_planned_for_what_a_local_ray_on_this_machine_fits(monkeypatch):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray is already connected in this process")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert planned_pool_size(ComputeConfig(executor="ray")) == 2  # two actors of 8 threads
    assert not ray.is_initialized()  # planning started no Ray to find that out
