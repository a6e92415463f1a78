"""A chunk: consecutive raw rows of a shard, as every format's reader yields them.

Invariants: `ids`, `texts` and each kept column in `extra` have one entry per row, in
file order; rows are unvalidated (`e5ray.corpus.rows` and the worker decide what can be
embedded), except that a row which could not even be parsed has None id and text and its
reason in `errors`. `locate` names a row the way the rejects file reports it. Readers
stream chunks of a bounded size, so memory does not grow with the shard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from e5ray.corpus.units import UnitRange


@dataclass
class Chunk:
    """Consecutive raw rows of a shard: `ids` and `texts` as Python values, unvalidated.

    `errors` holds, by position, a reason for rows that could not even be parsed
    (malformed JSON line); such rows have None id and text.
    """

    start: int  # row number of the first row in the shard (in the unit, for a JSONL byte range)
    ids: list[Any]
    texts: list[Any]
    errors: dict[int, str]
    id_type: pa.DataType | None = None  # the column's declared type (Parquet only)
    offsets: list[int] | None = None  # JSONL byte ranges: each row's byte offset in the file
    # Kept columns (--keep-columns) by name: Arrow arrays from Parquet (types kept), lists from JSONL.
    extra: dict[str, Any] = field(default_factory=dict)

    def locate(self, pos: int) -> dict[str, int]:
        """Where row `pos` of this chunk is in its file: {"row": n} or, in a byte range, {"offset": b}."""
        if self.offsets is not None:
            return {"offset": self.offsets[pos]}
        return {"row": self.start + pos}


# A format's reader: (fs, path, uri, id_column, text_column, chunk_rows, unit, keep) -> chunks.
Reader = Callable[[Any, str, str, str, str, int, UnitRange | None, tuple[str, ...]], Iterator[Chunk]]
