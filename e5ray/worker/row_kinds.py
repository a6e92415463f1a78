"""A refresh's carried rows and new rows in row groups of their own.

A unit that reuses rows (`e5ray.worker.reuse_unit`) writes two kinds of rows: carried ones,
whose vector was found in the previous version's reuse index, and new ones, embedded by this
run (or a duplicate text of such a row). No row group of its output holds both kinds:
- a chunk's carried rows are written at once, as one row group, in input order;
- its new rows wait in a buffer, in input order, which is written as a row group of its own
  once it holds `flush_rows` rows, and at the end of the unit;
- a chunk whose rows are all of one kind, met with an empty buffer, is written as it is:
  a unit all carried or all new is written exactly as before (input order, one row group per
  chunk), so its bytes, and so its content-addressed name, do not change.

Why: the change feed (`e5ray.output.change_feed`, `export --to lance --incremental`) reads
a row group's `id` column first and its vectors only when it holds an upserted id. The rows
a refresh upserts are almost all new rows (an edited or added text), so their vectors are
decoded without the carried rows' (93% of the rows after a 5%-edit refresh). With the two
kinds mixed, every 2,048-row group held upserts and the feed decoded every vector.

Invariants: within each kind rows keep input order; the arrangement depends only on the
unit's rows and on which of them the index held, so a run repeated writes the same bytes;
the ids collected for the cross-shard duplicate check are the chunk's documents with their
input rows (`UnitWriter.collect`), whatever place a row takes in the file; memory: the
buffer holds fewer than `flush_rows` plus one chunk of rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from e5ray.corpus.sources import Chunk
from e5ray.worker.unit_rows import ChunkValidator
from e5ray.worker.unit_writer import UnitWriter

_Rows = tuple[list[Any], np.ndarray, dict[str, Any] | None]  # ids, vectors, extra columns


def _take(ids: list[Any], vectors: np.ndarray, extra: dict[str, Any] | None, mask: np.ndarray) -> _Rows:
    """The rows of (`ids`, `vectors`, `extra`) where `mask` is true, in their order."""
    picked = [i for i, keep in zip(ids, mask.tolist(), strict=True) if keep]
    columns = None
    if extra:
        arrow_mask = pa.array(mask, pa.bool_())
        columns = {
            name: values.filter(arrow_mask)
            if isinstance(values, pa.Array)
            else [v for v, keep in zip(values, mask.tolist(), strict=True) if keep]
            for name, values in extra.items()
        }
    return picked, vectors[mask], columns


def _concat_column(parts: list[Any]) -> Any:
    """One column of several buffered pieces: an Arrow array when every piece is one of the
    same type, else Python values (the sink infers or casts them, as for any chunk)."""
    if all(isinstance(p, pa.Array) for p in parts) and len({p.type for p in parts}) == 1:
        return pa.concat_arrays(parts)
    return [v for p in parts for v in (p.to_pylist() if isinstance(p, pa.Array) else p)]


class KindSeparatingWriter:
    """Writes a reusing unit's chunks through `writer` so that no row group mixes carried and new rows."""

    def __init__(self, writer: UnitWriter, flush_rows: int) -> None:
        if flush_rows < 1:
            raise ValueError(f"flush_rows must be at least 1, got {flush_rows}")
        self.writer, self.flush_rows = writer, flush_rows
        self.pending: list[_Rows] = []
        self.pending_rows = 0

    def write(
        self,
        validator: ChunkValidator,
        chunk: Chunk,
        good: list[int],
        vectors: np.ndarray,
        extra: dict[str, Any] | None,
        carried: np.ndarray,
    ) -> None:
        """A chunk's good rows (`good`: their positions in `chunk`; `carried[i]`: row i's vector
        came from the previous version)."""
        ids = [chunk.ids[p] for p in good]
        self.writer.collect(chunk, good)
        one_kind = bool(carried.all() or not carried.any())
        if one_kind and not self.pending:  # as before: the chunk as it is, one row group
            self.writer.write_rows(validator, ids, vectors, extra)
            return
        if carried.any():
            self.writer.write_rows(validator, *_take(ids, vectors, extra, carried))
        if not carried.all():
            new = _take(ids, vectors, extra, ~carried)
            self.pending.append(new)
            self.pending_rows += len(new[0])
        if self.pending_rows >= self.flush_rows:
            self.flush(validator)

    def flush(self, validator: ChunkValidator | None) -> None:
        """Write the buffered new rows as one row group (nothing when none wait)."""
        if not self.pending or validator is None:
            return
        ids = [i for piece in self.pending for i in piece[0]]
        vectors = np.concatenate([piece[1] for piece in self.pending])
        extra = None
        if self.pending[0][2]:
            names = list(self.pending[0][2])
            extra = {name: _concat_column([piece[2][name] for piece in self.pending if piece[2]]) for name in names}
        self.pending, self.pending_rows = [], 0
        self.writer.write_rows(validator, ids, vectors, extra)
