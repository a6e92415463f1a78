"""How a command's failure reaches the user: one line and a documented exit code.

Invariants: an error a user can cause (`E5RayError`, or a storage failure, which becomes
one naming the operation and the URI) prints one line on stderr and returns its exit code
(`--log-level debug` adds the traceback); Ctrl-C says what the next run reuses and returns
130; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable

from e5ray.cli.shared_flags import storage_options_from_args
from e5ray.errors import EXIT_INTERRUPTED, E5RayError
from e5ray.executors.base import end_command
from e5ray.store.failures import describe, endpoint_of


def main_with_errors(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """`_one_line_errors`, then what the executors do at the command's end (a joined Ray cluster is
    left, with a bound: `e5ray.executors.base.end_command`), given the exit code (1 for a bug)."""
    code = 1
    try:
        code = _one_line_errors(func, args)
        return code
    finally:
        end_command(code)


def _one_line_errors(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
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
