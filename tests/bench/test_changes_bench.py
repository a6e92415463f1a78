"""`python -m e5ray.bench changes` on a small corpus: the change file lists exactly day 2's edits, the
incremental LanceDB export applies them, and the report prints every figure BENCHMARKS.md quotes."""

from __future__ import annotations

import importlib.util

import pytest

from e5ray.bench.changes import ChangesBenchConfig, format_changes_report, run_changes_benchmark


@pytest.mark.skipif(importlib.util.find_spec("lancedb") is None, reason="lancedb not installed")
def test_the_changes_benchmark_measures_the_change_file_and_the_lance_sync(tmp_path):
    result = run_changes_benchmark(ChangesBenchConfig(docs=300, shards=3, workdir=str(tmp_path)))
    assert result["day2"]["row_changes"] == {"inserted": 6, "updated": 15, "deleted": 3, "unchanged": 282}
    lance = result["lance"]
    assert lance["incremental"]["mode"] == "incremental" and lance["full"]["mode"] == "full"
    assert (lance["incremental"]["upserts"], lance["incremental"]["deletes"]) == (21, 3)
    assert lance["incremental"]["rows"] == lance["full"]["rows"] == 303
    assert result["changes_stream"]["peak_rss_mib"] > 0 and "21 upserts, 3 deletes" in result["changes_stream"]["said"]
    report = format_changes_report(result)
    assert "per million rows" in report and "incremental / full" in report


@pytest.mark.skipif(importlib.util.find_spec("lancedb") is None, reason="lancedb not installed")
def test_short_texts_give_the_same_row_changes_in_a_fraction_of_the_time(tmp_path):
    cfg = ChangesBenchConfig(docs=300, shards=3, workdir=str(tmp_path), words=4, repeats=1)
    result = run_changes_benchmark(cfg)
    assert result["day2"]["row_changes"] == {"inserted": 6, "updated": 15, "deleted": 3, "unchanged": 282}
    assert result["lance"]["incremental"]["rows"] == result["lance"]["full"]["rows"] == 303
    assert result["config"]["words"] == 4
