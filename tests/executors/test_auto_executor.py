"""`--executor auto`: small work takes the short path (in this process, no Ray), the rest runs on
Ray, and the summary and the manifest say which executor ran and why."""

from __future__ import annotations

import json

from corpus_utils import write_corpus
from job_utils import config

from e5ray.cli.app import main as cli_main
from e5ray.config import DEFAULT_SMALL_RUN_TOKENS, ComputeConfig
from e5ray.executors.base import EXECUTORS, ExecutorChoice, choose_executor
from e5ray.job.run import run_job


def test_auto_picks_the_in_process_executor_under_the_threshold_and_ray_at_or_above_it():
    auto = ComputeConfig(executor="auto", small_run_tokens=200_000)
    assert choose_executor(auto, 42_000) == ExecutorChoice("local", "auto: 42,000 tokens < 200,000")
    assert choose_executor(auto, 200_000) == ExecutorChoice("ray", "auto: 200,000 tokens >= 200,000")
    assert choose_executor(auto, 0).name == "local"  # nothing to embed: nothing to start


def test_a_named_executor_is_kept_whatever_the_plan_size_and_a_gpu_run_goes_to_ray():
    assert choose_executor(ComputeConfig(executor="ray"), 1) == ExecutorChoice("ray")
    assert choose_executor(ComputeConfig(executor="local"), 10**9) == ExecutorChoice("local")
    assert choose_executor(ComputeConfig(executor="auto", device="gpu"), 1) == ExecutorChoice("ray", "auto: a gpu run")
    assert choose_executor(ComputeConfig(executor="auto", small_run_tokens=0), 0).name == "ray"


def test_every_choice_is_a_registered_executor_and_the_default_threshold_is_stated():
    auto = ComputeConfig(executor="auto")
    assert auto.small_run_tokens == DEFAULT_SMALL_RUN_TOKENS
    for tokens in (0, DEFAULT_SMALL_RUN_TOKENS - 1, DEFAULT_SMALL_RUN_TOKENS, 10**9):
        assert choose_executor(auto, tokens).name in EXECUTORS


def test_a_small_auto_run_embeds_in_process_and_the_manifest_records_local_with_the_reason(tmp_path, bert_model_dir):
    write_corpus(tmp_path / "in", shards=2, rows=10)
    manifest = run_job(config(tmp_path / "in", tmp_path / "out", bert_model_dir, executor="auto")).to_dict()
    assert manifest["run"]["executor"] == "local"
    assert manifest["run"]["executor_reason"].startswith("auto: ") and "< 50,000" in manifest["run"]["executor_reason"]
    assert manifest["totals"]["embedded"] == 20


def test_a_named_executor_leaves_no_reason_in_the_manifest(tmp_path, bert_model_dir):
    write_corpus(tmp_path / "in", shards=1, rows=5)
    manifest = run_job(config(tmp_path / "in", tmp_path / "out", bert_model_dir)).to_dict()
    assert (manifest["run"]["executor"], manifest["run"]["executor_reason"]) == ("local", None)


def test_the_summaries_say_which_executor_ran_and_why(tmp_path, bert_model_dir, capsys):
    write_corpus(tmp_path / "in", shards=1, rows=5)
    argv = ["embed", f"--input={tmp_path / 'in'}", "--model=tiny", f"--model-path={bert_model_dir}"]
    argv += ["--executor=auto", "--small-run-tokens=1000000"]
    assert cli_main([*argv, f"--output={tmp_path / 'a'}", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["executor"] == "local" and summary["executor_reason"].endswith("tokens < 1,000,000")
    assert cli_main([*argv, f"--output={tmp_path / 'b'}"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("executor"))
    assert line.split()[1:3] == ["local", "(auto:"] and line.endswith("tokens < 1,000,000)")
