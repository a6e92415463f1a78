"""The manifest's records: what an output holds, how it was made, from what.

Typed records with `to_dict`/`from_dict` (as `SourceShard` and `EmbeddingSpace`): the
JSON on disk is their `to_dict`, and nothing reads the manifest by string keys.

Format `e5ray.manifest/2` (this one): each shard entry lists its `files` (a sink may
write several, or a directory), and `output.format` names the sink that wrote them.
Format 1 entries had a single `path`/`bytes`/`sha256`; they are converted on load, so
outputs written before keep refreshing, verifying and collecting garbage.
Storing and versioning manifests is `e5ray.output.versions`.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import asdict, dataclass, field
from typing import Any

from e5ray.corpus.sources import SourceShard
from e5ray.corpus.units import UnitRange
from e5ray.errors import SpaceMismatchError
from e5ray.model.space import EmbeddingSpace
from e5ray.output.change_file import KEY as ROW_CHANGES
from e5ray.output.change_file import change_totals

FORMAT = "e5ray.manifest/2"
READABLE_FORMATS = ("e5ray.manifest/1", FORMAT)
DEFAULT_OUTPUT_FORMAT = "parquet"  # what every format-1 manifest holds


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    # Cached: dataclasses.fields() was half the time of loading 100,000 entries.
    return frozenset(f.name for f in dataclasses.fields(cls))


@functools.cache
def _field_order(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The keys of `data` that are fields of `cls` (newer writers may add keys)."""
    names = _field_names(cls)
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class FileRef:
    """One file of an output, by its path relative to the output root."""

    path: str
    bytes: int
    sha256: str
    rows: int | None = None
    stamp: str | None = None  # ETag or mtime when written: a resume compares it with a listing

    def to_dict(self) -> dict[str, Any]:
        out = {"path": self.path, "bytes": self.bytes, "sha256": self.sha256, "rows": self.rows}
        if self.stamp is not None:
            out["stamp"] = self.stamp
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileRef:
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True)
class ShardEntry:
    """The output of one source shard: its files, counts, and what it was made from."""

    files: tuple[FileRef, ...]
    rows: int
    input_rows: int
    rejected: int
    truncated: int
    tokens: int
    padded_tokens: int
    seconds: float
    embed_seconds: float
    source: SourceShard
    key: str
    space_fingerprint: str
    rejects: FileRef | None = None
    # e5ray.output.dupes and e5ray.corpus.rows: the shard's ids file (hashed ids, for the cross-shard
    # check), their type, and the rows rejected because an earlier shard holds their ids
    ids: FileRef | None = None
    id_type: str | None = None
    duplicates: int = 0
    duplicates_of: tuple[str, ...] = ()  # source URIs of the shards that kept those ids
    unit: UnitRange | None = None  # the range of the source this entry holds; None: all of it
    # Row-level refresh (e5ray.refresh.prepare): the scheme of the files' content_hash column
    # (None: written before it existed), and rows_reused/rows_embedded/duplicates_folded.
    hash_scheme: str | None = None
    reuse: dict[str, Any] | None = None
    # Long texts cut into windows (chunk, average): documents embedded and windows run.
    # `rows` counts output rows: windows in chunk mode, documents otherwise.
    documents: int | None = None
    windows: int | None = None

    @property
    def embedded_documents(self) -> int:
        """Documents this shard embedded (input rows that were not rejected)."""
        return self.rows if self.documents is None else self.documents

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def refs(self) -> list[FileRef]:
        """Every file this entry references: the embedding files, the rejects and ids files."""
        return [*self.files, *(ref for ref in (self.rejects, self.ids) if ref is not None)]

    def paths(self) -> list[str]:
        """Every file this entry references (the embedding files, then the rejects and ids files)."""
        return [ref.path for ref in self.refs()]

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in _field_order(ShardEntry)}
        out["files"] = [f.to_dict() for f in self.files]
        out["source"] = self.source.to_dict()
        out["rejects"] = self.rejects.to_dict() if self.rejects else None
        out["ids"] = self.ids.to_dict() if self.ids else None
        out["duplicates_of"] = list(self.duplicates_of)
        out["unit"] = self.unit.to_dict() if self.unit else None
        for name in ("documents", "windows"):  # absent when texts were truncated, as before
            if out[name] is None:
                del out[name]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardEntry:
        values = _known_fields(cls, data)
        if "files" in data:
            values["files"] = tuple(FileRef.from_dict(f) for f in data["files"])
        else:  # format 1: a single Parquet file named by the entry itself
            values["files"] = (FileRef(data["path"], data["bytes"], data["sha256"], data["rows"]),)
        values["source"] = SourceShard.from_dict(data["source"])
        values["rejects"] = FileRef.from_dict(data["rejects"]) if data.get("rejects") else None
        values["ids"] = FileRef.from_dict(data["ids"]) if data.get("ids") else None
        values["duplicates_of"] = tuple(data.get("duplicates_of") or ())
        values["unit"] = UnitRange.from_dict(data.get("unit"))
        return cls(**values)


@dataclass(frozen=True)
class RunInfo:
    """How one run went: when, where, and how much it embedded itself."""

    id: str
    started: str
    finished: str
    seconds: float
    e5ray_version: str
    full: bool
    device: str
    executor: str
    embedded_shards: int
    reused_shards: int
    carried_shards: int
    tokens: int
    padded_tokens: int
    tokens_per_s: float
    duplicate_ids: str = "reject"  # the --duplicate-ids policy of the run (e5ray.output.dupes)
    duplicates_rejected: int = 0  # rows this run rejected as cross-shard duplicates
    reuse: dict[str, Any] | None = None  # what the run reused, embedded and read (e5ray.refresh.prepare.summarize)
    # onnxruntime, tokenizers, numpy and the lock's hash on the driver (e5ray.model.library_versions)
    libraries: dict[str, str] | None = None
    executor_reason: str | None = None  # why `--executor auto` chose `executor`; None: named by the user

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        return cls(**_known_fields(cls, data))


def totals(shards: list[ShardEntry] | tuple[ShardEntry, ...]) -> dict[str, int]:
    windowed = [s.windows for s in shards if s.windows is not None]
    return {
        "shards": len(shards),
        "input_rows": sum(s.input_rows for s in shards),
        "embedded": sum(s.embedded_documents for s in shards),
        **({"windows": sum(windowed)} if windowed else {}),
        "rejected": sum(s.rejected for s in shards),
        "duplicates": sum(s.duplicates for s in shards),
        "truncated": sum(s.truncated for s in shards),
        "tokens": sum(s.tokens for s in shards),
        "bytes": sum(s.bytes for s in shards),
    }


@dataclass(frozen=True)
class Manifest:
    """One committed version of an output."""

    version: int
    previous: str | None
    space: EmbeddingSpace
    input: dict[str, Any]
    shards: tuple[ShardEntry, ...]
    changes: dict[str, Any]
    run: RunInfo
    output_format: str = DEFAULT_OUTPUT_FORMAT
    totals: dict[str, int] = field(default_factory=dict)
    format: str = FORMAT
    # What changed row by row since the previous version (e5ray.output.change_file): its change
    # file's reference, or "replaced"; None in versions written before change files existed.
    row_changes: dict[str, Any] | None = None
    # The Parquet side file its entries were loaded from (e5ray.output.versions), if any: not part of
    # what the version says (equal manifests are equal whichever way they were stored).
    entries_file: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.totals:  # derived, never given by hand when building
            object.__setattr__(self, "totals", {**totals(self.shards), **change_totals(self.row_changes)})

    def referenced(self) -> set[str]:
        """Every shard, rejects and ids file this version references."""
        return {path for entry in self.shards for path in entry.paths()}

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": self.format,
            "version": self.version,
            "previous": self.previous,
            "space": self.space.to_dict(),
            "output": {"format": self.output_format},
            "input": self.input,
            "shards": [s.to_dict() for s in self.shards],
            "totals": self.totals,
            "changes": self.changes,
            "run": self.run.to_dict(),
        }
        if self.row_changes is not None:  # absent, as before, in versions without it
            out[ROW_CHANGES] = self.row_changes
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        fmt = data.get("format", READABLE_FORMATS[0])
        if fmt not in READABLE_FORMATS:
            raise ValueError(f"manifest format {fmt!r} is not one this e5ray reads ({', '.join(READABLE_FORMATS)})")
        return cls(
            version=data["version"],
            previous=data.get("previous"),
            space=EmbeddingSpace.from_dict(data["space"]),
            input=data.get("input", {}),
            shards=tuple(ShardEntry.from_dict(s) for s in data["shards"]),
            changes=data.get("changes", {}),
            run=RunInfo.from_dict(data["run"]),
            output_format=(data.get("output") or {}).get("format", DEFAULT_OUTPUT_FORMAT),
            totals=data.get("totals", {}),
            row_changes=data.get(ROW_CHANGES),
            format=FORMAT,  # converted: written back, if ever, in the current format
        )


def check_space(previous: Manifest | None, space: EmbeddingSpace, full: bool) -> None:
    """Refuse to add vectors of `space` to an output holding another space (unless `full`)."""
    if previous is None or full:
        return
    diff = previous.space.differences(space)
    if diff:
        details = "; ".join(f"{k}: {a!r} in the output, {b!r} now" for k, a, b in ((k, *v) for k, v in diff.items()))
        raise SpaceMismatchError(
            f"refusing to mix embedding spaces in one output ({details}). Re-embed everything into "
            "the new space as a new version with --full, or write to another output."
        )
