"""Checks that run before any worker or cluster starts, each failing with one line.

- The output must not lie inside the input, nor the input inside the output: a refresh
  would read the job's own shards and manifest as corpus shards, or write into the corpus.
- The id, text and kept columns must exist in the corpus (checked on the first readable
  shard of each format: a wrong `--text-column` is a usage error, found in a second, not
  after the model loaded). JSON lines may leave fields out, so there the fields of the
  first lines are checked, and kept columns not at all (a missing one is written as
  null). A shard that cannot be read at all is left to the workers, which report it
  with its file.
- A local output must be creatable and writable.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pyarrow.parquet as pq

from e5ray.corpus.peek import head_records
from e5ray.corpus.sources import SourceShard
from e5ray.errors import UsageError
from e5ray.store.filesystem import filesystem_for, is_remote


class PreflightError(UsageError):
    """A setting cannot work with this input or output; the message names it (exit code 2)."""


def _location(uri: str, storage_options: dict[str, Any] | None) -> tuple[str, str]:
    """(scheme, normalised path) for comparing where two URIs point."""
    scheme = uri.split("://", 1)[0] if is_remote(uri) else "file"
    _, path = filesystem_for(uri, storage_options)
    if scheme == "file":
        path = os.path.realpath(path)
    return scheme, path.rstrip("/")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def check_disjoint(input_uri: str, output_uri: str, storage_options: dict[str, Any] | None = None) -> None:
    """Refuse an output inside the input (or the same place), and an input inside the output."""
    in_scheme, in_path = _location(input_uri, storage_options)
    out_scheme, out_path = _location(output_uri, storage_options)
    if in_scheme != out_scheme:
        return
    globbed = any(ch in in_path for ch in "*?[")
    base = in_path[: min(in_path.find(ch) for ch in "*?[" if ch in in_path)].rstrip("/") if globbed else in_path
    if globbed and "**" not in in_path:
        base_is_read = False  # a one-level glob does not reach into a subdirectory
    else:
        base_is_read = True
    if base_is_read and _inside(out_path, base):
        raise PreflightError(
            f"--output {output_uri} is inside --input {input_uri}: the next run would read its own output as "
            "corpus shards; choose an output outside the input"
        )
    if _inside(base if globbed else in_path, out_path):
        raise PreflightError(
            f"--input {input_uri} is inside --output {output_uri}: the job would write into its corpus; "
            "choose an output outside the input"
        )


def shard_columns(source: SourceShard, storage_options: dict[str, Any] | None = None) -> list[str] | None:
    """The column names of a shard (Parquet schema, or the keys of its first JSON records); None if unreadable."""
    try:
        if source.format == "parquet":
            fs, path = filesystem_for(source.uri, storage_options)
            with fs.open(path, "rb") as fh:
                return list(pq.read_schema(fh).names)
        names: dict[str, None] = {}
        for row in head_records(source, storage_options):  # a malformed line is a rejected row, not a wrong flag
            names.update(dict.fromkeys(row))
        return list(names) or None
    except Exception:  # unreadable: the worker reports it with the file
        return None


def check_columns(
    sources: list[SourceShard],
    columns: list[tuple[str, str]],
    storage_options: dict[str, Any] | None = None,
    probe: int = 3,
) -> None:
    """`columns`: (flag, column name) pairs; flag `--keep-columns` is checked on Parquet
    only. Checked on the first readable shard of each format."""
    seen_formats: set[str] = set()
    tried = 0
    for source in sources:
        if source.format in seen_formats or tried >= probe * 2:
            continue
        tried += 1
        names = shard_columns(source, storage_options)
        if names is None:
            continue
        seen_formats.add(source.format)
        missing = [
            (flag, col)
            for flag, col in columns
            if col not in names and (source.format == "parquet" or flag != "--keep-columns")
        ]
        if missing:
            what = ", ".join(f"{flag} {col!r}" for flag, col in missing)
            raise PreflightError(
                f"{what} not in {source.relpath}; its columns: {', '.join(names[:30])}"
                + (" ..." if len(names) > 30 else "")
            )


def check_output_writable(output_uri: str, create: bool = True) -> None:
    """A local output's directory can be created and written (object stores: left to the
    first write). `create=False` (dry runs) only looks, writing nothing."""
    if is_remote(output_uri):
        return
    _, root = filesystem_for(output_uri)
    if os.path.exists(root) and not os.path.isdir(root):
        raise PreflightError(f"--output {output_uri} exists and is not a directory")
    if not create:
        existing = root
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
            raise PreflightError(f"--output {output_uri} is not writable: {existing} is not a writable directory")
        return
    try:
        os.makedirs(root, exist_ok=True)
        probe = os.path.join(root, f".e5ray-write-check-{uuid.uuid4().hex[:8]}")
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as exc:
        raise PreflightError(f"--output {output_uri} is not writable: {exc.strerror or exc}") from None


def preflight(
    input_uri: str,
    output_uri: str,
    sources: list[SourceShard],
    columns: list[tuple[str, str]],
    storage_options: dict[str, Any] | None = None,
    create_output: bool = True,
) -> None:
    check_disjoint(input_uri, output_uri, storage_options)
    check_columns(sources, columns, storage_options)
    check_output_writable(output_uri, create_output)
