"""`e5ray` command line: embed, refresh, verify, stage-model, export, gc, search, eval, compare.

`jobs/embed_corpus.py` and `jobs/refresh_corpus.py` use the same flags through
`add_job_arguments` (`e5ray.cli.flags`), `parse_job_args` and `config_from_args`. Every
flag has help text and its default in `--help`; `--config FILE` supplies flags from YAML
or TOML; errors a user can cause (`E5RayError`) print one line and exit with the
documented code (EXIT_CODES, from `e5ray.errors`), storage failures included (with the
operation and the URI); anything else is a bug and keeps its traceback.
Defaults come from `e5ray.config`: each is written once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from e5ray import __version__
from e5ray.cli.configfile import ConfigFileError, check_keys, load_config_file, normalise
from e5ray.cli.flags import (
    EXIT_CODES,
    JOB_EXAMPLES,
    HelpFormatter,
    add_job_arguments,
    add_log_level,
    add_storage_arguments,
    storage_options_from_args,
)
from e5ray.cli.quiet import filtered_stderr
from e5ray.cli.summary import human_summary, json_summary
from e5ray.config import OPTIONS, JobConfig
from e5ray.errors import EXIT_INTERRUPTED, E5RayError, UsageError
from e5ray.job.progress import PROGRESS_FILE, Progress
from e5ray.model.catalog import CATALOG
from e5ray.quality.search import add_search_command
from e5ray.store.failures import check_bucket, describe, endpoint_of, storage_step

GC_KEEP = 3
GC_MIN_AGE_S = 3600.0


def job_parser(doc: str) -> argparse.ArgumentParser:
    """The parser of the job entrypoints in jobs/, described by the first line of `doc`."""
    parser = argparse.ArgumentParser(
        description=doc.strip().splitlines()[0], epilog=EXIT_CODES, formatter_class=HelpFormatter
    )
    add_job_arguments(parser)
    add_version(parser)
    return parser


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"e5ray {__version__}")


def parse_job_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse with `--config FILE` applied first (its keys replace defaults, flags win)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if known.config:
        try:
            values = load_config_file(known.config)
            check_keys(values, _option_flags(parser), known.config)
        except ConfigFileError as exc:
            parser.error(str(exc))
        parser.set_defaults(**normalise(values))
    args = parser.parse_args(argv)
    missing = [flag for flag in ("--input", "--output") if not getattr(args, flag[2:])]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)} (on the command line or in --config)")
    return args


def _option_flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    skip = {"help", "version", "config"}
    return {a.dest: a.option_strings[-1] for a in parser._actions if a.option_strings and a.dest not in skip}


def config_from_args(args: argparse.Namespace) -> JobConfig:
    options = {k: v for k, v in vars(args).items() if k in OPTIONS}
    if isinstance(options.get("keep_columns"), str):  # --keep-columns a,b,c
        options["keep_columns"] = tuple(c.strip() for c in options["keep_columns"].split(",") if c.strip())
    elif options.get("keep_columns") is None:
        options.pop("keep_columns", None)
    return JobConfig.from_options(**options)


def setup_logging(level: str = "WARNING") -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _progress_writer(output: str, storage_options: dict[str, Any] | None) -> Callable[[bytes], None]:
    from e5ray.store.filesystem import filesystem_for, join, write_atomic

    def write(blob: bytes) -> None:
        fs, root = filesystem_for(output, storage_options)
        write_atomic(fs, join(root, PROGRESS_FILE), blob)

    return write


def run_job_from_args(args: argparse.Namespace) -> int:
    from e5ray.job.run import run_job
    from e5ray.refresh.prepare import reuse_summary

    setup_logging(args.log_level or ("INFO" if args.verbose else "WARNING"))
    if args.verbose:
        os.environ["E5RAY_VERBOSE"] = "1"  # read where Ray starts, also in job entrypoints
    config = config_from_args(args)
    if args.dry_run:
        from e5ray.job.dryrun import format_preview, preview_run

        print(format_preview(preview_run(config)))
        return 0
    started = time.perf_counter()
    with filtered_stderr(enabled=not args.verbose) as stderr:
        progress = Progress(
            "off" if args.quiet else args.progress,
            stderr,
            interval_s=args.progress_interval,
            write_json=_progress_writer(config.output.uri, config.storage_options()),
        )
        manifest = run_job(config, progress=progress)
    if args.json:
        print(json.dumps({**json_summary(manifest), "reuse": reuse_summary(manifest.run.reuse)}))
    elif not args.quiet:
        rate = progress.tokens_per_s() or None
        print(human_summary(manifest, config.output.uri, time.perf_counter() - started, rate))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from e5ray.output.verify import Mapper, verify_output
    from e5ray.store.filesystem import OutputDir

    options = storage_options_from_args(args)
    check_bucket(args.output, options, "verifying")
    with storage_step("verifying", args.output, options):
        mapper: Mapper | None = None
        if args.on_ray:  # the checks run as Ray tasks across the cluster (imports Ray only then)
            from e5ray.executors.ray import map_on_ray

            mapper = map_on_ray
        problems = verify_output(OutputDir(args.output, options), quick=args.quick, mapper=mapper)
    for problem in problems:
        print(f"PROBLEM {problem}")
    print(f"{args.output}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    if any(p.endswith(": missing") or " bytes, manifest says " in p for p in problems):
        print("the next `e5ray refresh` with this output's flags embeds the shards whose files are gone anew")
    return 0 if not problems else 1


def _gc(args: argparse.Namespace) -> int:
    from e5ray.output.gc import collect_garbage
    from e5ray.store.filesystem import OutputDir

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


def add_stage_model_parser(sub: Any) -> None:
    stage = sub.add_parser(
        "stage-model",
        help="copy a model to a directory or s3:// prefix, with SHA256SUMS, for --model-path",
        description="Copy a model's files (from --model-path, else the catalogue download) to DEST "
        "with a SHA256SUMS checksum file; then run jobs with --model-path DEST.",
        epilog="examples:\n  e5ray stage-model intfloat/multilingual-e5-small s3://bucket/models/e5-small\n"
        "  e5ray stage-model demo /shared/models/demo --model-path .demo-model\n",
        formatter_class=HelpFormatter,
    )
    stage.add_argument("model", help=f"model name (known: {', '.join(CATALOG)}; others need --model-path)")
    stage.add_argument("destination", help="local directory or s3://bucket/prefix")
    stage.add_argument("--model-path", default=None, help="copy from this local or s3:// model directory")
    stage.add_argument("--cache-dir", default=None, help="model cache (default: $E5RAY_CACHE or ~/.cache/e5ray)")
    stage.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL (default: $AWS_ENDPOINT_URL)")
    stage.set_defaults(func=_stage_model)


def _stage_model(args: argparse.Namespace) -> int:
    from e5ray.model.stage import CHECKSUMS, check_staged, stage_model
    from e5ray.store.filesystem import s3_options

    options = s3_options(args.s3_endpoint) or None
    staged = stage_model(args.model, args.destination, args.model_path, args.cache_dir, options)
    problems = check_staged(args.destination, options)
    if problems:
        raise UsageError(f"staged copy at {args.destination} does not check out: {'; '.join(problems)}")
    print(
        f"staged {args.model}: {len(staged.files)} files, {staged.bytes / 1e6:.1f} MB at {args.destination} "
        f"({CHECKSUMS} checked); use --model {args.model} --model-path {args.destination}"
    )
    return 0


def add_export_parser(sub: Any) -> None:
    export = sub.add_parser(
        "export",
        help="write an output's current version as a LanceDB table",
        epilog="example:\n  e5ray export out/sample --to lance out/sample.lancedb --table sample\n",
        formatter_class=HelpFormatter,
    )
    export.add_argument("output", help="the e5ray output (directory or s3:// prefix)")
    export.add_argument("--to", choices=["lance"], required=True, help="target format")
    export.add_argument("directory", help="LanceDB database directory (or URI) to write into")
    export.add_argument("--table", default="embeddings", help="table name (replaced if it exists)")
    export.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL (default: $AWS_ENDPOINT_URL)")
    export.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from e5ray.output.export_lance import export_lance
    from e5ray.store.filesystem import s3_options

    done = export_lance(args.output, args.directory, args.table, s3_options(args.s3_endpoint) or None)
    print(
        f"exported version {done['version']} of {args.output}: {done['rows']:,} rows (dim {done['dim']}) "
        f"to LanceDB table {done['table']!r} in {done['directory']}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="e5ray",
        description=__doc__.splitlines()[0],
        epilog=JOB_EXAMPLES + EXIT_CODES,
        formatter_class=HelpFormatter,
    )
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("embed", "embed a corpus (a refresh when OUTPUT has a manifest)"),
        ("refresh", "same as embed: re-embed only what changed"),
    ):
        job = sub.add_parser(
            name, help=text, description=text, epilog=JOB_EXAMPLES + EXIT_CODES, formatter_class=HelpFormatter
        )
        add_job_arguments(job)
        job.set_defaults(func=run_job_from_args)
    verify = sub.add_parser("verify", help="check an output against its manifest", formatter_class=HelpFormatter)
    verify.add_argument("output", help="the output directory or s3:// prefix")
    add_storage_arguments(verify)
    add_log_level(verify, "DEBUG also prints the traceback of a failure")
    verify.add_argument("--quick", action="store_true", help="names and sizes from one listing only (no file is read)")
    verify.add_argument(
        "--on-ray",
        action="store_true",
        help="read and check the files in Ray tasks across the cluster (RAY_ADDRESS, else a local Ray), "
        "not in this process's threads",
    )
    verify.set_defaults(func=_verify)
    add_stage_model_parser(sub)
    add_export_parser(sub)
    gc = sub.add_parser("gc", help="delete files no kept manifest version references", formatter_class=HelpFormatter)
    gc.add_argument("output", help="the output directory or s3:// prefix")
    gc.add_argument("--keep", type=int, default=GC_KEEP, help="manifest versions to keep")
    gc.add_argument(
        "--min-age",
        type=float,
        default=GC_MIN_AGE_S,
        help="spare files younger than this many seconds (a run may be about to commit them)",
    )
    gc.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    add_storage_arguments(gc)
    add_log_level(gc, "DEBUG also prints the traceback of a failure")
    gc.set_defaults(func=_gc)
    from e5ray.quality.compare import add_compare_arguments, compare_from_args
    from e5ray.quality.eval import add_eval_arguments, eval_from_args

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
    debug` adds the traceback. Ctrl-C says what the next run reuses and returns 130.
    Other exceptions are bugs and keep their traceback."""
    try:
        return func(args)
    except Exception as exc:
        error = exc if isinstance(exc, E5RayError) else _storage_failure(exc, args)
        if error is None:
            raise
        if str(getattr(args, "log_level", None)).upper() == "DEBUG":
            traceback.print_exc()
        print(f"e5ray: error: {type(error).__name__}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as exc:
        from e5ray.job.run import RunInterrupted

        line = (
            str(exc)
            if isinstance(exc, RunInterrupted)
            else "interrupted before any shard finished: rerun the same command"
        )
        print(f"\ne5ray: {line}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _storage_failure(exc: BaseException, args: argparse.Namespace) -> E5RayError | None:
    """A storage failure that escaped every `storage_step`, named by the command and its URI."""
    uri = str(getattr(args, "output", None) or getattr(args, "input", ""))
    options = storage_options_from_args(args) if hasattr(args, "s3_attempts") else None
    return describe(exc, f"{getattr(args, 'command', None) or 'run'}:", uri, endpoint_of(options))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("embed", "refresh"):
        sub = _subparser(parser, argv[0])
        args = parse_job_args(sub, argv[1:])
        args.func, args.command = run_job_from_args, argv[0]
    else:
        args = parser.parse_args(argv)
    return main_with_errors(args.func, args)


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen: argparse.ArgumentParser = action.choices[name]
            return chosen
    raise KeyError(name)


if __name__ == "__main__":
    sys.exit(main())
