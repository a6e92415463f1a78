"""`e5ray` command line: embed, refresh, verify, gc, search, eval, compare.

`jobs/embed_corpus.py` and `jobs/refresh_corpus.py` use the same flags through
`add_job_arguments` and `config_from_args`. Defaults come from `e5ray.config`.
Errors a user can cause (`E5RayError`) print one line and exit with their code
(see `e5ray.errors`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from e5ray.catalog import CATALOG
from e5ray.config import (
    DEVICES,
    OPTIONS,
    PRECISIONS,
    REUSE_MODES,
    ComputeConfig,
    JobConfig,
    ModelConfig,
    OutputConfig,
    RowsConfig,
    RunConfig,
)
from e5ray.corpus import FORMATS
from e5ray.dupes import POLICIES
from e5ray.errors import EXIT_INTERRUPTED, E5RayError
from e5ray.executors.base import EXECUTORS
from e5ray.failures import check_bucket, describe, endpoint_of, storage_step
from e5ray.pooling import POOLINGS
from e5ray.rows import ID_TYPES, ON_INVALID_UTF8
from e5ray.search import add_search_command
from e5ray.sinks.base import SINKS
from e5ray.space import PREFIXES
from e5ray.storage import s3_options
from e5ray.timeouts import StoragePolicy
from e5ray.windows import LONG_TEXT_MODES

LOG_LEVELS = ("debug", "info", "warning", "error")

GC_KEEP = 3
GC_MIN_AGE_S = 3600.0


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


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("input and output")
    io.add_argument("--input", required=True, help="local dir, file or glob, or s3://bucket/prefix")
    io.add_argument("--output", required=True, help="local dir or s3://bucket/prefix for shards + manifest")
    io.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="input format (default: from extensions .parquet, .jsonl, .jsonl.gz)",
    )
    io.add_argument("--id-column", default="id")
    io.add_argument("--text-column", default="text")
    io.add_argument(
        "--output-format",
        choices=list(SINKS),
        default=OutputConfig.format,
        help=f"embedding shard format (default: {OutputConfig.format}; jsonl is for debugging)",
    )
    io.add_argument(
        "--s3-endpoint",
        default=None,
        help="S3 endpoint URL (default: $AWS_ENDPOINT_URL); credentials come from the AWS chain",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", default=ModelConfig.name, help=f"E5 model name (known: {', '.join(CATALOG)})")
    model.add_argument(
        "--model-path", default=None, help="local or s3:// directory with the ONNX export (skips the hub download)"
    )
    model.add_argument("--prefix", choices=list(PREFIXES), default=ModelConfig.prefix)
    model.add_argument("--max-length", type=int, default=ModelConfig.max_length)
    model.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="fp32 (CPU default), fp16 (GPU default), int8 (CPU, quality-gated)",
    )
    model.add_argument("--int8-min-cosine", type=float, default=ModelConfig.int8_min_cosine)
    add_space_arguments(model)
    model.add_argument("--cache-dir", default=None, help="model cache (default: $E5RAY_CACHE or ~/.cache/e5ray)")
    model.add_argument("--token-budget", type=int, default=None, help="padded tokens per ONNX batch")
    pool = parser.add_argument_group("compute")
    pool.add_argument("--device", choices=DEVICES, default=ComputeConfig.device)
    pool.add_argument(
        "--threads-per-actor",
        type=int,
        default=None,
        help="CPUs (and ONNX threads) per CPU actor (default: a whole small node, at most 8)",
    )
    pool.add_argument("--min-actors", type=int, default=ComputeConfig.min_actors)
    pool.add_argument(
        "--max-actors",
        type=int,
        default=None,
        help="the pool's size; give it on an autoscaling cluster (default: what the live nodes fit)",
    )
    pool.add_argument("--gpus-per-actor", type=float, default=ComputeConfig.gpus_per_actor)
    pool.add_argument(
        "--chunk-rows", type=int, default=ComputeConfig.chunk_rows, help="rows read and embedded per step"
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
    pool.add_argument(
        "--executor",
        choices=list(EXECUTORS),
        default=ComputeConfig.executor,
        help="ray: actor pools on a cluster or local Ray; local: in this process, no Ray",
    )
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
    run = parser.add_argument_group("run limits and coordination with gc")
    run.add_argument("--deadline", type=float, default=None, help="fail the run after this many seconds")
    run.add_argument(
        "--lease-interval",
        type=float,
        default=RunConfig.lease_interval,
        help=f"seconds between heartbeats of the run's lease (default {RunConfig.lease_interval:g})",
    )
    run.add_argument(
        "--lease-timeout",
        type=float,
        default=RunConfig.lease_timeout,
        help=f"a lease without heartbeat this long is expired (default {RunConfig.lease_timeout:g})",
    )
    add_storage_arguments(parser, endpoint=False)
    parser.add_argument("--full", action="store_true", help="re-embed every shard (allowed across spaces)")
    parser.add_argument(
        "--reuse",
        choices=REUSE_MODES,
        default=JobConfig.__dataclass_fields__["reuse"].default,
        help="rows: embed only texts the output does not hold (by content hash); "
        "shard: re-embed changed shards whole; none: re-embed every shard",
    )
    parser.add_argument("--quiet", action="store_true")


def add_storage_arguments(parser: argparse.ArgumentParser, endpoint: bool = True) -> None:
    """Storage timeouts and retries (and the S3 endpoint where not added yet), and --log-level."""
    group = parser.add_argument_group("storage")
    if endpoint:
        group.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL (default: $AWS_ENDPOINT_URL)")
    group.add_argument(
        "--s3-connect-timeout",
        type=float,
        default=StoragePolicy.connect_timeout,
        help=f"seconds to wait for a connection (default {StoragePolicy.connect_timeout:g})",
    )
    group.add_argument(
        "--s3-read-timeout",
        type=float,
        default=StoragePolicy.read_timeout,
        help=f"seconds to wait for an answer (default {StoragePolicy.read_timeout:g})",
    )
    group.add_argument(
        "--s3-attempts",
        type=int,
        default=StoragePolicy.attempts,
        help=f"tries per call, with exponential backoff (default {StoragePolicy.attempts})",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=None,
        help="debug also prints the traceback of a failure (default: info, warning with --quiet)",
    )


def storage_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    policy = StoragePolicy(args.s3_connect_timeout, args.s3_read_timeout, args.s3_attempts)
    return s3_options(args.s3_endpoint, policy)


def job_parser(doc: str) -> argparse.ArgumentParser:
    """The parser of the job entrypoints in jobs/, described by the first line of `doc`."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    add_job_arguments(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> JobConfig:
    return JobConfig.from_options(**{k: v for k, v in vars(args).items() if k in OPTIONS})


def setup_logging(quiet: bool = False, level: str | None = None) -> None:
    chosen = level.upper() if level else ("WARNING" if quiet else "INFO")
    logging.basicConfig(level=chosen, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def run_job_from_args(args: argparse.Namespace) -> int:
    from e5ray.job import run_job
    from e5ray.reuse_plan import reuse_summary

    setup_logging(args.quiet, args.log_level)
    manifest = run_job(config_from_args(args))
    summary = {
        "version": manifest.version,
        "totals": manifest.totals,
        "changes": manifest.changes["counts"],
        "tokens_per_s": manifest.run.tokens_per_s,
        "reuse": reuse_summary(manifest.run.reuse),
    }
    print(json.dumps(summary))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from e5ray.storage import OutputDir
    from e5ray.verify import verify_output

    options = storage_options_from_args(args)
    check_bucket(args.output, options, "verifying")
    with storage_step("verifying", args.output, options):
        problems = verify_output(OutputDir(args.output, options), quick=args.quick)
    for problem in problems:
        print(f"PROBLEM {problem}")
    print(f"{args.output}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    if any(p.endswith(": missing") or " bytes, manifest says " in p for p in problems):
        print("the next `e5ray refresh` with this output's flags embeds the shards whose files are gone anew")
    return 0 if not problems else 1


def _gc(args: argparse.Namespace) -> int:
    from e5ray.gc import collect_garbage
    from e5ray.storage import OutputDir

    options = storage_options_from_args(args)
    check_bucket(args.output, options, "collecting garbage in")
    notes: list[str] = []
    with storage_step("collecting garbage in", args.output, options):
        deleted = collect_garbage(OutputDir(args.output, options), args.keep, args.min_age, args.dry_run, notes)
    for note in notes:
        print(note)
    for rel in deleted:
        print(("would delete " if args.dry_run else "deleted ") + rel)
    print(f"{len(deleted)} file(s) {'to delete' if args.dry_run else 'deleted'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="e5ray", description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("embed", "embed a corpus (a refresh when OUTPUT has a manifest)"),
        ("refresh", "same as embed: re-embed only what changed"),
    ):
        job = sub.add_parser(name, help=text)
        add_job_arguments(job)
        job.set_defaults(func=run_job_from_args)
    verify = sub.add_parser("verify", help="check an output against its manifest")
    verify.add_argument("output")
    add_storage_arguments(verify)
    verify.add_argument("--quick", action="store_true", help="names and sizes from one listing only (no file is read)")
    verify.set_defaults(func=_verify)
    gc = sub.add_parser("gc", help="delete files no kept manifest version references")
    gc.add_argument("output")
    gc.add_argument("--keep", type=int, default=GC_KEEP, help=f"manifest versions to keep (default {GC_KEEP})")
    gc.add_argument(
        "--min-age",
        type=float,
        default=GC_MIN_AGE_S,
        help="spare files younger than this many seconds (a run may be about to commit them)",
    )
    gc.add_argument("--dry-run", action="store_true")
    add_storage_arguments(gc)
    gc.set_defaults(func=_gc)
    from e5ray.compare import add_compare_arguments, compare_from_args
    from e5ray.eval import add_eval_arguments, eval_from_args

    for name, text, add_arguments, run in (
        ("eval", "retrieval metrics of embedding variants on labelled pairs, A/B", add_eval_arguments, eval_from_args),
        ("compare", "how far two outputs' vectors moved: cosine, neighbours", add_compare_arguments, compare_from_args),
    ):
        command = sub.add_parser(name, help=text)
        add_arguments(command)
        command.set_defaults(func=run)
    add_search_command(sub)
    return parser


def main_with_errors(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; an error a user can cause prints one line (its message names the bad
    value, or the operation and URI for storage) and returns its exit code; `--log-level
    debug` adds the traceback. Other exceptions are bugs and keep their traceback."""
    try:
        return func(args)
    except Exception as exc:
        error = exc if isinstance(exc, E5RayError) else _storage_failure(exc, args)
        if error is None:
            raise
        if getattr(args, "log_level", None) == "debug":
            traceback.print_exc()
        print(f"e5ray: error: {type(error).__name__}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("e5ray: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _storage_failure(exc: BaseException, args: argparse.Namespace) -> E5RayError | None:
    """A storage failure that escaped every `storage_step`, named by the command and its URI."""
    uri = str(getattr(args, "output", None) or getattr(args, "input", ""))
    options = storage_options_from_args(args) if hasattr(args, "s3_attempts") else None
    return describe(exc, f"{getattr(args, 'command', None) or 'run'}:", uri, endpoint_of(options))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return main_with_errors(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
