"""The commands on an existing output: `verify`, `gc`, `export`, and `stage-model` (which
puts a model where runs read it). Each is a parser (its flags and help) and a function
that runs it and returns the exit code.

Invariant: a storage failure names the operation and the URI (`storage_step`), and the
bucket is checked before any work, so a wrong endpoint is one line, not a traceback. The
library is imported inside the functions: registering a command costs nothing.
"""

from __future__ import annotations

import argparse
from typing import Any

from e5ray.cli.help_text import HelpFormatter
from e5ray.cli.shared_flags import add_log_level, add_storage_arguments, storage_options_from_args
from e5ray.errors import UsageError
from e5ray.model.catalog import CATALOG
from e5ray.store.failures import check_bucket, storage_step

GC_KEEP = 3
GC_MIN_AGE_S = 3600.0
TRACEBACK_HELP = "DEBUG also prints the traceback of a failure"


def add_verify_parser(sub: Any) -> None:
    verify = sub.add_parser("verify", help="check an output against its manifest", formatter_class=HelpFormatter)
    verify.add_argument("output", help="the output directory or s3:// prefix")
    add_storage_arguments(verify)
    add_log_level(verify, TRACEBACK_HELP)
    verify.add_argument("--quick", action="store_true", help="names and sizes from one listing only (no file is read)")
    verify.add_argument(
        "--on-ray",
        action="store_true",
        help="read and check the files in Ray tasks across the cluster (RAY_ADDRESS, else a local Ray), "
        "not in this process's threads",
    )
    verify.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
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


def add_gc_parser(sub: Any) -> None:
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
    add_log_level(gc, TRACEBACK_HELP)
    gc.set_defaults(func=run_gc)


def run_gc(args: argparse.Namespace) -> int:
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
    stage.set_defaults(func=run_stage_model)


def run_stage_model(args: argparse.Namespace) -> int:
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
        epilog="examples:\n  e5ray export out/sample --to lance out/sample.lancedb --table sample\n"
        "  e5ray export out/sample --to lance out/sample.lancedb --table sample --incremental\n",
        formatter_class=HelpFormatter,
    )
    export.add_argument("output", help="the e5ray output (directory or s3:// prefix)")
    export.add_argument("--to", choices=["lance"], required=True, help="target format")
    export.add_argument("directory", help="LanceDB database directory (or URI) to write into")
    export.add_argument(
        "--table", default="embeddings", help="table name (replaced if it exists, unless --incremental)"
    )
    export.add_argument(
        "--incremental",
        action="store_true",
        help="apply only the changes since the version the table records (merge-insert on id, delete); "
        "a full write when the table is new, of another space, or its version cannot be served",
    )
    export.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL (default: $AWS_ENDPOINT_URL)")
    export.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from e5ray.output.export_lance import export_lance
    from e5ray.store.filesystem import s3_options

    done = export_lance(args.output, args.directory, args.table, s3_options(args.s3_endpoint) or None, args.incremental)
    how = (
        f"incremental since version {done['since']}: {done['upserts']:,} upserts, {done['deletes']:,} deletes"
        if done["mode"] == "incremental"
        else f"full write: {done['reason']}"
        if args.incremental
        else "full write"
    )
    print(
        f"exported version {done['version']} of {args.output}: {done['rows']:,} rows (dim {done['dim']}) "
        f"to LanceDB table {done['table']!r} in {done['directory']} ({how})"
    )
    return 0
