"""The flags of `e5ray embed|refresh` and of the job entrypoints in jobs/: one function per
flag group (input and output, model, compute, rows and ids, run limits, run), called in
the order `--help` shows the groups.

Defaults come from `e5ray.config` (each written once) and choices from the tables they
select from (executors, sinks, pooling modes, row policies), so a new entry in a table is
a new choice here without an edit. The flags other commands share (storage, log level)
are in `e5ray.cli.shared_flags`, the help text around them in `e5ray.cli.help_text`.
"""

from __future__ import annotations

import argparse

from e5ray.cli.shared_flags import add_log_level, add_storage_arguments
from e5ray.config import (
    DEFAULT_CHUNK_ROWS,
    DEFAULT_GPUS_PER_ACTOR,
    DEVICES,
    EXECUTOR_CHOICES,
    PRECISIONS,
    REUSE_MODES,
    ComputeConfig,
    InputConfig,
    JobConfig,
    ModelConfig,
    OutputConfig,
    RowsConfig,
    RunConfig,
)
from e5ray.corpus.rows import ID_TYPES, ON_INVALID_UTF8
from e5ray.corpus.sources import FORMATS
from e5ray.job.progress import MODES
from e5ray.model.catalog import CATALOG
from e5ray.model.pooling import POOLINGS
from e5ray.model.space import PREFIXES
from e5ray.model.windows import LONG_TEXT_MODES
from e5ray.output.dupes import POLICIES
from e5ray.output.sinks.base import SINKS


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """Every flag of a job, group by group; the order of the calls is the order of `--help`."""
    add_input_output_arguments(parser)
    add_model_arguments(parser)
    add_compute_arguments(parser)
    add_rows_arguments(parser)
    add_limits_arguments(parser)
    add_storage_arguments(parser, endpoint=False)  # --s3-endpoint is in "input and output"
    add_run_arguments(parser)


def add_input_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the corpus is, how to read it, and where the vectors go."""
    io = parser.add_argument_group("input and output")
    # Not required= in argparse: --config may supply them; checked after parsing.
    io.add_argument("--input", help="corpus: a local dir, file or glob, or s3://bucket/prefix (required)")
    io.add_argument("--output", help="where shards + manifest go: a local dir or s3://bucket/prefix (required)")
    io.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="input format (default: from extensions .parquet, .jsonl, .jsonl.gz)",
    )
    io.add_argument(
        "--id-column", default=InputConfig.id_column, help="input column with each row's unique id (int or string)"
    )
    io.add_argument("--text-column", default=InputConfig.text_column, help="input column with the text to embed")
    io.add_argument(
        "--keep-columns",
        default=None,
        metavar="A,B,...",
        help="input columns copied beside the vectors (for example lang,url,text)",
    )
    io.add_argument(
        "--output-format",
        choices=list(SINKS),
        default=OutputConfig.format,
        help="embedding shard format (jsonl is for debugging)",
    )
    io.add_argument(
        "--s3-endpoint",
        default=None,
        help="S3 endpoint URL (default: $AWS_ENDPOINT_URL); credentials come from the AWS chain",
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Which model, and the flags that define the embedding space it gives."""
    model = parser.add_argument_group("model")
    model.add_argument("--model", default=ModelConfig.name, help=f"E5 model name (known: {', '.join(CATALOG)})")
    model.add_argument(
        "--model-path",
        default=None,
        help="local or s3:// directory with the ONNX export, e.g. from `e5ray stage-model` (skips the hub download)",
    )
    model.add_argument(
        "--prefix",
        choices=list(PREFIXES),
        default=ModelConfig.prefix,
        help="E5 prefix: passage for documents, query for queries",
    )
    model.add_argument(
        "--max-length",
        type=int,
        default=ModelConfig.max_length,
        help="tokens per text; longer texts are truncated and counted",
    )
    model.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="fp32 (CPU default), fp16 (GPU default), int8 (CPU, quality-gated)",
    )
    model.add_argument(
        "--int8-min-cosine",
        type=float,
        default=ModelConfig.int8_min_cosine,
        help="int8 only: lowest cosine to fp32 on the check texts",
    )
    add_space_arguments(model)
    model.add_argument("--cache-dir", default=None, help="model cache (default: $E5RAY_CACHE or ~/.cache/e5ray)")


def add_space_arguments(group: argparse._ArgumentGroup) -> None:
    """Pooling and long-text flags: part of the embedding space, like the model."""
    group.add_argument(
        "--pooling",
        choices=list(POOLINGS),
        default=ModelConfig.pooling,
        help="mean (the E5 paper's, default) or cls (legacy: only to extend an index built with CLS pooling)",
    )
    group.add_argument(
        "--long-text",
        choices=LONG_TEXT_MODES,
        default=ModelConfig.long_text,
        help="texts over --max-length: truncate (default, counted), chunk (one row per window), "
        "average (one vector per text: token-weighted mean of its windows)",
    )
    group.add_argument(
        "--stride",
        type=int,
        default=None,
        help="chunk/average: tokens of OVERLAP between consecutive windows (default: max length / 8)",
    )


def add_compute_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how wide the work runs: device, actors, batches, units, retries."""
    pool = parser.add_argument_group("compute")
    pool.add_argument("--device", choices=DEVICES, default=ComputeConfig.device, help="where the model runs")
    pool.add_argument(
        "--threads-per-actor",
        type=int,
        default=None,
        help="CPUs (and ONNX threads) per CPU actor (default: a whole small node, at most 8)",
    )
    pool.add_argument("--min-actors", type=int, default=ComputeConfig.min_actors, help="actors started at once")
    pool.add_argument(
        "--max-actors",
        type=int,
        default=None,
        help="the pool's size; give it on an autoscaling cluster (default: what the live nodes fit)",
    )
    pool.add_argument(
        "--gpus-per-actor",
        type=float,
        default=None,
        help=f"GPUs each GPU actor reserves (default {DEFAULT_GPUS_PER_ACTOR:.3g}: three actors share a GPU)",
    )
    pool.add_argument(
        "--token-budget", type=int, default=None, help="padded tokens per ONNX batch (default: per device)"
    )
    pool.add_argument(
        "--chunk-rows",
        type=int,
        default=None,
        help=f"rows read, length-sorted and embedded per step (default: {DEFAULT_CHUNK_ROWS} by device)",
    )
    pool.add_argument(
        "--unit-rows", type=int, default=ComputeConfig.unit_rows, help="a work unit holds at most this many rows"
    )
    pool.add_argument(
        "--unit-tokens",
        type=int,
        default=ComputeConfig.unit_tokens,
        help="and about this many tokens (text bytes / 4); files above it are split, smaller ones grouped",
    )
    pool.add_argument(
        "--retries",
        type=int,
        default=ComputeConfig.retries,
        help="times a unit lost to a transient failure (a node, the network) is run again",
    )
    add_executor_arguments(pool)


def add_executor_arguments(pool: argparse._ArgumentGroup) -> None:
    """Which executor runs the units: named, or chosen per run by the plan's size (`auto`)."""
    pool.add_argument(
        "--executor",
        choices=EXECUTOR_CHOICES,
        default=ComputeConfig.executor,
        help="ray: actor pools on the cluster in RAY_ADDRESS, else on a fresh local Ray; local: in this process, "
        "no Ray; auto: local when the run plans fewer than --small-run-tokens tokens on the CPU, else ray "
        "(the summary and the manifest's run.executor_reason say which ran and why)",
    )
    pool.add_argument(
        "--small-run-tokens",
        type=int,
        default=ComputeConfig.small_run_tokens,
        help="with --executor auto: a run planning fewer tokens (text bytes / 4) than this embeds in this "
        "process, without starting Ray (0: always Ray)",
    )


def add_rows_arguments(parser: argparse.ArgumentParser) -> None:
    """What happens to repeated ids, broken text and mixed id types."""
    rows = parser.add_argument_group("rows and ids")
    rows.add_argument(
        "--duplicate-ids",
        choices=POLICIES,
        default=RowsConfig.duplicate_ids,
        help="ids repeated across shards: reject later ones (the first by source order keeps it; default), "
        "keep-first (the id already in the output keeps it), allow",
    )
    rows.add_argument(
        "--on-invalid-utf8",
        choices=ON_INVALID_UTF8,
        default=RowsConfig.on_invalid_utf8,
        help="texts with invalid UTF-8 or lone surrogates: reject the row (default) or replace with U+FFFD",
    )
    rows.add_argument(
        "--id-type",
        choices=ID_TYPES,
        default=RowsConfig.id_type,
        help="auto: ids keep their type and a corpus mixing types is refused; string: integer ids become text",
    )


def add_limits_arguments(parser: argparse.ArgumentParser) -> None:
    """The run's deadline and the lease that keeps `e5ray gc` off its files."""
    limits = parser.add_argument_group("run limits and coordination with gc")
    limits.add_argument("--deadline", type=float, default=None, help="fail the run after this many seconds")
    limits.add_argument(
        "--lease-interval",
        type=float,
        default=RunConfig.lease_interval,
        help=f"seconds between heartbeats of the run's lease (default {RunConfig.lease_interval:g})",
    )
    limits.add_argument(
        "--lease-timeout",
        type=float,
        default=RunConfig.lease_timeout,
        help=f"a lease without heartbeat this long is expired (default {RunConfig.lease_timeout:g})",
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """What the run does (full, reuse, dry run), its config file and what it prints."""
    run = parser.add_argument_group("run")
    run.add_argument("--full", action="store_true", help="re-embed every shard (allowed across embedding spaces)")
    run.add_argument(
        "--reuse",
        choices=REUSE_MODES,
        default=JobConfig.__dataclass_fields__["reuse"].default,
        help="rows: embed only texts the output does not hold (by content hash); "
        "shard: re-embed changed shards whole; none: re-embed every shard",
    )
    run.add_argument(
        "--dry-run", action="store_true", help="print the plan and estimates; load no model, write nothing"
    )
    run.add_argument("--config", metavar="FILE", help="YAML or TOML file whose keys are these flags (flags win)")
    run.add_argument(
        "--progress",
        choices=MODES,
        default="auto",
        help="auto: a bar on a terminal, else a line every --progress-interval seconds",
    )
    run.add_argument("--progress-interval", type=float, default=10.0, help="seconds between progress lines")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON line instead of text")
    run.add_argument("--quiet", action="store_true", help="no progress and no summary (errors only)")
    run.add_argument("--verbose", action="store_true", help="also Ray Data's own progress and Ray's log lines")
    add_log_level(
        run, "e5ray's log level (default: WARNING; INFO with --verbose); DEBUG also prints the traceback of a failure"
    )
