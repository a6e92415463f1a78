"""The start-up timeline: each step marked once, in the order it happened, in the `--json`
summary and in the log at `--log-level info` (in process and on a real local Ray)."""

from __future__ import annotations

import json
import logging

import pytest
from corpus_utils import write_corpus

from e5ray import timeline
from e5ray.cli.app import main as cli_main

IN_PROCESS = ["imports", "planned", "first_actor_ready", "first_vector", "last_unit", "committed", "exit"]


def test_a_step_is_marked_once_at_its_first_time_and_marks_come_in_the_order_they_happened():
    timeline.reset()
    timeline.mark("planned", at=timeline._START + 2.0)
    timeline.mark("imports", at=timeline._START + 1.0)
    timeline.mark("planned", at=timeline._START + 9.0)  # kept at its first time
    assert timeline.marks() == {"imports": 1.0, "planned": 2.0}
    timeline.start_run()
    assert timeline.marks() == {"imports": 1.0}
    with pytest.raises(ValueError, match="'warmup' is not known; known: imports, planned"):
        timeline.mark("warmup")


def test_the_process_start_is_before_this_test_and_not_in_the_future():
    import time

    assert time.time() - 3600 * 24 < timeline.process_start() <= time.time()


def embed_json(tmp_path, model_dir, executor, capsys, caplog):
    write_corpus(tmp_path / "in", shards=2, rows=10)
    argv = ["embed", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    argv += ["--model-path", str(model_dir), "--executor", executor, "--json", "--log-level", "info"]
    with caplog.at_level(logging.INFO, logger="e5ray"):
        assert cli_main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("start-up: ")]
    return summary["startup"], logged


def test_a_local_run_reports_its_start_up_steps_in_order_in_the_json_summary_and_the_log(
    tmp_path, bert_model_dir, capsys, caplog
):
    startup, logged = embed_json(tmp_path, bert_model_dir, "local", capsys, caplog)
    assert list(startup) == IN_PROCESS
    assert list(startup.values()) == sorted(startup.values())
    assert [line.split()[1] for line in logged] == IN_PROCESS


@pytest.mark.slow
def test_a_ray_run_also_reports_ray_and_its_pool_before_the_first_vector(
    local_ray, tmp_path, bert_model_dir, capsys, caplog
):
    startup, _ = embed_json(tmp_path, bert_model_dir, "ray", capsys, caplog)
    assert set(startup) == {*IN_PROCESS, "ray_ready", "pool_requested"}
    assert list(startup.values()) == sorted(startup.values())
    order = list(startup)
    assert order.index("planned") < order.index("pool_requested") < order.index("first_vector")
    assert order.index("ray_ready") < order.index("pool_requested") and order[-1] == "exit"
