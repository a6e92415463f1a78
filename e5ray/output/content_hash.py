"""Content hashes: a 16-byte name for exactly what the model was fed for one row.

The hash is blake2b-128 over the row's token ids (int32, little-endian) after the E5
prefix was added, the tokenizer normalised the text and truncation at `max_length` cut
it. Hashing the token ids rather than the raw text gives two properties a text hash
would not:
- it follows the tokenizer, whose files are not part of the embedding space's model
  hash (`EmbeddingSpace.model_sha256` covers the ONNX weights only): a tokenizer that
  changed gives other ids, hence other hashes, and nothing stale is reused;
- it is truncation-exact: an edit beyond `max_length` tokens, or one that normalises
  away (Unicode forms, case under a lowercasing tokenizer), gives the same hash, and the
  stored vector is correctly reused.
The price is tokenising every row of a changed shard, including those whose vector is
reused; tokenising is cheap next to the encoder (see docs/refresh.md, "Row-level refresh").

Within one embedding space, equal hashes mean equal model inputs, hence equal vectors
(up to float noise from batch shapes): that is what makes reuse by hash alone sound.
The blake2b `person` tag names the scheme, so a future scheme cannot collide with this one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from e5ray.errors import UsageError

HASH_BYTES = 16
SCHEME = "blake2b-128/token-ids-int32le/v1"  # recorded in each shard entry that has hashes
HASH_COLUMN = "content_hash"
HASH_TYPE = pa.binary(HASH_BYTES)
_PERSON = b"e5ray.tokens.v1"


def hash_token_ids(ids: Sequence[Sequence[int]]) -> list[bytes]:
    """One 16-byte content hash per row of token ids."""
    out = []
    for row in ids:
        digest = hashlib.blake2b(np.asarray(row, dtype="<i4").tobytes(), digest_size=HASH_BYTES, person=_PERSON)
        out.append(digest.digest())
    return out


def hash_array(hashes: Sequence[bytes]) -> pa.Array:
    """The Arrow column of `hashes` (fixed_size_binary[16])."""
    return pa.array(hashes, type=HASH_TYPE)


def as_words(blob: bytes | np.ndarray) -> np.ndarray:
    """Hashes packed back to back (16 bytes each) as an (n, 2) array of big-endian uint64,
    whose lexicographic row order is the byte order of the hashes (how indexes sort them)."""
    raw = np.frombuffer(blob, dtype=np.uint8) if isinstance(blob, bytes) else np.ascontiguousarray(blob, np.uint8)
    return raw.view(">u8").reshape(-1, 2).astype(np.uint64)


def bucket_of(hashes: Sequence[bytes] | np.ndarray, buckets: int) -> np.ndarray:
    """The bucket (0..buckets-1, `buckets` a power of two) of each hash: its leading bits."""
    if buckets < 1 or buckets & (buckets - 1):
        raise UsageError(f"buckets must be a power of two >= 1, got {buckets}")
    words = as_words(b"".join(hashes)) if not isinstance(hashes, np.ndarray) else hashes
    if buckets == 1:
        return np.zeros(len(words), dtype=np.int64)
    shift = np.uint64(64 - (buckets.bit_length() - 1))
    leading: np.ndarray = (words[:, 0] >> shift).astype(np.int64)
    return leading
