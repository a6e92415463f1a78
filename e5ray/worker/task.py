"""The task: everything a worker needs to embed one work unit, as plain picklable data.

The driver plans tasks (`e5ray.job.plan`) and the worker runs them (`e5ray.worker.embed_unit`);
this module is the whole of what passes between the two. A task's `key` hashes what decides
the output's content (source fingerprint, space, columns, format, row rules), so a completion
marker (`marker_path`) is only ever reused for the very same work; the row-level reuse
settings and the scheduling weight are left out of it, since the output is the same either way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from e5ray.corpus.sources import SourceShard
from e5ray.corpus.units import UnitRange
from e5ray.model.space import Prefix
from e5ray.output.layout import MARKERS_DIR, SHARDS_DIR
from e5ray.output.manifest import DEFAULT_OUTPUT_FORMAT


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs to embed one unit (plain data, picklable)."""

    source: SourceShard
    space_fingerprint: str
    id_column: str = "id"
    text_column: str = "text"
    prefix: Prefix = "passage"
    output_format: str = DEFAULT_OUTPUT_FORMAT
    on_invalid_utf8: str = "reject"  # e5ray.corpus.rows
    id_type: str = "auto"  # e5ray.corpus.rows
    unit: UnitRange | None = None  # None: the whole source shard
    weight: int = 0  # estimated tokens, to order and group tasks (not part of the key)
    keep_columns: tuple[str, ...] = ()  # input columns copied into the output
    # Row-level reuse (e5ray.worker.reuse_unit); not part of `key`: the output is the same either way.
    reuse_rows: bool = False  # fold duplicate texts and look rows up in `reuse_index`
    reuse_index: str | None = None  # the previous version's reuse index, relative to the output root

    @property
    def key(self) -> str:
        parts = [
            self.source.uri,
            self.source.fingerprint,
            self.space_fingerprint,
            self.id_column,
            self.text_column,
            self.prefix,
        ]
        # Parquet keys stay what they were before sinks had names, so older outputs are reused.
        if self.output_format != DEFAULT_OUTPUT_FORMAT:
            parts.append(self.output_format)
        # Row rules change the output only when not the defaults; default keys stay as they were.
        if self.on_invalid_utf8 != "reject":
            parts.append(f"utf8={self.on_invalid_utf8}")
        if self.id_type != "auto":
            parts.append(f"ids={self.id_type}")
        if self.keep_columns:  # other columns, other files (and keys of runs without them unchanged)
            parts.append("keep:" + ",".join(self.keep_columns))
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source.to_dict(),
            "space_fingerprint": self.space_fingerprint,
            "id_column": self.id_column,
            "text_column": self.text_column,
            "prefix": self.prefix,
            "output_format": self.output_format,
            "on_invalid_utf8": self.on_invalid_utf8,
            "id_type": self.id_type,
            "unit": self.unit.to_dict() if self.unit else None,
            "weight": self.weight,
            "keep_columns": list(self.keep_columns),
            "reuse_rows": self.reuse_rows,
            "reuse_index": self.reuse_index,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardTask:
        return cls(
            **{
                **data,
                "source": SourceShard.from_dict(data["source"]),
                "unit": UnitRange.from_dict(data.get("unit")),
                "keep_columns": tuple(data.get("keep_columns", ())),
            }
        )

    def with_unit(self, unit: UnitRange | None, weight: int) -> ShardTask:
        return dataclasses.replace(self, unit=unit, weight=weight)

    @property
    def stem(self) -> str:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", self.source.relpath)
        if self.unit is not None:
            name = f"{name}-{self.unit.label}"
        return f"{name}-{self.key}"

    @property
    def marker_path(self) -> str:
        return f"{MARKERS_DIR}/{self.stem}.done.json"

    @property
    def legacy_marker_path(self) -> str:
        """Where outputs written before the markers/ folder keep this task's marker."""
        return f"{SHARDS_DIR}/{self.stem}.done.json"
