"""`e5ray` command line: embed, refresh, verify, stage-model, export, changes, gc, search, eval, compare.

This module is the dispatcher: it builds the parser from the command groups
(`job_command`: embed and refresh; `output_commands`: verify, stage-model, export, gc; `changes_command`: changes;
`quality_commands`: eval, compare, search), parses, and runs the chosen command through
`main_with_errors` (`e5ray.cli.errors`).

`jobs/embed_corpus.py` and `jobs/refresh_corpus.py` use the same flags through
`add_job_arguments` (`e5ray.cli.flags`), `parse_job_args` and `config_from_args`, imported
from here. Every flag has help text and its default in `--help`; `--config FILE` supplies
flags from YAML or TOML; errors a user can cause (`E5RayError`) print one line and exit with
the documented code (EXIT_CODES, from `e5ray.errors`), storage failures included (with the
operation and the URI); anything else is a bug and keeps its traceback.
Defaults come from `e5ray.config`: each is written once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from e5ray.cli.changes_command import add_changes_parser
from e5ray.cli.errors import main_with_errors
from e5ray.cli.flags import add_job_arguments
from e5ray.cli.help_text import EXIT_CODES, JOB_EXAMPLES, HelpFormatter, add_version
from e5ray.cli.job_command import add_job_commands, config_from_args, job_parser, parse_job_args, run_job_from_args
from e5ray.cli.output_commands import add_export_parser, add_gc_parser, add_stage_model_parser, add_verify_parser
from e5ray.cli.quality_commands import add_quality_commands

# Imported from here by jobs/ and the tests: the command line's entry points in one place.
__all__ = [
    "EXIT_CODES",
    "add_job_arguments",
    "build_parser",
    "config_from_args",
    "job_parser",
    "main",
    "main_with_errors",
    "parse_job_args",
    "run_job_from_args",
]


def build_parser() -> argparse.ArgumentParser:
    """Every command, in the order `e5ray --help` lists them."""
    parser = argparse.ArgumentParser(
        prog="e5ray",
        description=__doc__.splitlines()[0],
        epilog=JOB_EXAMPLES + EXIT_CODES,
        formatter_class=HelpFormatter,
    )
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_job_commands(sub)
    add_verify_parser(sub)
    add_stage_model_parser(sub)
    add_export_parser(sub)
    add_changes_parser(sub)
    add_gc_parser(sub)
    add_quality_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("embed", "refresh"):
        # A job parses on its own parser, so that `--config FILE` can supply its defaults.
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
