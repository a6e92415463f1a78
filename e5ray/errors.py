"""Errors a user can cause, with the exit code the command line reports for each.

Every failure that bad input, a bad flag or the state of an output can cause derives
from `E5RayError`; the command line catches only these, prints one line and exits with
`exit_code`. Anything else is a bug and keeps its traceback. The classes also derive
from the builtin type they used to be (ValueError, RuntimeError), so callers that
caught those keep working.

Exit codes (documented in the README):
  1  data errors: shards that cannot be read, an input that is not a corpus
  2  usage and configuration errors: bad flags, a model that cannot be found, no GPU
  3  the output holds vectors of another embedding space
  4  another run committed the same version first
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

EXIT_INTERRUPTED = 130


class E5RayError(Exception):
    """Base of every error a user can cause; `exit_code` is what the command line returns."""

    exit_code: int = 1


class DataError(E5RayError):
    """The input data cannot be embedded as it is (unreadable file, missing column, decoding)."""

    exit_code = 1


class CorpusError(DataError, ValueError):
    """The input cannot be read as a corpus; the message names the bad value."""


class ShardFailures(DataError, RuntimeError):
    """Some shards could not be embedded; nothing was committed."""


class UsageError(E5RayError, ValueError):
    """A flag or setting has a value that cannot work; the message names it and the valid ones."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration field is invalid (raised by `e5ray.config` while building the tree)."""


class ModelUnavailableError(UsageError, RuntimeError):
    """The model's files could not be found or fetched; the message says how to stage them."""


class QualityGateError(UsageError, RuntimeError):
    """A reduced-precision model drifted too far from fp32."""


class DeviceUnavailableError(UsageError, RuntimeError):
    """The requested device (a GPU) is not there, or the installed runtime cannot use it."""


class SpaceMismatchError(E5RayError, ValueError):
    """The output holds vectors of another embedding space."""

    exit_code = 3


class ConcurrentCommitError(E5RayError, RuntimeError):
    """Another run committed this version first."""

    exit_code = 4
