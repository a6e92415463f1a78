"""`e5ray` command line: embed, refresh, verify, gc, search, eval, compare.

`jobs/embed_corpus.py` and `jobs/refresh_corpus.py` use the same flags through
`add_job_arguments` and `config_from_args`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from e5ray.catalog import CATALOG, DEFAULT_MODEL
from e5ray.corpus import FORMATS
from e5ray.embedder import DEVICES, PRECISIONS, PREFIXES
from e5ray.job import JobConfig
from e5ray.pooling import POOLINGS
from e5ray.search import add_search_command
from e5ray.windows import LONG_TEXT_MODES


def add_space_arguments(group: argparse._ArgumentGroup) -> None:
    """Pooling and long-text flags: part of the embedding space, like the model."""
    group.add_argument(
        "--pooling",
        choices=POOLINGS,
        default="mean",
        help="mean (the E5 paper's, default) or cls (legacy: only to extend an index built with CLS pooling)",
    )
    group.add_argument(
        "--long-text",
        choices=LONG_TEXT_MODES,
        default="truncate",
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
    add_space_arguments(model)
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
    parser.add_argument("--full", action="store_true", help="re-embed every shard (allowed across spaces)")
    parser.add_argument("--quiet", action="store_true")


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
        pooling=args.pooling,
        long_text=args.long_text,
        stride=args.stride,
    )


def setup_logging(quiet: bool = False) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )


def run_job_from_args(args: argparse.Namespace) -> int:
    from e5ray.job import run_job

    setup_logging(args.quiet)
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
    from e5ray.storage import s3_options
    from e5ray.verify import verify_output

    problems = verify_output(args.output, s3_options(args.s3_endpoint) or None)
    for problem in problems:
        print(f"PROBLEM {problem}")
    print(f"{args.output}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 0 if not problems else 1


def _gc(args: argparse.Namespace) -> int:
    from e5ray.gc import collect_garbage
    from e5ray.storage import s3_options

    deleted = collect_garbage(
        args.output, args.keep, args.min_age, s3_options(args.s3_endpoint) or None, dry_run=args.dry_run
    )
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
    verify.add_argument("--s3-endpoint", default=None)
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
    gc.add_argument("--s3-endpoint", default=None)
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
    """Run a command; known failure modes print their message (which names the bad value), not a trace."""
    try:
        return func(args)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"e5ray: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return main_with_errors(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
