"""The help text around the flags: the exit codes and examples every job help page ends
with, the formatter that keeps them as written, and `--version`.

Invariant: a flag's help shows its default exactly once, either written into the text or
added by `HelpFormatter`, so the help stays true when a default in `e5ray.config` moves.
"""

from __future__ import annotations

import argparse

from e5ray import __version__

EXIT_CODES = """exit codes:
  0    ok
  1    data errors: shards that cannot be read (named, with the reason); nothing committed
  2    usage or configuration errors: a bad flag, a missing column, an unreachable cluster
  3    the output holds vectors of another embedding space (re-embed with --full)
  4    another run committed the same version first (run again)
  5    the store did not answer within its timeouts, or the run's lease lapsed (run again: it resumes)
  6    the run's --deadline passed (run again: it resumes)
  130  interrupted (Ctrl-C); finished shards are reused by the next run"""

JOB_EXAMPLES = """examples:
  # the sample corpus with the demo model (python -m e5ray.testing .demo-model)
  e5ray embed --input samples/corpus --output out/sample --model demo --model-path .demo-model

  # what would a refresh do? (no model loaded, nothing written)
  e5ray embed --input s3://bucket/corpus/ --output s3://bucket/emb/ --dry-run

  # a real model staged once, the language and url columns kept beside the vectors
  e5ray stage-model intfloat/multilingual-e5-small s3://bucket/models/e5-small
  e5ray embed --input s3://bucket/corpus/ --output s3://bucket/emb/ \\
      --model intfloat/multilingual-e5-small --model-path s3://bucket/models/e5-small --keep-columns lang,url

  # flags from a file (keys are the flag names), machine-readable summary
  e5ray embed --config e5ray.yaml --json

"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; '(default: X)' added where a flag has a default worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and "default" not in text
            and default not in (None, False, argparse.SUPPRESS)
            and not isinstance(action, argparse._VersionAction)
        ):
            text += " (default: %(default)s)"
        return text


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"e5ray {__version__}")
