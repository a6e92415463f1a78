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

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from e5ray.errors import EXIT_STORAGE_UNAVAILABLE, DeadlineExceeded, StorageError, StorageUnavailableError

StorageFailure = StorageError | StorageUnavailableError


def storage_report(error: StorageFailure) -> dict[str, Any]:
    """A storage failure as plain data, to cross from a worker to the driver."""
    return {"storage_error": str(error), "exit_code": error.exit_code}


def storage_error_from(report: dict[str, Any]) -> StorageFailure:
    unavailable = report.get("exit_code") == EXIT_STORAGE_UNAVAILABLE
    return (StorageUnavailableError if unavailable else StorageError)(str(report["storage_error"]))


_CODES = {
    "InvalidAccessKeyId": "the access key is not known to the store (check AWS_ACCESS_KEY_ID or the profile)",
    "SignatureDoesNotMatch": "the secret key does not match the access key (check AWS_SECRET_ACCESS_KEY)",
    "AccessDenied": "access denied for these credentials",
    "AllAccessDisabled": "access denied for these credentials",
    "Forbidden": "access denied for these credentials",
    "403": "access denied for these credentials",
    "NoSuchBucket": "no such bucket",
    "InvalidBucketName": "not a valid bucket name",
    "ExpiredToken": "the session token has expired",
    "InvalidToken": "the session token is not valid",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        item = todo.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [e for e in (item.__cause__, item.__context__) if e is not None]


def _endpoint(item: BaseException, fallback: str | None) -> str:
    kwargs = getattr(item, "kwargs", None) or {}
    url = str(kwargs.get("endpoint_url") or fallback or "")
    parts = urlsplit(url)
    # the endpoint itself; the object is named by the operation
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else (url or "the default AWS endpoint")


def classify(exc: BaseException, endpoint: str | None = None) -> StorageFailure | None:
    """The storage failure at the root of `exc` (message without operation), or None."""
    try:
        from botocore import exceptions as bex
    except ImportError:  # no S3 support installed: nothing to classify
        return None
    timeouts: tuple[type[BaseException], ...] = (
        bex.ReadTimeoutError,
        bex.ConnectTimeoutError,
        bex.EndpointConnectionError,
        bex.ConnectionClosedError,
        asyncio.TimeoutError,
        TimeoutError,
    )
    try:
        from fsspec.exceptions import FSTimeoutError

        timeouts += (FSTimeoutError,)
    except ImportError:  # older fsspec
        pass
    for item in _chain(exc):
        if isinstance(item, (bex.NoCredentialsError, bex.PartialCredentialsError)):
            return StorageError(
                "no S3 credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or use an instance role)"
            )
        if isinstance(item, bex.ClientError):
            error = item.response.get("Error", {}) if hasattr(item, "response") else {}
            code = str(error.get("Code", ""))
            if code in _CODES:
                return StorageError(_CODES[code])
        if isinstance(item, timeouts):
            kind = "could not be reached" if isinstance(item, bex.EndpointConnectionError) else "did not answer"
            return StorageUnavailableError(f"{_endpoint(item, endpoint)} {kind} ({type(item).__name__})")
    return None


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
