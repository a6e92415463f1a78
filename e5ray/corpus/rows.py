"""Row-level rules that decide, per row, what can be embedded and in what form.

- Text must be valid Unicode. Invalid UTF-8 bytes in a JSONL shard are read as lone
  surrogates (Python's `surrogateescape`), so they and lone surrogates written as JSON
  escapes (`"\\ud800"`) meet one rule: the row is rejected with the position, or, with
  `--on-invalid-utf8 replace`, each such character becomes U+FFFD and the row is embedded.
  Nothing is replaced silently.
- Integer ids must fit int64 (the output's id column); larger ones are rejected per row.
- `--id-type string` writes every id as text: an integer id n becomes its decimal string
  `str(n)` (so 7 and "7" are then the same id), strings stay as they are. With the
  default `auto`, a shard's ids keep their type, and a version whose shards hold ids of
  different types is refused before commit (`MixedIdTypesError`), since readers could
  not load the shards as one table.
"""

from __future__ import annotations

import re
from typing import Any

ON_INVALID_UTF8 = ("reject", "replace")
ID_TYPES = ("auto", "string")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")


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


def normalise_id(id_value: Any, id_type: str) -> Any:
    """The id as the output stores it under `--id-type`."""
    if id_type == "string" and isinstance(id_value, int) and not isinstance(id_value, bool):
        return str(id_value)
    return id_value


def id_type_name(arrow_type: Any) -> str:
    """'string' or 'int64' (the two id types the output holds) for an Arrow type."""
    import pyarrow as pa

    return "string" if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) else "int64"
