"""Which storage failure is at the root of an exception: `classify`.

Credentials, access, missing buckets and a store that does not answer surface deep inside
s3fs, aiobotocore or a Ray worker, wrapped in several layers of exceptions; `classify`
walks the chain (`__cause__`, `__context__`) for the root that says what happened. Kept
apart from `e5ray.store.failures` (which names the operation and URI) so that the
filesystem layer can ask it without an import circle. Imports nothing of e5ray.store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from urllib.parse import urlsplit

from e5ray.errors import StorageError, StorageUnavailableError

__all__ = ["StorageFailure", "classify"]
StorageFailure = StorageError | StorageUnavailableError


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
