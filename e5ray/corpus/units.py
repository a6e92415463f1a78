"""Work units: pieces of a source shard small enough to spread over many actors.

A unit is (source, fingerprint, range). The range is one of:
- `rows`: Parquet row groups `[start, stop)` (a row group is Parquet's smallest
  independently readable piece, so such a unit never reads a byte twice);
- `slice`: Parquet rows `[start, stop)` numbered from the file's first row, inside one row
  group that is bigger than the unit target (pyarrow writes one group of up to 1,048,576
  rows by default, and many exporters one group per file). The worker streams that group's
  needed columns from its start and stops at `stop`, so the n slices of one group read
  about (n + 1) / 2 times its column bytes between them (at most `MAX_SLICES` slices a
  group bounds it); file-global row numbers need no row-group index in the manifest, and
  are the row numbers rejects report;
- `bytes`: an uncompressed JSONL byte range `[start, stop)`; the unit owns every line
  that *starts* inside it (the reader skips the partial line at `start` and finishes
  the line that crosses `stop`), so consecutive ranges cover each line exactly once
  wherever the cuts fall;
- no range (`None`): the whole file, as for `.gz` (a gzip stream cannot be entered
  midway) and for files below the target.

Each unit gets its own output file and completion marker, so exactly-once holds per
unit as it did per file. Units too small to be worth a task of their own are grouped
into one task (a `UnitGroup`) that still writes one output per unit.

Everything here is pure: sizes and row-group statistics in, ranges out. The only I/O
(reading Parquet footers) is done by the caller, in parallel.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("e5ray")

RANGE_KINDS = ("rows", "bytes", "slice")
# A token is about 4 bytes of UTF-8 text for the E5 tokenizers on English and most
# European text; used only to size units, never to count what was embedded.
BYTES_PER_TOKEN = 4
# One unit of ~1M tokens is ~5 minutes of one 2-CPU actor with e5-small (~3k tokens/s)
# and seconds on a GPU: long enough that per-unit costs (a task, two objects) vanish,
# short enough that the last unit does not leave the pool idle for long.
DEFAULT_UNIT_TOKENS = 1_000_000
DEFAULT_UNIT_ROWS = 100_000
# Small units are grouped into one task up to the target, and at most this many, so
# one task's results stay a small message.
MAX_GROUP = 256
# A pool of N actors gets units no bigger than total / (N x WAVES): a unit closes once it
# reaches its target, so units land between 1x and 2x that, and each actor gets at least
# about 4 of them. Largest first, the last wave is then short: on 3 simulated nodes, 7
# units of 3 row groups left two actors idle for a whole unit at the end.
WAVES = 8
# Below this (256 KB of text) a unit's fixed costs (a task, an output file, a marker)
# would weigh more than the balance it buys.
MIN_UNIT_TOKENS = 1 << 16
# At most this many slices of one row group: each slice reads the group's needed columns up
# to its own end, so the group is read about (n + 1) / 2 times; 32 slices bound that at 16.5x
# (see BENCHMARKS.md, "Row slices"), and give a pool of 4 actors its 8 waves.
MAX_SLICES = 32


_LABELS = {"rows": "rg", "slice": "r", "bytes": "b"}


@dataclass(frozen=True)
class UnitRange:
    """A contiguous piece of one source file, `[start, stop)`: Parquet row groups (`rows`),
    Parquet rows of one group numbered in the file (`slice`), or JSONL bytes (`bytes`)."""

    kind: str
    start: int
    stop: int

    def __post_init__(self) -> None:
        if self.kind not in RANGE_KINDS:
            raise ValueError(f"unit range kind {self.kind!r} is not valid; valid: {', '.join(RANGE_KINDS)}")
        if not 0 <= self.start < self.stop:
            raise ValueError(f"unit range [{self.start}, {self.stop}) is empty or negative")

    @property
    def label(self) -> str:
        """Part of the output's file name: `rg3-7` (row groups 3..6), `r0-8192` (rows) or `b0-1048576`."""
        return f"{_LABELS[self.kind]}{self.start}-{self.stop}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "start": self.start, "stop": self.stop}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> UnitRange | None:
        if not data:
            return None
        return cls(data["kind"], int(data["start"]), int(data["stop"]))


@dataclass(frozen=True)
class UnitTarget:
    """How big one unit should be: at most `rows` rows and about `tokens` tokens."""

    rows: int = DEFAULT_UNIT_ROWS
    tokens: int = DEFAULT_UNIT_TOKENS

    def __post_init__(self) -> None:
        if self.rows < 1 or self.tokens < 1:
            raise ValueError(f"unit target must be >= 1 row and >= 1 token, got rows={self.rows} tokens={self.tokens}")

    @property
    def bytes(self) -> int:
        return self.tokens * BYTES_PER_TOKEN


def balanced_tokens(target_tokens: int, total_tokens: int, actors: int) -> int:
    """The unit target for a pool of `actors`: at most `target_tokens`, and at most
    total / (actors x WAVES) rounded down to a power of two, never below MIN_UNIT_TOKENS.

    The rounding keeps the split the same when the pool or the corpus changes a little
    (a resume on one node fewer re-splits nothing unless the power of two changes); one
    actor needs no balance and gets the target as it is.
    """
    if actors <= 1:
        return target_tokens
    share = total_tokens // (actors * WAVES)
    cap = 1 << (share.bit_length() - 1) if share > 0 else 0
    return min(target_tokens, max(MIN_UNIT_TOKENS, cap))


def balanced_target(target: UnitTarget, total_tokens: int, actors: int) -> UnitTarget:
    """`target` with its tokens capped for a pool of `actors` (see `balanced_tokens`)."""
    return UnitTarget(target.rows, balanced_tokens(target.tokens, total_tokens, actors))


@dataclass(frozen=True)
class RowGroupStats:
    """What a Parquet footer says about one row group: its rows and text bytes (uncompressed)."""

    rows: int
    text_bytes: int


def slice_count(group: RowGroupStats, target: UnitTarget) -> int:
    """How many row slices a group is cut into: 1 up to twice the target (row-group units
    land between 1x and 2x it anyway), else enough that each slice fits the target (by rows
    and by text bytes), at most MAX_SLICES."""
    need = max(-(-group.rows // target.rows), -(-group.text_bytes // target.bytes))
    return 1 if need <= 2 else min(need, MAX_SLICES, group.rows)


def slice_group(first_row: int, rows: int, count: int) -> list[UnitRange]:
    """`count` about equal row slices of a group whose first row is `first_row` in the file."""
    step = -(-rows // count)
    stop = first_row + rows
    return [UnitRange("slice", lo, min(lo + step, stop)) for lo in range(first_row, stop, step)]


def split_row_groups(groups: list[RowGroupStats], target: UnitTarget) -> list[UnitRange]:
    """Contiguous row-group ranges, each closed once it reaches the target's rows or bytes;
    a group bigger than the target alone is cut into row slices (`slice_group`).

    A file that fits in one unit gives an empty list: the caller keeps it whole (no range),
    so its output keeps the name and key it had before units existed.
    """
    units: list[UnitRange] = []
    start, rows, text_bytes, first_row = 0, 0, 0, 0
    for i, group in enumerate(groups):
        count = slice_count(group, target)
        if count > 1:
            if start < i:
                units.append(UnitRange("rows", start, i))
            units.extend(slice_group(first_row, group.rows, count))
            start, rows, text_bytes = i + 1, 0, 0
        else:
            rows += group.rows
            text_bytes += group.text_bytes
            if rows >= target.rows or text_bytes >= target.bytes:
                units.append(UnitRange("rows", start, i + 1))
                start, rows, text_bytes = i + 1, 0, 0
        first_row += group.rows
    if start < len(groups):
        units.append(UnitRange("rows", start, len(groups)))
    return units if len(units) > 1 else []


def unit_text_bytes(groups: list[RowGroupStats], unit: UnitRange) -> int:
    """A Parquet unit's text bytes from the footer's groups (a slice: its share of its group's)."""
    if unit.kind == "rows":
        return sum(g.text_bytes for g in groups[unit.start : unit.stop])
    first = 0
    for group in groups:
        if first <= unit.start < first + group.rows:
            return group.text_bytes * (unit.stop - unit.start) // max(1, group.rows)
        first += group.rows
    raise ValueError(f"unit {unit.label} lies outside the file's {first} rows")


def split_bytes(size: int, target: UnitTarget) -> list[UnitRange]:
    """Equal byte ranges of about the target's bytes; empty when the file fits in one unit."""
    if size <= target.bytes:
        return []
    count = -(-size // target.bytes)
    step = -(-size // count)
    return [UnitRange("bytes", lo, min(lo + step, size)) for lo in range(0, size, step)]


# Compressed streams: entered only at their start, and ~3x their size in text.
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zst", ".xz")


def is_compressed(uri: str) -> bool:
    return uri.lower().endswith(COMPRESSED_SUFFIXES)


def is_splittable_jsonl(uri: str) -> bool:
    """Uncompressed JSONL can be entered at any byte; a compressed stream only at its start.
    A `.json` file may hold one JSON array (e5ray.corpus.jsonl_reader reads it whole), so it is never split."""
    return not is_compressed(uri) and not uri.lower().endswith(".json")


def warn_if_whole_too_big(uri: str, size: int, target: UnitTarget) -> None:
    if size > target.bytes:
        log.warning(
            "%s: %d bytes is one unit (a compressed stream cannot be split), above the target of ~%d bytes; "
            "store it uncompressed or in smaller files to spread it over more actors",
            uri,
            size,
            target.bytes,
        )


def estimated_tokens(size: int, unit: UnitRange | None, compressed: bool = False) -> int:
    """A unit's size in tokens, for ordering and grouping (largest first); compressed files count 3x."""
    span = (unit.stop - unit.start) if unit is not None and unit.kind == "bytes" else size
    return max(1, span * (3 if compressed else 1) // BYTES_PER_TOKEN)


def group_small(weights: list[int], target_tokens: int, max_group: int = MAX_GROUP) -> list[list[int]]:
    """Indices grouped so that each group's weight stays within the target (largest first).

    Items at or above the target are groups of one; the rest are packed first-fit in
    decreasing weight, so the list of groups is also ordered roughly largest first.
    """
    order = sorted(range(len(weights)), key=lambda i: -weights[i])
    groups: list[list[int]] = []
    open_group: list[int] = []
    open_weight = 0
    for i in order:
        w = weights[i]
        if w >= target_tokens:
            groups.append([i])
            continue
        if open_group and (open_weight + w > target_tokens or len(open_group) >= max_group):
            groups.append(open_group)
            open_group, open_weight = [], 0
        open_group.append(i)
        open_weight += w
    if open_group:
        groups.append(open_group)
    return groups


def needs_footer(size: int, target: UnitTarget) -> bool:
    """Whether a Parquet file may hold more than one unit, so its footer is worth reading.

    Compressed text rarely shrinks more than 8x, so a smaller file fits in one unit; its
    footer is not read, which keeps planning a corpus of many small files free of requests.
    """
    return size > target.bytes // 8


def source_units(
    uri: str, size: int, fmt: str, target: UnitTarget, groups: list[RowGroupStats] | None = None
) -> list[tuple[UnitRange | None, int]]:
    """The units of one source and each one's estimated tokens; `(None, w)` alone means the whole file.

    `groups`: the Parquet footer's row groups, when read (see `needs_footer`).
    """
    if fmt == "parquet":
        ranges = split_row_groups(groups, target) if groups else []
        if not ranges:
            text = sum(g.text_bytes for g in groups) if groups else size
            return [(None, max(1, text // BYTES_PER_TOKEN))]
        assert groups is not None
        return [(r, max(1, unit_text_bytes(groups, r) // BYTES_PER_TOKEN)) for r in ranges]
    if not is_splittable_jsonl(uri):
        warn_if_whole_too_big(uri, size, target)
        return [(None, estimated_tokens(size, None, compressed=True))]
    ranges = split_bytes(size, target)
    if not ranges:
        return [(None, estimated_tokens(size, None))]
    return [(r, estimated_tokens(size, r)) for r in ranges]
