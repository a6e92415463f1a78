"""Row-level rules that decide, per row, what can be embedded and in what form.

- Text must be valid Unicode. Invalid UTF-8 bytes in a JSONL shard are read as lone
  surrogates (Python's `surrogateescape`), so they and lone surrogates written as JSON
  escapes (`"\\ud800"`) meet one rule: the row is rejected with the position, or, with
  `--on-invalid-utf8 replace`, each such character becomes U+FFFD and the row is embedded.
  Nothing is replaced silently.
- Ids (`normalise_id`, one rule for every type a reader can meet, Parquet or JSON):
  integers stay integers and must fit int64; strings stay strings; a float or decimal
  that is a whole number becomes that integer (3400.0 -> 3400), any other (3401.5) is
  rejected, or with `--id-type string` written as its shortest text ("3401.5"); bytes
  are decoded as UTF-8 (rejected when they are not UTF-8); null, NaN, infinities,
  booleans and anything else (lists, dates) are rejected per row with the reason. No
  id ever reaches Arrow in a type its column cannot hold.
- `--id-type string` writes every id as text after that rule: an integer id n becomes
  `str(n)` (so 7, 7.0 and "7" are then the same id). With the default `auto`, a shard's
  ids keep their type, and a corpus whose shards hold ids of different types is refused
  while planning, before anything is embedded (`MixedIdTypesError`; checked again before
  the commit), since readers could not load the shards as one table.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

ON_INVALID_UTF8 = ("reject", "replace")
ID_TYPES = ("auto", "string")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")
_VALID_IDS = "ids must be integers, strings, whole numbers or UTF-8 bytes"


def unicode_problem(text: str) -> str | None:
    """Why `text` cannot be encoded as UTF-8, or None."""
    match = _SURROGATE.search(text)
    if match is None:
        return None
    code = ord(match.group())
    what = f"invalid UTF-8 byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"lone surrogate U+{code:04X}"
    return f"text is not valid Unicode: {what} at character {match.start()} (--on-invalid-utf8 replace embeds it)"


def repair_text(text: str) -> str:
    """Each lone surrogate (or undecodable byte) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def id_problem(id_value: Any) -> str | None:
    """Why an id of an accepted type cannot be written, or None."""
    if isinstance(id_value, int) and not isinstance(id_value, bool) and not INT64_MIN <= id_value <= INT64_MAX:
        return f"id {id_value} is outside the int64 range (--id-type string keeps it as text)"
    if isinstance(id_value, str) and _SURROGATE.search(id_value):
        return "id is not valid Unicode (invalid UTF-8 or a lone surrogate)"
    return None


def _number_id(value: float | Decimal, id_type: str) -> tuple[Any, str | None]:
    """A float or decimal id: its integer when whole, its shortest text under --id-type string."""
    finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
    if not finite:
        return None, f"id {value} is not a finite number; {_VALID_IDS}"
    if value == int(value):
        return int(value), None
    if id_type == "string":
        return (repr(value) if isinstance(value, float) else format(value.normalize(), "f")), None
    return None, f"id {value} is not a whole number (--id-type string keeps it as text)"


def _raw_id(id_value: Any, id_type: str) -> tuple[Any, str | None]:
    """The id as an int or a str, or the reason it has none."""
    if id_value is None:
        return None, "null id"
    if isinstance(id_value, bool):
        return None, f"id {id_value} is a boolean; {_VALID_IDS}"
    if isinstance(id_value, (int, str)):
        return id_value, None
    if isinstance(id_value, (float, Decimal)):
        return _number_id(id_value, id_type)
    if isinstance(id_value, (bytes, bytearray, memoryview)):
        try:
            return bytes(id_value).decode("utf-8"), None
        except UnicodeDecodeError as exc:
            return None, f"id {bytes(id_value)[:30]!r} is binary and not valid UTF-8 (byte {exc.start}); {_VALID_IDS}"
    return None, f"id {id_value!r:.60} is a {type(id_value).__name__}; {_VALID_IDS}"


def normalise_id(id_value: Any, id_type: str) -> tuple[Any, str | None]:
    """(the id as the output stores it under `--id-type`, None), or (None, why the row is rejected)."""
    value, problem = _raw_id(id_value, id_type)
    if problem is None and id_type == "string" and isinstance(value, int):
        value = str(value)
    return value, problem


def output_id_type(declared: Any, id_type: str) -> Any:
    """The Arrow type of the output's id column for a Parquet id column of type `declared`:
    integer and string columns keep their type; whole-number floats and decimals are
    written as int64, UTF-8 binary as string; `--id-type string` makes every one string.
    Columns of other types (all their rows rejected) get int64."""
    import pyarrow as pa

    if pa.types.is_dictionary(declared):
        declared = declared.value_type
    if id_type == "string":
        return pa.string()
    if pa.types.is_integer(declared) or pa.types.is_string(declared) or pa.types.is_large_string(declared):
        return declared
    if pa.types.is_binary(declared) or pa.types.is_large_binary(declared) or pa.types.is_fixed_size_binary(declared):
        return pa.string()
    return pa.int64()


def id_type_name(arrow_type: Any) -> str:
    """'string' or 'int64' (the two id types the output holds) for an Arrow type."""
    import pyarrow as pa

    return "string" if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) else "int64"
