"""The config tree: defaults written once, every field validated where the tree is built."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from e5ray.cli.app import add_job_arguments, config_from_args
from e5ray.config import ComputeConfig, InputConfig, JobConfig, ModelConfig, OutputConfig
from e5ray.errors import ConfigError, UsageError


def parse(*argv: str) -> JobConfig:
    parser = argparse.ArgumentParser()
    add_job_arguments(parser)
    return config_from_args(parser.parse_args(["--input", "in", "--output", "out", *argv]))


def test_command_line_defaults_are_the_config_defaults():
    assert parse() == JobConfig(InputConfig("in"), OutputConfig("out"))
    config = parse()
    assert (config.model.max_length, config.model.int8_min_cosine, config.compute.rows_per_chunk) == (512, 0.99, 2048)
    assert (config.compute.executor, config.compute.device, config.output.format) == ("auto", "cpu", "parquet")


def test_a_gpu_run_reads_larger_chunks_and_shares_each_gpu_between_three_actors_unless_told():
    cpu, gpu = parse(), parse("--device", "gpu")
    assert (cpu.compute.rows_per_chunk, gpu.compute.rows_per_chunk, gpu.compute.actor_gpus) == (2048, 16384, 1 / 3)
    told = parse("--device", "gpu", "--chunk-rows", "4096", "--gpus-per-actor", "1")
    assert (told.compute.rows_per_chunk, told.compute.actor_gpus) == (4096, 1.0)


def test_flags_land_in_their_section():
    config = parse("--max-length", "64", "--device", "gpu", "--output-format", "jsonl", "--full", "--prefix", "query")
    assert config.model.max_length == 64 and config.model.prefix == "query"
    assert config.compute.device == "gpu" and config.output.format == "jsonl" and config.full
    assert config == JobConfig.from_options(
        input="in", output="out", max_length=64, device="gpu", output_format="jsonl", full=True, prefix="query"
    )


@pytest.mark.parametrize(
    "options, field, valid",
    [
        ({"device": "tpu"}, "compute.device (--device)", "cpu, gpu"),
        ({"executor": "dask"}, "compute.executor (--executor)", "auto, ray, local"),
        ({"output_format": "lance"}, "output.format (--output-format)", "parquet, jsonl"),
        ({"format": "csv"}, "input.format (--format)", "parquet, jsonl"),
        ({"prefix": "doc"}, "model.prefix (--prefix)", "passage, query, none"),
        ({"precision": "bf16"}, "model.precision (--precision)", "fp32, fp16, int8"),
    ],
)
def test_a_bad_choice_names_the_field_and_the_valid_values(options, field, valid):
    with pytest.raises(ConfigError) as err:
        JobConfig.from_options(input="in", output="out", **options)
    assert field in str(err.value) and valid in str(err.value)


@pytest.mark.parametrize(
    "options, field",
    [
        ({"max_length": 1}, "model.max_length"),
        ({"chunk_rows": 0}, "compute.chunk_rows"),
        ({"threads_per_actor": 0}, "compute.threads_per_actor"),
        ({"min_actors": 0}, "compute.min_actors"),
        ({"gpus_per_actor": 0.0}, "compute.gpus_per_actor"),
        ({"token_budget": 0}, "model.token_budget"),
        ({"int8_min_cosine": 1.5}, "model.int8_min_cosine"),
        ({"precision": "fp16"}, "model.precision"),  # fp16 needs --device gpu
        ({"input": ""}, "input.uri"),
    ],
)
def test_a_bad_number_or_combination_is_refused_before_any_work(options, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        JobConfig.from_options(**{"input": "in", "output": "out", **options})


def test_config_errors_are_usage_errors_with_exit_code_2():
    with pytest.raises(UsageError) as err:
        ComputeConfig(device="tpu")
    assert err.value.exit_code == 2


def test_an_unknown_option_is_an_error_listing_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['max_len'\].*max_length"):
        JobConfig.from_options(input="in", output="out", max_len=64)


def test_the_tree_is_frozen():
    config = JobConfig.from_options(input="in", output="out")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model.max_length = 64  # type: ignore[misc]


def test_precision_defaults_to_the_devices():
    assert JobConfig(InputConfig("in"), OutputConfig("out")).precision == "fp32"
    gpu = JobConfig(InputConfig("in"), OutputConfig("out"), compute=ComputeConfig(device="gpu"))
    assert gpu.precision == "fp16"
    int8 = JobConfig(InputConfig("in"), OutputConfig("out"), model=ModelConfig(precision="int8"))
    assert int8.precision == "int8"
