"""A work unit's files reach the output: data files, rejects, ids, and the marker last.

Every name carries a prefix of its content's sha256, so a name always denotes one
content, and each file reaches its final name atomically (rename or one PUT): a killed
worker leaves at most temporary files, which nothing references and gc removes. The
completion marker is written last: its presence means every file it names is complete
(`e5ray.job.resume` reuses it). Folders: `e5ray.output.layout`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import fsspec

from e5ray.output.content_hash import HASH_COLUMN, SCHEME, hash_array, hash_token_ids
from e5ray.output.dupes import IDS_SUFFIX, IdCollector
from e5ray.output.layout import IDS_DIR, REJECTS_DIR, SHARDS_DIR
from e5ray.output.manifest import FileRef, ShardEntry
from e5ray.output.sinks.base import HashingFile, ShardSink, SinkFile
from e5ray.store.filesystem import OutputDir, info_stamp, sha256_of

if TYPE_CHECKING:
    from e5ray.store.stream_upload import StreamingUpload
    from e5ray.worker.task import ShardTask


@dataclass
class ShardStats:
    input_rows: int = 0
    embedded: int = 0  # documents
    rows: int = 0  # output rows: one per window in chunk mode, else one per document
    windows: int = 0
    rejected: int = 0
    truncated: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    embed_seconds: float = 0.0


def hash_columns(
    sink: ShardSink, token_ids: list[list[int]] | None = None, hashes: list[bytes] | None = None
) -> dict[str, Any] | None:
    """The content_hash column for `sink` (of `hashes`, or of the rows' `token_ids`), or
    None for a sink whose files do not carry hashes (row-level refresh reads Parquet only)."""
    if sink.format != "parquet":
        return None
    return {HASH_COLUMN: hash_array(hashes if hashes is not None else hash_token_ids(token_ids or []))}


def hash_scheme_of(sink: ShardSink) -> str | None:
    return SCHEME if sink.format == "parquet" else None


def commit_unit(
    task: ShardTask,
    output: OutputDir,
    files: list[SinkFile],
    rejects: list[dict[str, Any]],
    stats: ShardStats,
    seconds: float,
    mode: str = "truncate",
    reuse: dict[str, Any] | None = None,
    hash_scheme: str | None = None,
    collected: IdCollector | None = None,  # e5ray.output.dupes: the ids embedded, for the cross-shard check
    id_type: str | None = None,  # e5ray.corpus.rows
    streamed: StreamingUpload | None = None,  # a data file already going up (e5ray.store.stream_upload)
) -> ShardEntry:
    refs = [_commit_file(task, output, file, streamed) for file in files]
    # The side files are named after the first data file's content, as the data files are.
    side_stem = f"{task.stem}-{refs[0].sha256[:12]}"
    rejects_ref = _commit_rejects(output, f"{REJECTS_DIR}/{side_stem}", rejects) if rejects else None
    ids_ref = _commit_ids(output, f"{IDS_DIR}/{side_stem}", collected) if collected else None
    entry = ShardEntry(
        files=tuple(refs),
        rows=stats.rows,
        input_rows=stats.input_rows,
        rejected=stats.rejected,
        truncated=stats.truncated,
        tokens=stats.tokens,
        padded_tokens=stats.padded_tokens,
        seconds=round(seconds, 3),
        embed_seconds=round(stats.embed_seconds, 3),
        source=task.source,
        key=task.key,
        space_fingerprint=task.space_fingerprint,
        rejects=rejects_ref,
        ids=ids_ref,
        id_type=id_type,
        unit=task.unit,
        # rows are windows (chunk), or documents made of several windows (average)
        documents=stats.embedded if mode != "truncate" else None,
        windows=stats.windows if mode != "truncate" else None,
        hash_scheme=hash_scheme,
        reuse=reuse,
    )
    # The marker goes last: its presence means every file it names is complete.
    output.write_atomic(task.marker_path, json.dumps(entry.to_dict(), indent=1).encode())
    return entry


def _commit_file(task: ShardTask, output: OutputDir, file: SinkFile, streamed: StreamingUpload | None) -> FileRef:
    """One data file at its content-addressed name: placed where it was streamed to, else moved."""
    sent = streamed.finish() if streamed is not None and streamed.local_path == file.local_path else None
    sha = sent[0] if sent is not None else file.sha256 or sha256_of(fsspec.filesystem("file"), file.local_path)
    if sent is not None and file.sha256 is not None and file.sha256 != sha:
        raise OSError(f"{file.local_path}: the bytes uploaded hash to {sha}, the bytes written to {file.sha256}")
    name = f"{SHARDS_DIR}/{task.stem}-{sha[:12]}{file.suffix}"
    if sent is not None and streamed is not None:  # its parts went up while it was written
        streamed.place(name)
        os.unlink(file.local_path)
        size, stamp = sent[1], output.stamp(name)
    else:
        size, stamp = _move(output, file.local_path, name)
    return FileRef(name, size, sha, file.rows, stamp)


def _commit_rejects(output: OutputDir, stem: str, rejects: list[dict[str, Any]]) -> FileRef:
    """The unit's rejects file (one JSON record per rejected row), written atomically."""
    blob = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects).encode()
    name = f"{stem}.rejects.jsonl"
    output.write_atomic(name, blob)
    return FileRef(name, len(blob), hashlib.sha256(blob).hexdigest(), len(rejects), output.stamp(name))


def _move(output: OutputDir, local_path: str, rel: str) -> tuple[int, str | None]:
    """Move a finished local file to `rel`; its size and the stamp a listing will show.

    A rename keeps the file's mtime, so for a local output the stamp comes from the one
    stat taken before the move; an object store's ETag is only known once it is stored."""
    st = os.stat(local_path)
    output.upload(local_path, rel)
    stamp = info_stamp({"mtime": st.st_mtime}) if output.is_local else output.stamp(rel)
    return st.st_size, stamp


def _commit_ids(output: OutputDir, stem: str, collected: IdCollector) -> FileRef:
    """The unit's ids file (e5ray.output.dupes), in `ids/`: hashed while written, synced, then moved."""
    directory = output.path(IDS_DIR) if output.is_local else None  # local: the commit is a rename
    try:
        fd, local_path = tempfile.mkstemp(prefix=".ids-", suffix=".tmp", dir=directory)
    except FileNotFoundError:  # the output's first ids file
        if directory is None:
            raise
        os.makedirs(directory, exist_ok=True)
        fd, local_path = tempfile.mkstemp(prefix=".ids-", suffix=".tmp", dir=directory)
    file = HashingFile(fd)
    try:
        collected.write(file)
        file.close()  # synced before the marker can name it
        name = f"{stem}{IDS_SUFFIX}"
        size, stamp = _move(output, local_path, name)
    except BaseException:
        file.discard()
        if os.path.exists(local_path):
            os.unlink(local_path)
        raise
    return FileRef(name, size, file.hexdigest(), len(collected.keys), stamp)
