"""`e5ray embed|refresh` and the job entrypoints in jobs/: parsing a job's flags (with
`--config FILE` applied first), turning them into a `JobConfig`, and running the job with
its progress and summary.

Invariants: flags on the command line win over keys of the config file, which win over the
defaults; `--input` and `--output` are required from either. Nothing heavy is imported
until a job runs, so `--help` and usage errors stay fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from e5ray import timeline
from e5ray.cli.configfile import ConfigFileError, check_keys, load_config_file, normalise
from e5ray.cli.flags import add_job_arguments
from e5ray.cli.help_text import EXIT_CODES, JOB_EXAMPLES, HelpFormatter, add_version
from e5ray.cli.quiet import filtered_stderr
from e5ray.cli.summary import human_summary, json_summary
from e5ray.config import OPTIONS, JobConfig
from e5ray.job.progress import PROGRESS_FILE, Progress

# The two names of a job on the command line: a run on an output with a manifest is a refresh.
JOB_COMMANDS = (
    ("embed", "embed a corpus (a refresh when OUTPUT has a manifest)"),
    ("refresh", "same as embed: re-embed only what changed"),
)


def job_parser(doc: str) -> argparse.ArgumentParser:
    """The parser of the job entrypoints in jobs/, described by the first line of `doc`."""
    parser = argparse.ArgumentParser(
        description=doc.strip().splitlines()[0], epilog=EXIT_CODES, formatter_class=HelpFormatter
    )
    add_job_arguments(parser)
    add_version(parser)
    return parser


def add_job_commands(sub: Any) -> None:
    """Register `e5ray embed` and `e5ray refresh` (the same job) on the subparsers."""
    for name, text in JOB_COMMANDS:
        job = sub.add_parser(
            name, help=text, description=text, epilog=JOB_EXAMPLES + EXIT_CODES, formatter_class=HelpFormatter
        )
        add_job_arguments(job)
        job.set_defaults(func=run_job_from_args)


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
    """dest -> flag of every option a config file may set."""
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
    """Writes the progress JSON beside the output, for whoever watches the run from elsewhere."""
    from e5ray.store.filesystem import filesystem_for, join, write_atomic

    def write(blob: bytes) -> None:
        fs, root = filesystem_for(output, storage_options)
        write_atomic(fs, join(root, PROGRESS_FILE), blob)

    return write


def run_job_from_args(args: argparse.Namespace) -> int:
    from e5ray.job.run import run_job
    from e5ray.refresh.prepare import reuse_summary

    if timeline.marks():  # an earlier run in this process (tests): this one counts on its own
        timeline.reset()
    timeline.mark("imports")
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
    timeline.mark("exit")
    if args.json:
        summary = {**json_summary(manifest), "reuse": reuse_summary(manifest.run.reuse)}
        print(json.dumps({**summary, "startup": timeline.marks()}))
    elif not args.quiet:
        rate = progress.tokens_per_s() or None
        print(human_summary(manifest, config.output.uri, time.perf_counter() - started, rate))
    return 0
