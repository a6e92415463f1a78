"""The synthetic corpus: real multilingual words, lengths that look like real documents.

Lengths are lognormal in tokens (median ~40, p95 ~200, clipped to [8, 512]) and are measured
with the model's own tokenizer, so the corpus is the same size in tokens for any tokenizer.
`make_corpus(k)` is a prefix of `make_corpus(n)` for k <= n: runs of different sizes share texts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from e5ray.bench.config import FASTEMBED_BATCH, MAX_LENGTH, PREFIX
from e5ray.testing.words import sample_words

# Lognormal document lengths in tokens: median and 95th percentile, clipped to [8, 512].
TARGET_MEDIAN = 40.0
TARGET_P95 = 200.0
MIN_TOKENS = 8


def lognormal_token_targets(
    n: int,
    rng: np.random.Generator,
    median: float = TARGET_MEDIAN,
    p95: float = TARGET_P95,
    low: int = MIN_TOKENS,
    high: int = MAX_LENGTH,
) -> np.ndarray:
    """Target token counts per document: lognormal with this median and p95, clipped to [low, high]."""
    sigma = math.log(p95 / median) / 1.6448536269514722  # z of the 95th percentile
    draws = rng.lognormal(math.log(median), sigma, size=n)
    return np.clip(np.rint(draws), low, high).astype(np.int64)


def load_tokenizer(tokenizer_path: str | os.PathLike[str], max_length: int | None = MAX_LENGTH) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    if max_length is None:
        tokenizer.no_truncation()
    else:
        tokenizer.enable_truncation(max_length)
    return tokenizer


def make_corpus(
    n: int,
    tokenizer_path: str | os.PathLike[str],
    seed: int = 0,
    words: Sequence[str] | None = None,
    prefix: str = PREFIX,
) -> list[str]:
    """`n` documents of real multilingual words whose tokenised lengths (prefix and special
    tokens included) follow `lognormal_token_targets`.

    Words are drawn uniformly from `sample_words()`; a document takes words until the
    tokens of "prefix + words" reach its target (each word's token count is measured with
    the model's own tokenizer, so CJK words that split into characters count right).
    `make_corpus(k)` is a prefix of `make_corpus(n)` for k <= n.
    """
    tokenizer = load_tokenizer(tokenizer_path, max_length=None)
    words = list(sample_words() if words is None else words)
    counts = np.array([len(e.ids) for e in tokenizer.encode_batch(words, add_special_tokens=False)])
    overhead = len(tokenizer.encode(prefix.strip(), add_special_tokens=True).ids)
    # Separate streams for lengths and words, both consumed in document order: the first k
    # documents are the same whatever `n` is, so runs of different sizes share their texts.
    targets = lognormal_token_targets(n, np.random.default_rng([seed, 0]))
    rng = np.random.default_rng([seed, 1])
    texts = []
    for target in targets:
        chosen: list[str] = []
        have = overhead
        while have < target or not chosen:
            i = int(rng.integers(len(words)))
            chosen.append(words[i])
            have += int(counts[i])
        texts.append(" ".join(chosen))
    return texts


def token_lengths(
    tokenizer_path: str | os.PathLike[str], texts: Sequence[str], prefix: str = PREFIX, max_length: int = MAX_LENGTH
) -> np.ndarray:
    """Real tokens per text: prefix + text, special tokens included, truncated at `max_length`."""
    tokenizer = load_tokenizer(tokenizer_path, max_length)
    return np.array([len(e.ids) for e in tokenizer.encode_batch([prefix + t for t in texts])], dtype=np.int64)


def length_stats(lengths: Sequence[int] | np.ndarray, max_length: int = MAX_LENGTH) -> dict[str, Any]:
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    return {
        "docs": int(len(lengths)),
        "tokens": total,
        "median": float(np.median(lengths)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
        "min": int(lengths.min()),
        "mean": round(float(lengths.mean()), 2),
        # The sequence length the average token sits in: what the attention cost scales with.
        "token_weighted_mean": round(float((lengths.astype(np.float64) ** 2).sum() / total), 2),
        "at_max_length": int((lengths >= max_length).sum()),
    }


def fixed_batch_padded_tokens(lengths: Sequence[int] | np.ndarray, batch_size: int = FASTEMBED_BATCH) -> int:
    """Tokens processed when rows go in input order in batches of `batch_size`, each padded to its longest."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return int(
        sum(len(c) * int(c.max()) for c in (lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size)))
    )


def write_corpus_shards(directory: str | os.PathLike[str], texts: Sequence[str], shard_rows: int) -> int:
    """Texts as Parquet shards of `shard_rows` rows (ids = position in `texts`); returns the shard count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    shards = 0
    for start in range(0, len(texts), shard_rows):
        stop = min(start + shard_rows, len(texts))
        table = pa.table({"id": pa.array(range(start, stop), type=pa.int64()), "text": list(texts[start:stop])})
        pq.write_table(table, root / f"part-{shards:05d}.parquet")
        shards += 1
    return shards
