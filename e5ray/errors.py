"""Errors a user can cause, with the exit code the command line reports for each.

Every failure that bad input, a bad flag or the state of an output can cause derives
from `E5RayError`; the command line catches only these, prints one line and exits with
`exit_code`. Anything else is a bug and keeps its traceback. The classes also derive
from the builtin type they used to be (ValueError, RuntimeError), so callers that
caught those keep working.

Exit codes (documented in docs/user-guide.md, "Exit codes"):
  1  data errors: shards that cannot be read, an input that is not a corpus
  2  usage and configuration errors: bad flags, a model that cannot be found, no GPU
  3  the output holds vectors of another embedding space
  4  another run committed the same version first
  5  the store did not answer within its timeouts, or the run's lease lapsed (run again)
  6  the run's --deadline passed (run again)
  7  the Ray cluster stopped answering: its head, or every node that could host the pool (run again)
  130 interrupted (Ctrl-C)

A lost Ray cluster has a code of its own rather than 5: both mean "a dependency stopped
answering, run again", but what to look at differs (the store's endpoint, or the Ray
cluster), and a script or an operator should be able to tell which without parsing the line.

Storage access failures (credentials, access denied, a missing bucket) are usage errors
(2): the configuration must change. Manifests, markers or leases that break the schema or
name a path outside the output are data errors (1).
"""

from __future__ import annotations

EXIT_INTERRUPTED = 130
EXIT_STORAGE_UNAVAILABLE = 5
EXIT_DEADLINE = 6
EXIT_CLUSTER_LOST = 7


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


class ChangesUnavailableError(UsageError):
    """`e5ray changes --since N` cannot take a reader from version N: another space, a version
    that replaced everything, or versions gc removed; the message names the oldest it can serve."""


class UnsafePathError(DataError, ValueError):
    """A manifest, marker or lease names a path that is not confined to the output root."""


class ManifestInvalidError(DataError, ValueError):
    """A manifest does not match the schema e5ray reads."""


class MissingFilesError(DataError, RuntimeError):
    """Files the new version would reference are gone; nothing was committed."""


class MixedIdTypesError(DataError, ValueError):
    """The shards of one version hold ids of different types."""


class StorageError(UsageError, RuntimeError):
    """The store refused a request: credentials, access or a missing bucket."""


class StorageUnavailableError(E5RayError, RuntimeError):
    """The store did not answer within the configured timeouts and attempts."""

    exit_code = EXIT_STORAGE_UNAVAILABLE


class LeaseLostError(E5RayError, RuntimeError):
    """The run could not renew its lease in time, so gc may have collected its files."""

    exit_code = EXIT_STORAGE_UNAVAILABLE


class DeadlineExceeded(E5RayError, RuntimeError):
    """The run passed its --deadline; nothing was committed."""

    exit_code = EXIT_DEADLINE


class RayClusterLost(E5RayError, RuntimeError):
    """The Ray cluster stopped answering while the run needed it; nothing was committed."""

    exit_code = EXIT_CLUSTER_LOST
