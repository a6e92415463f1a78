"""Filesystem access for local paths and object stores, with the two write modes we need.

- `write_atomic`: readers see the old object or the new one, never a mix
  (local: temporary file + rename; object stores: one PUT is atomic).
- `write_create_only`: the write fails with FileExistsError when the path exists
  (local: hard link of a finished temporary file, or a lock where the filesystem has
  no hard links; S3: `If-None-Match: *`).

Filesystems are created where they are used, never shipped to workers: fsspec's
async filesystems are not fork-safe.
"""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import fsspec
from filelock import FileLock
from fsspec import AbstractFileSystem

from e5ray.store.classify import classify
from e5ray.store.tempfiles import owner_tag
from e5ray.store.timeouts import StoragePolicy, bound_every_call, with_policy

T = TypeVar("T")
LOCAL_PROTOCOLS = {"file", "local"}
# os.link's errors on filesystems that have no hard links.
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


def is_remote(uri: str) -> bool:
    """True for URIs with a non-local scheme (`s3://`, `gs://`, `memory://` ...)."""
    scheme, sep, _ = str(uri).partition("://")
    return bool(sep) and scheme not in LOCAL_PROTOCOLS


def s3_options(endpoint_url: str | None = None, policy: StoragePolicy | None = None) -> dict[str, Any]:
    """fsspec storage options for S3; `AWS_ENDPOINT_URL` is used when no endpoint is given.

    Credentials come from the standard AWS chain (environment, profile, instance role):
    e5ray never takes or prints them. `policy`: timeouts and retries (e5ray.store.timeouts);
    S3 filesystems get the default policy when none is given.
    """
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    options: dict[str, Any] = {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}
    return with_policy(options, policy) if policy is not None else options


def filesystem_for(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[AbstractFileSystem, str]:
    """The filesystem for `uri` and the path inside it (no scheme for S3, absolute for local)."""
    uri = str(uri)
    if not is_remote(uri):
        return fsspec.filesystem("file"), str(Path(uri.removeprefix("file://")).expanduser().resolve())
    scheme = uri.split("://", 1)[0]
    options = dict(storage_options or {})
    s3fs_retries = None
    if scheme in ("s3", "s3a"):
        # reliability: every S3 call has connect/read timeouts and bounded retries
        options = with_policy(options or s3_options())
        s3fs_retries = options.pop("retries")
    # No listings cache: fsspec shares one instance per set of options in a process, and
    # its cached listings would hide what other runs wrote since (a refresh would miss
    # new shards and fail to open them, a commit would count versions from a stale list).
    options.setdefault("use_listings_cache", False)
    fs, path = fsspec.core.url_to_fs(uri, **options)
    if s3fs_retries is not None:
        fs.retries = s3fs_retries  # s3fs's own retry loop (not a constructor option): one pass
        bound_every_call(fs)  # the read timeout bounds writes too (e5ray.store.timeouts)
    return fs, path


def join(root: str, *parts: str) -> str:
    """Join path segments with '/', the separator of every fsspec filesystem."""
    out = root.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


def is_local_fs(fs: AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in LOCAL_PROTOCOLS


def feed_digest(digest: Any, fh: BinaryIO) -> None:
    """Stream an open file into `digest` in 4 MiB blocks (files may be larger than memory)."""
    for block in iter(lambda: fh.read(1 << 22), b""):
        digest.update(block)


def sha256_of(fs: AbstractFileSystem, path: str) -> str:
    """Hex sha256 of one file."""
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        feed_digest(digest, fh)
    return digest.hexdigest()


def open_known_size(fs: AbstractFileSystem, path: str, size: int) -> Any:
    """Open `path` for reading when its size is known (from a listing): an object store then
    needs no HEAD before the first read (s3fs asks for an object's details unless they are
    set), so a small file costs one GET. No ETag is set: callers check content otherwise."""
    if is_local_fs(fs):
        return fs.open(path, "rb")
    fh = fs.open(path, "rb", size=size)
    fh.details = {"name": path, "size": size, "type": "file"}
    return fh


def info_mtime(info: dict[str, Any]) -> Any:
    """The modification time in an fsspec `info` dict (its key differs by filesystem), or None."""
    return info.get("mtime") or info.get("LastModified") or info.get("last_modified")


def info_seconds(info: dict[str, Any]) -> float:
    """The modification time as seconds since the epoch (0.0 when the store gives none)."""
    value = info_mtime(info)
    if value is None:
        return 0.0
    return float(value.timestamp()) if hasattr(value, "timestamp") else float(value)


def info_etag(info: dict[str, Any]) -> str | None:
    """The ETag in an fsspec `info` dict, without its quotes, or None."""
    etag = info.get("ETag") or info.get("etag")
    return str(etag).strip('"') if etag else None


def info_stamp(info: dict[str, Any]) -> str | None:
    """What changes whenever an object is rewritten: its ETag, else its modification time."""
    etag = info_etag(info)
    if etag:
        return "etag:" + etag
    mtime = info_mtime(info)
    return None if mtime is None else f"mtime:{info_seconds(info)!r}"


def _local_temp_copy(path: str, data: bytes) -> str:
    """`data` written and synced to a temporary file beside `path`; returns its name."""
    tmp = f"{path}.tmp-{owner_tag()}-{uuid.uuid4().hex[:8]}"  # owner: see e5ray.store.tempfiles
    # The folder is made when the first write into it finds it missing: a commit writes
    # thousands of small files into a few folders, and a mkdir per file cost stat calls.
    with _in_new_folder(tmp, lambda: open(tmp, "wb")) as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def _in_new_folder(path: str, step: Callable[[], T]) -> T:
    """`step()`, which creates `path`; again after making `path`'s folder if it was missing."""
    try:
        return step()
    except FileNotFoundError:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return step()


def write_atomic(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    """Write `data` to `path` so that readers never see a partial file."""
    if is_local_fs(fs):
        os.replace(_local_temp_copy(path, data), path)
    else:
        fs.pipe_file(path, data)


def write_create_only(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    """Write `data` to `path` only if nothing is there; FileExistsError otherwise."""
    if is_local_fs(fs):
        tmp = _local_temp_copy(path, data)
        try:
            os.link(tmp, path)  # atomic, and fails if `path` exists
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            # A filesystem without hard links (some FUSE, SMB, FAT mounts): a lock that
            # every committer takes makes check-then-rename safe among e5ray runs.
            with FileLock(f"{path}.lock"):
                if os.path.exists(path):
                    raise FileExistsError(path) from None
                os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        raise
    except OSError as exc:
        if classify(exc) is not None:  # refused or unanswered: asking whether it exists would wait again
            raise
        # s3fs reports a failed `If-None-Match: *` precondition as a plain OSError.
        if "precondition" in str(exc).lower() or "pre-condition" in str(exc).lower() or fs.exists(path):
            raise FileExistsError(path) from exc
        raise


def upload_atomic(fs: AbstractFileSystem, local_file: str, path: str) -> None:
    """Move a finished local file to `path` (rename locally; a single upload to object stores)."""
    if is_local_fs(fs):
        _in_new_folder(path, lambda: os.replace(local_file, path))
    else:
        fs.put_file(local_file, path)
        os.unlink(local_file)


class OutputDir:
    """An output root and the filesystem it lives on, made once per process.

    Every driver-side step (listing versions, reading markers, committing, verifying,
    collecting garbage) goes through one handle instead of rebuilding the filesystem
    from a URI and storage options. Workers make their own from the URI (see
    `e5ray.worker.worker`): a handle holds a live filesystem, which must not cross processes.
    """

    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None) -> None:
        self.uri = str(uri)
        self.storage_options = dict(storage_options) if storage_options else None  # to rebuild it elsewhere
        self.fs, self.root = filesystem_for(self.uri, storage_options)

    def __repr__(self) -> str:
        return f"OutputDir({self.uri!r})"

    def __reduce__(self) -> Any:
        raise TypeError(f"{self!r} holds a live filesystem; ship its URI to workers, not the handle")

    @property
    def is_local(self) -> bool:
        return is_local_fs(self.fs)

    def path(self, rel: str) -> str:
        """The filesystem path of `rel` (a path relative to the output root)."""
        return join(self.root, rel)

    def rel(self, path: str) -> str:
        """The path relative to the root of a filesystem path under it."""
        return path[len(self.root.rstrip("/")) + 1 :]

    def exists(self, rel: str = "") -> bool:
        return bool(self.fs.exists(self.path(rel) if rel else self.root))

    def read_bytes(self, rel: str) -> bytes:
        # One GET: opening the file, or s3fs' cat_file without a range, first asks for its size
        # (a HEAD on S3), which doubled the requests of a resume's marker reads (measured by
        # python -m e5ray.bench driver). An open-ended range needs no size. What is read this way
        # (markers, manifests) is JSON, never an empty file.
        return bytes(self.fs.cat_file(self.path(rel), start=0))

    def size(self, rel: str) -> int:
        return int(self.fs.size(self.path(rel)))

    def stamp(self, rel: str) -> str | None:
        """The file's `info_stamp`, as a listing of the output reports it."""
        return info_stamp(self.fs.info(self.path(rel)))

    def sha256(self, rel: str) -> str:
        return sha256_of(self.fs, self.path(rel))

    def write_atomic(self, rel: str, data: bytes) -> None:
        write_atomic(self.fs, self.path(rel), data)

    def write_create_only(self, rel: str, data: bytes) -> None:
        write_create_only(self.fs, self.path(rel), data)

    def upload(self, local_file: str, rel: str) -> None:
        upload_atomic(self.fs, local_file, self.path(rel))

    def remove(self, rel: str) -> None:
        self.fs.rm_file(self.path(rel))
