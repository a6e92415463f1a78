"""The embedding space: everything that decides where a vector lands.

Two vectors are comparable only if every field here is equal. The manifest records
the space and a refresh refuses to mix vectors from two spaces. `pooling` and
`normalized` are filled in by the embedder from what it actually computes
(`e5ray.model.pooling`), never assumed.

Fields added later (`long_text`, `stride`: e5ray.model.windows) enter the canonical form, and
so the fingerprint, only when they differ from the behaviour that preceded them
(truncation): an output written before they existed keeps its fingerprint, and a
truncating run today still extends it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, cast

from e5ray.errors import UsageError

Prefix = Literal["passage", "query", "none"]
# The string E5 was trained to see before each text of a kind.
PREFIXES: dict[str, str] = {"passage": "passage: ", "query": "query: ", "none": ""}


def prefix_text(prefix: Prefix) -> str:
    """The string E5 expects before each text for `prefix` ('passage', 'query' or 'none')."""
    try:
        return PREFIXES[prefix]
    except KeyError:
        raise UsageError(f"unknown prefix {prefix!r}; valid: {', '.join(PREFIXES)}") from None


def as_prefix(value: str) -> Prefix:
    """`value` checked to be a prefix name (for values that arrive as plain strings)."""
    prefix_text(cast(Prefix, value))
    return cast(Prefix, value)


# Later fields and the value that reproduces the earlier behaviour.
_LEGACY_DEFAULTS: dict[str, Any] = {"long_text": "truncate", "stride": 0}


@dataclass(frozen=True)
class EmbeddingSpace:
    model: str
    model_sha256: str
    dim: int
    max_length: int
    pooling: str
    normalized: bool
    precision: str = "fp32"
    prefix: str = "passage"
    long_text: str = "truncate"
    stride: int = 0  # tokens of overlap between windows; 0 when long_text is truncate

    def with_prefix(self, prefix: str) -> EmbeddingSpace:
        return replace(self, prefix=prefix)

    def canonical(self) -> dict[str, Any]:
        """Every field, minus later fields at their legacy value (see the module docstring)."""
        return {k: v for k, v in asdict(self).items() if k not in _LEGACY_DEFAULTS or v != _LEGACY_DEFAULTS[k]}

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the fields."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingSpace:
        fields = {k: v for k, v in data.items() if k != "fingerprint"}
        space = cls(**fields)
        if "fingerprint" in data and data["fingerprint"] != space.fingerprint:
            raise ValueError(f"embedding space fingerprint {data['fingerprint']} does not match its fields")
        return space

    def differences(self, other: EmbeddingSpace) -> dict[str, tuple[Any, Any]]:
        """Field -> (self's value, other's value) for every field that differs."""
        mine, theirs = asdict(self), asdict(other)
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
