"""Discovery: listing the source shards of an input (directory, prefix, glob or file).

Invariants: shards come back sorted by path, so every run sees one corpus in one order
(duplicate-id precedence and unit planning depend on it); hidden files and markers such as
`_SUCCESS` (any path part starting with `.` or `_`) are never shards; a file whose format
is unknown is skipped, but an input with no shard at all is an error that says what it
found. Each shard's stamp is what the store offers (ETag, else mtime) and only where it
offers neither a content hash, which reads the whole file.
"""

from __future__ import annotations

from typing import Any

from e5ray.corpus.formats import EXTENSIONS, FORMATS, format_of
from e5ray.corpus.shard import SourceShard
from e5ray.errors import CorpusError
from e5ray.store.filesystem import filesystem_for, info_etag, info_mtime, is_remote, sha256_of


def _stamp(fs: Any, path: str, info: dict[str, Any]) -> str:
    etag = info_etag(info)
    if etag:
        return "etag:" + etag
    mtime = info_mtime(info)
    if mtime is not None:
        if hasattr(mtime, "timestamp"):
            return f"mtime:{mtime.timestamp():.6f}"
        return f"mtime:{int(float(mtime) * 1e9) if isinstance(mtime, float) else mtime}"
    return "sha256:" + sha256_of(fs, path)


def _listed(fs: Any, root: str, input_uri: str, storage_options: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """The files of `root` (a glob, a file or a directory) with their info, and the base
    folder that their relative paths start from. One `info` call decides what `root` is:
    fsspec's `isfile`/`isdir` read every error as "no", so a store that does not answer
    would cost a timeout per question before the listing itself waited out another."""
    if any(ch in root for ch in "*?["):
        found = fs.glob(root, detail=True)
        infos = {p: info for p, info in found.items() if info.get("type") == "file"}
        return infos, root[: min(root.find(ch) for ch in "*?[" if ch in root)].rsplit("/", 1)[0]
    refused: PermissionError | None = None
    try:
        info = fs.info(root)
    except FileNotFoundError:
        info = {}
    except PermissionError as exc:  # a HEAD's 403 has no body to say why: the bucket's listing does
        info, refused = {}, exc
    kind = info.get("type")
    if kind == "file":
        return {root: info}, root.rsplit("/", 1)[0]
    if kind == "directory":
        return fs.find(root, detail=True), root
    from e5ray.store.failures import check_bucket

    check_bucket(input_uri, storage_options, "listing the input")  # a missing bucket or bad credentials say so
    if refused is not None:
        raise refused
    raise CorpusError(f"input {input_uri!r} does not exist")


def discover(
    input_uri: str, fmt: str | None = None, storage_options: dict[str, Any] | None = None
) -> list[SourceShard]:
    """List the source shards of `input_uri` (a directory, prefix, glob or single file)."""
    if fmt is not None and fmt not in FORMATS:
        raise CorpusError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    fs, root = filesystem_for(input_uri, storage_options)
    scheme = input_uri.split("://", 1)[0] + "://" if is_remote(input_uri) else ""
    infos, base = _listed(fs, root, input_uri, storage_options)
    shards = []
    skipped = []
    for path, info in sorted(infos.items()):
        rel = path[len(base.rstrip("/")) + 1 :] if path.startswith(base) else path.rsplit("/", 1)[-1]
        if any(part.startswith((".", "_")) for part in rel.split("/")):
            continue  # hidden files and markers such as _SUCCESS
        shard_fmt = fmt or format_of(path)
        if shard_fmt is None:
            skipped.append(rel)
            continue
        shards.append(SourceShard(scheme + path, rel, int(info.get("size") or 0), _stamp(fs, path, info), shard_fmt))
    if not shards:
        raise CorpusError(
            f"no corpus shards under {input_uri!r}: expected files ending in {', '.join(EXTENSIONS)}"
            + (f"; found only {skipped[:10]}" if skipped else "")
            + " (use --format to read other names)"
        )
    return shards
