"""`e5ray changes OUTPUT --since N`: the rows to upsert and delete that take a reader from
version N of an output to its current version (`e5ray.output.change_feed`).

Invariant: it writes nothing into the output; a version it cannot serve from (another space,
a version that replaced everything, one gc removed) is one line naming the oldest version it
can serve, exit code 2. Without `--out` it prints the counts only (the feed is still read).
"""

from __future__ import annotations

import argparse
from typing import Any

from e5ray.cli.help_text import HelpFormatter
from e5ray.cli.shared_flags import add_log_level, add_storage_arguments, storage_options_from_args
from e5ray.store.failures import check_bucket, storage_step

FORMATS = ("parquet", "jsonl")


def add_changes_parser(sub: Any) -> None:
    changes = sub.add_parser(
        "changes",
        help="the rows to upsert and delete since a version (a change feed)",
        description="Write the rows to upsert (id, embedding, kept columns) and the ids to delete that take "
        "a reader at version N of OUTPUT to its current version, collapsed across versions.",
        epilog="examples:\n  e5ray changes out/sample --since 3 --out changes.parquet\n"
        "  e5ray changes s3://bucket/emb --since 12 --out changes.jsonl --format jsonl\n",
        formatter_class=HelpFormatter,
    )
    changes.add_argument("output", help="the e5ray output (directory or s3:// prefix)")
    changes.add_argument("--since", type=int, required=True, help="the version the reader holds")
    changes.add_argument("--out", default=None, help="file to write (local path or URL); without it, counts only")
    changes.add_argument("--format", choices=FORMATS, default="parquet", help="format of --out")
    add_storage_arguments(changes)
    add_log_level(changes, "DEBUG also prints the traceback of a failure")
    changes.set_defaults(func=run_changes)


def run_changes(args: argparse.Namespace) -> int:
    from e5ray.output.change_feed import open_changes, write_feed

    options = storage_options_from_args(args)
    check_bucket(args.output, options, "reading changes from")
    with storage_step("reading changes from", args.output, options):
        feed = open_changes(args.output, args.since, options)
        if args.out is not None:
            write_feed(feed.reader(), args.out, args.format)
        else:
            for _ in feed.upserts():  # counted, not kept
                pass
    where = f" to {args.out} ({args.format})" if args.out else ""
    print(
        f"changes of {args.output} from version {feed.since} to {feed.version}: "
        f"{feed.upserted:,} upserts, {len(feed.delete_ids):,} deletes{where}"
    )
    return 0
