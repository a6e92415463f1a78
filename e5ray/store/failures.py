"""Failures a user causes through storage, as one line with the operation, the URI and a reason.

Credentials (none found, an unknown access key, a wrong secret), access denied, a
missing bucket and a store that does not answer in time all surface deep inside s3fs,
aiobotocore or a Ray worker, wrapped in several layers of exceptions. `classify` walks
an exception's chain (`__cause__`, `__context__`) for the root that says what happened;
`storage_step` turns it into a `StorageError` that names what e5ray was doing, where,
and (for timeouts) the endpoint. The command line prints such errors as one line and
exits with their code; a traceback only with `--log-level debug`.

Exit codes (e5ray.errors): 2 for credentials, access and missing buckets (the
configuration must change), 5 for a store that did not answer (running again resumes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from e5ray.errors import EXIT_STORAGE_UNAVAILABLE, DeadlineExceeded, StorageError, StorageUnavailableError
from e5ray.store.classify import classify

StorageFailure = StorageError | StorageUnavailableError


def storage_report(error: StorageFailure) -> dict[str, Any]:
    """A storage failure as plain data, to cross from a worker to the driver."""
    return {"storage_error": str(error), "exit_code": error.exit_code}


def storage_error_from(report: dict[str, Any]) -> StorageFailure:
    unavailable = report.get("exit_code") == EXIT_STORAGE_UNAVAILABLE
    return (StorageUnavailableError if unavailable else StorageError)(str(report["storage_error"]))


def endpoint_of(storage_options: dict[str, Any] | None) -> str | None:
    """The S3 endpoint a set of storage options talks to (None: AWS's default)."""
    client = (storage_options or {}).get("client_kwargs") or {}
    return client.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")


def describe(exc: BaseException, operation: str, uri: str, endpoint: str | None = None) -> StorageFailure | None:
    """`exc` as a one-line StorageError naming `operation` on `uri`, or None if it is no storage failure."""
    if isinstance(exc, (StorageError, StorageUnavailableError)):
        return exc
    found = classify(exc, endpoint)
    if found is None:
        return None
    return type(found)(f"{operation} {uri}: {found}")


@contextmanager
def storage_step(operation: str, uri: str, storage_options: dict[str, Any] | None = None) -> Iterator[None]:
    """Inside, storage failures become one-line StorageErrors naming `operation` on `uri`."""
    try:
        yield
    except (StorageError, StorageUnavailableError, DeadlineExceeded):
        raise
    except Exception as exc:
        found = describe(exc, operation, uri, endpoint_of(storage_options))
        if found is None:
            raise
        raise found from exc


def check_bucket(uri: str, storage_options: dict[str, Any] | None, operation: str) -> None:
    """For an s3:// URI whose bucket does not exist: a one-line StorageError (instead of an
    empty listing that reads as 'no manifest' or 'no input')."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in ("s3", "s3a"):
        return
    from e5ray.store.filesystem import filesystem_for

    bucket = rest.split("/", 1)[0]
    fs, _ = filesystem_for(f"{scheme}://{bucket}", storage_options)
    with storage_step(operation, uri, storage_options):
        try:  # not fs.exists: it answers False for refused credentials too
            fs.ls(bucket, detail=False)
        except FileNotFoundError as exc:
            if classify(exc) is None:
                raise StorageError(f"{operation} {uri}: no such bucket") from exc
            raise
