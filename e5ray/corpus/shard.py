"""A source shard: one input file of the corpus and what identifies its content.

Invariant: the fingerprint is a function of the size and the stamp alone (ETag, mtime in
ns, or a content hash where the store gives neither), so two listings of an unchanged file
agree and a changed file gets a new fingerprint; completion markers and refresh plans key
on it. Kept apart from discovery and the readers because every layer above passes shards
around (plans, tasks, manifests) without listing or reading anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SourceShard:
    """One input file and what identifies its content."""

    uri: str
    relpath: str  # path below the input root; names the output shard
    size: int
    stamp: str  # ETag, mtime in ns, or "sha256:<hex>" where the store gives neither
    format: str

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.size}|{self.stamp}".encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceShard:
        return cls(**{k: data[k] for k in ("uri", "relpath", "size", "stamp", "format")})
