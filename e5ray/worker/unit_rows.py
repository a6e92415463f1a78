"""Which rows of a work unit can be embedded: one validated-chunks generator for both
the plain path (`e5ray.worker.embed_unit.embed_shard`) and the row-reusing one (`e5ray.worker.reuse_unit`).

A row is rejected, with its location and the reason, never dropped silently: a null or
non-string/empty text, a null id, an id of another type than the shard's first, an id
repeated in the shard, and the row rules of `e5ray.corpus.rows` (invalid Unicode unless
`--on-invalid-utf8 replace`, ids outside int64). Every id goes through
`e5ray.corpus.rows.normalise_id` before any check (floats, decimals and bytes converted by
its rule, or the row rejected with the reason; `--id-type string` turns every id into
text), so both paths see the same ids and no raw Arrow error fails a shard.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from e5ray.corpus.rows import id_problem, normalise_id, output_id_type, repair_text, unicode_problem
from e5ray.corpus.sources import Chunk, read_chunks

if TYPE_CHECKING:
    from e5ray.worker.task import ShardTask


class ChunkValidator:
    """Decides, row by row, what can be embedded; remembers ids to catch duplicates."""

    def __init__(self, declared_id_type: pa.DataType | None = None, on_invalid_utf8: str = "reject") -> None:
        self.seen: set[Any] = set()
        self.id_kind: type | None = None  # JSONL: the Python type of the shard's first good id
        self.declared = declared_id_type
        self.repair = on_invalid_utf8 == "replace"

    def text_for(self, text: str) -> str:
        """The text to embed for a row that passed `check` (repaired under --on-invalid-utf8 replace)."""
        return repair_text(text) if self.repair else text

    def check(self, id_value: Any, text: Any) -> str | None:
        """None if the row can be embedded, else the reason it cannot."""
        if id_value is None:
            return "null id"
        if self.declared is None:
            kind = int if isinstance(id_value, int) and not isinstance(id_value, bool) else type(id_value)
            if kind not in (int, str):
                return f"id {id_value!r:.60} is a {type(id_value).__name__}; ids must be integers or strings"
            if self.id_kind is None:
                self.id_kind = kind
            elif kind is not self.id_kind:
                return f"id {id_value!r:.60} is a {kind.__name__}, but this shard's ids are {self.id_kind.__name__}"
        if text is None:
            return "null text"
        if not isinstance(text, str):
            return f"text is a {type(text).__name__}, not a string"
        if not text.strip():
            return "empty text"
        problem = id_problem(id_value) or (None if self.repair else unicode_problem(text))
        if problem:
            return problem
        hashable = id_value if not isinstance(id_value, (list, dict)) else json.dumps(id_value, sort_keys=True)
        if hashable in self.seen:
            return "duplicate id in this shard"
        self.seen.add(hashable)
        return None

    def id_type(self) -> pa.DataType:
        if self.declared is not None:
            return self.declared
        return pa.string() if self.id_kind is str else pa.int64()


def kept_columns(chunk: Chunk, good: list[int]) -> dict[str, Any] | None:
    """The kept columns' values of the rows that were embedded."""
    if not chunk.extra:
        return None
    index = pa.array(good, type=pa.int64())
    return {
        name: values.take(index) if isinstance(values, pa.Array) else [values[p] for p in good]
        for name, values in chunk.extra.items()
    }


def json_safe(value: Any) -> Any:
    if isinstance(value, str):  # lone surrogates (invalid UTF-8) cannot be written as UTF-8: escape them
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def normalise_ids(chunk: Chunk, id_type: str) -> None:
    """Every id of `chunk` as the output stores it (`e5ray.corpus.rows.normalise_id`); a row
    whose id has no such form keeps its raw id, for the rejects file, and gets its reason."""
    for pos, raw in enumerate(chunk.ids):
        if pos in chunk.errors:
            continue
        value, problem = normalise_id(raw, id_type)
        if problem is None:
            chunk.ids[pos] = value
        else:
            chunk.errors[pos] = problem
    if chunk.id_type is not None:
        chunk.id_type = output_id_type(chunk.id_type, id_type)


def validated_chunks(
    task: ShardTask, chunk_rows: int, storage_options: dict[str, Any] | None, rejects: list[dict[str, Any]] | None
) -> Iterator[tuple[Chunk, list[int], ChunkValidator]]:
    """(chunk, positions of its good rows, validator) for each chunk of the task's unit;
    rejected rows go to `rejects` (when given) with their location and reason."""
    validator: ChunkValidator | None = None
    chunks = read_chunks(
        task.source, task.id_column, task.text_column, chunk_rows, storage_options, task.unit, task.keep_columns
    )
    for chunk in chunks:
        normalise_ids(chunk, task.id_type)
        if validator is None:
            validator = ChunkValidator(chunk.id_type, task.on_invalid_utf8)
        good: list[int] = []
        for pos, (id_value, text) in enumerate(zip(chunk.ids, chunk.texts, strict=False)):
            reason = chunk.errors.get(pos) or validator.check(id_value, text)
            if reason is None:
                good.append(pos)
            elif rejects is not None:
                rejects.append({**chunk.locate(pos), "id": json_safe(id_value), "reason": reason})
        yield chunk, good, validator
