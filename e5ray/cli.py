"""`e5ray` command line: embed, refresh, verify, gc.

`jobs/embed_corpus.py` and `jobs/refresh_corpus.py` use the same flags through
`add_job_arguments` and `config_from_args`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from e5ray.catalog import CATALOG, DEFAULT_MODEL
from e5ray.corpus import FORMATS
from e5ray.dupes import POLICIES
from e5ray.embedder import DEVICES, PRECISIONS, PREFIXES
from e5ray.failures import check_bucket, describe, endpoint_of, storage_step
from e5ray.job import JobConfig
from e5ray.lease import DEFAULT_LEASE_INTERVAL_S, DEFAULT_LEASE_TIMEOUT_S
from e5ray.rows import ID_TYPES, ON_INVALID_UTF8
from e5ray.storage import s3_options
from e5ray.timeouts import DEFAULT_ATTEMPTS, DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_READ_TIMEOUT_S, StoragePolicy

LOG_LEVELS = ("debug", "info", "warning", "error")


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
        "--s3-endpoint",
        default=None,
        help="S3 endpoint URL (default: $AWS_ENDPOINT_URL); credentials come from the AWS chain",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", default=DEFAULT_MODEL, help=f"E5 model name (known: {', '.join(CATALOG)})")
    model.add_argument(
        "--model-path", default=None, help="local or s3:// directory with the ONNX export (skips the hub download)"
    )
    model.add_argument("--prefix", choices=list(PREFIXES), default="passage")
    model.add_argument("--max-length", type=int, default=512)
    model.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="fp32 (CPU default), fp16 (GPU default), int8 (CPU, quality-gated)",
    )
    model.add_argument("--int8-min-cosine", type=float, default=0.99)
    model.add_argument("--cache-dir", default=None, help="model cache (default: $E5RAY_CACHE or ~/.cache/e5ray)")
    pool = parser.add_argument_group("compute")
    pool.add_argument("--device", choices=DEVICES, default="cpu")
    pool.add_argument(
        "--threads-per-actor",
        type=int,
        default=None,
        help="CPUs (and ONNX threads) per CPU actor (default: a whole small node, at most 8)",
    )
    pool.add_argument("--min-actors", type=int, default=1)
    pool.add_argument("--max-actors", type=int, default=None, help="default: as many as the cluster fits")
    pool.add_argument("--gpus-per-actor", type=float, default=1.0)
    pool.add_argument("--token-budget", type=int, default=None, help="padded tokens per ONNX batch")
    pool.add_argument("--chunk-rows", type=int, default=2048, help="rows read and embedded per step")
    pool.add_argument(
        "--executor",
        choices=["ray", "local"],
        default="ray",
        help="ray: actor pools on a cluster or local Ray; local: in this process, no Ray",
    )
    rows = parser.add_argument_group("rows and ids")
    rows.add_argument(
        "--duplicate-ids",
        choices=POLICIES,
        default="reject",
        help="ids repeated across shards: reject later ones (first by source order keeps it; default), "
        "keep-first (the id already in the output keeps it), allow",
    )
    rows.add_argument(
        "--on-invalid-utf8",
        choices=ON_INVALID_UTF8,
        default="reject",
        help="texts with invalid UTF-8 or lone surrogates: reject the row (default) or replace with U+FFFD",
    )
    rows.add_argument(
        "--id-type",
        choices=ID_TYPES,
        default="auto",
        help="auto: ids keep their type, a corpus mixing types is refused; string: integer ids become text",
    )
    run = parser.add_argument_group("run limits and coordination")
    run.add_argument("--deadline", type=float, default=None, help="fail the run after this many seconds")
    run.add_argument(
        "--lease-interval",
        type=float,
        default=DEFAULT_LEASE_INTERVAL_S,
        help=f"seconds between heartbeats of the run's lease (default {DEFAULT_LEASE_INTERVAL_S:g})",
    )
    run.add_argument(
        "--lease-timeout",
        type=float,
        default=DEFAULT_LEASE_TIMEOUT_S,
        help=f"a lease without heartbeat for this long is expired (default {DEFAULT_LEASE_TIMEOUT_S:g})",
    )
    add_storage_arguments(parser, endpoint=False)
    parser.add_argument("--full", action="store_true", help="re-embed every shard (allowed across spaces)")
    parser.add_argument("--quiet", action="store_true")


def add_storage_arguments(parser: argparse.ArgumentParser, endpoint: bool = True) -> None:
    """S3 endpoint (where not already added), timeouts and retries, and --log-level."""
    group = parser.add_argument_group("storage")
    if endpoint:
        group.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL (default: $AWS_ENDPOINT_URL)")
    group.add_argument(
        "--s3-connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT_S,
        help=f"seconds to wait for a connection (default {DEFAULT_CONNECT_TIMEOUT_S:g})",
    )
    group.add_argument(
        "--s3-read-timeout",
        type=float,
        default=DEFAULT_READ_TIMEOUT_S,
        help=f"seconds to wait for an answer (default {DEFAULT_READ_TIMEOUT_S:g})",
    )
    group.add_argument(
        "--s3-attempts",
        type=int,
        default=DEFAULT_ATTEMPTS,
        help=f"tries per call, with exponential backoff (default {DEFAULT_ATTEMPTS})",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=None,
        help="debug also prints the traceback of a failure (default: info, warning with --quiet)",
    )


def storage_options_from_args(args: argparse.Namespace) -> dict[str, object]:
    policy = StoragePolicy(args.s3_connect_timeout, args.s3_read_timeout, args.s3_attempts)
    return s3_options(args.s3_endpoint, policy)


def job_parser(doc: str) -> argparse.ArgumentParser:
    """The parser of the job entrypoints in jobs/, described by the first line of `doc`."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    add_job_arguments(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> JobConfig:
    return JobConfig(
        input=args.input,
        output=args.output,
        format=args.format,
        id_column=args.id_column,
        text_column=args.text_column,
        model=args.model,
        model_path=args.model_path,
        prefix=args.prefix,
        device=args.device,
        precision=args.precision,
        max_length=args.max_length,
        token_budget=args.token_budget,
        threads_per_actor=args.threads_per_actor,
        min_actors=args.min_actors,
        max_actors=args.max_actors,
        gpus_per_actor=args.gpus_per_actor,
        s3_endpoint=args.s3_endpoint,
        full=args.full,
        cache_dir=args.cache_dir,
        chunk_rows=args.chunk_rows,
        executor=args.executor,
        int8_min_cosine=args.int8_min_cosine,
        s3_connect_timeout=args.s3_connect_timeout,
        s3_read_timeout=args.s3_read_timeout,
        s3_attempts=args.s3_attempts,
        deadline=args.deadline,
        lease_interval=args.lease_interval,
        lease_timeout=args.lease_timeout,
        duplicate_ids=args.duplicate_ids,
        on_invalid_utf8=args.on_invalid_utf8,
        id_type=args.id_type,
    )


def setup_logging(quiet: bool = False, level: str | None = None) -> None:
    chosen = level.upper() if level else ("WARNING" if quiet else "INFO")
    logging.basicConfig(level=chosen, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def run_job_from_args(args: argparse.Namespace) -> int:
    from e5ray.job import run_job

    setup_logging(args.quiet, args.log_level)
    manifest = run_job(config_from_args(args))
    summary = {
        "version": manifest["version"],
        "totals": manifest["totals"],
        "changes": manifest["changes"]["counts"],
        "tokens_per_s": manifest["run"]["tokens_per_s"],
    }
    print(json.dumps(summary))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from e5ray.verify import verify_output

    options = storage_options_from_args(args)
    check_bucket(args.output, options, "verifying")
    with storage_step("verifying", args.output, options):
        problems = verify_output(args.output, options)
    for problem in problems:
        print(f"PROBLEM {problem}")
    print(f"{args.output}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    if any(p.endswith((": missing", "differs from the manifest")) or " bytes, manifest says " in p for p in problems):
        print("the next `e5ray refresh` with this output's flags embeds the shards whose files are gone anew")
    return 0 if not problems else 1


def _gc(args: argparse.Namespace) -> int:
    from e5ray.gc import collect_garbage

    options = storage_options_from_args(args)
    notes: list[str] = []
    check_bucket(args.output, options, "collecting garbage in")
    with storage_step("collecting garbage in", args.output, options):
        deleted = collect_garbage(args.output, args.keep, args.min_age, options, dry_run=args.dry_run, notes=notes)
    for note in notes:
        print(note)
    for rel in deleted:
        print(("would delete " if args.dry_run else "deleted ") + rel)
    print(f"{len(deleted)} file(s) {'to delete' if args.dry_run else 'deleted'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="e5ray", description=__doc__.splitlines()[0])
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
    verify.set_defaults(func=_verify)
    gc = sub.add_parser("gc", help="delete files no kept manifest version references")
    gc.add_argument("output")
    gc.add_argument("--keep", type=int, default=3, help="manifest versions to keep (default 3)")
    gc.add_argument(
        "--min-age",
        type=float,
        default=3600.0,
        help="spare files younger than this many seconds (a run may be about to commit them)",
    )
    gc.add_argument("--dry-run", action="store_true")
    add_storage_arguments(gc)
    gc.set_defaults(func=_gc)
    return parser


def main_with_errors(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; a failure the user can cause prints one line (naming the operation,
    the URI or the bad value) and returns its exit code (see README, "Exit codes");
    `--log-level debug` adds the traceback. Anything else is a bug and keeps its traceback."""
    try:
        return func(args)
    except Exception as exc:
        found = _user_error(exc, args)
        if found is None:
            raise
        error, code = found
        if getattr(args, "log_level", None) == "debug":
            traceback.print_exc()
        # One line; only ShardFailures lists the failed shards, one per line, below it.
        print(f"e5ray: error: {type(error).__name__}: {error}", file=sys.stderr)
        return code


def _user_error(exc: BaseException, args: argparse.Namespace) -> tuple[BaseException, int] | None:
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return exc, code
    uri = str(getattr(args, "output", None) or getattr(args, "input", ""))
    options = storage_options_from_args(args) if hasattr(args, "s3_attempts") else None
    found = describe(exc, f"{getattr(args, 'command', None) or 'run'}:", uri, endpoint_of(options))
    if found is not None:
        return found, found.exit_code
    if isinstance(exc, (ValueError, RuntimeError, FileNotFoundError)):
        return exc, 2
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return main_with_errors(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
