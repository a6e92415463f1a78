"""`python -m e5ray.bench scale` at a tiny size, so the scale-out benchmark cannot rot."""

from __future__ import annotations

import json

from bench_utils import REPO, run_bench


def test_the_small_files_benchmark_embeds_every_row_and_reports_its_speed(tmp_path, bert_model_dir):
    args = ["small-files", "--model-path", str(bert_model_dir), "--files", "6", "--rows", "2"]
    done = run_bench("scale", args, cwd=tmp_path)  # its own local Ray, never another cluster
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["files"], result["rows"]) == (6, 12)
    assert result["tokens"] > 12 and result["tokens_per_s"] > 0


def test_the_small_files_benchmark_compares_trees_and_executors_side_by_side_without_ray(tmp_path, bert_model_dir):
    args = ["small-files", "--model-path", str(bert_model_dir), "--files", "4", "--rows", "2"]
    args += ["--before", str(REPO), "--before-executor", "local", "--executor", "local"]
    done = run_bench("scale", args, cwd=tmp_path)
    lines = [json.loads(x) for x in done.stdout.strip().splitlines()]
    runs, summary = lines[:-1], lines[-1]
    assert [(r["tree"], r["executor"], r["rows"]) for r in runs] == [
        ("before", "local", 8),
        ("after-local", "local", 8),
    ]
    assert all(r["load_at_start"] >= 0 and r["tokens_per_s"] > 0 for r in runs)
    assert summary["speedup"]["after-local"]["over_sums"] > 0


def test_the_big_file_timeline_splits_each_actors_time_into_start_tasks_gaps_and_tail(tmp_path):
    from e5ray.bench.cluster import timeline  # imports Ray

    events = [
        {"kind": "planned", "t": 100.5, "units": 3},
        {"kind": "ready", "pid": 1, "node": "n1", "process_start": 101.0, "init_start": 104.0, "ready": 105.0},
        {
            "kind": "task",
            "pid": 1,
            "node": "n1",
            "start": 105.0,
            "end": 110.0,
            "units": [0],
            "rows": 5,
            "unit_seconds": 4.5,
        },
        {
            "kind": "task",
            "pid": 1,
            "node": "n1",
            "start": 110.5,
            "end": 118.0,
            "units": [1],
            "rows": 5,
            "unit_seconds": 7,
        },
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    summary = timeline.summarise(str(path), job_start=100.0, job_end=120.0)
    (actor,) = summary["actors"]
    assert (summary["planned"], summary["last_unit_end"], summary["commit_end"]) == (0.5, 18.0, 20.0)
    assert (actor["process_start"], actor["ready"], actor["before_first_task_s"]) == (1.0, 5.0, 5.0)
    assert (actor["in_tasks_s"], actor["unit_seconds"], actor["gaps_between_tasks_s"]) == (12.5, 11.5, 0.5)
    assert actor["after_last_task_s"] == 2.0
