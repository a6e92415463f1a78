"""Long texts: truncate, or cut into overlapping windows of the model's length.

Modes (`LONG_TEXT_MODES`), each part of the embedding space:
- `truncate` (default): one vector per document from its first `max_length` tokens;
  documents that were cut are counted.
- `chunk`: one vector per window. A window holds the special tokens, the E5 prefix and
  up to `capacity` tokens of the document, where capacity = max_length - specials -
  prefix tokens. Consecutive windows overlap by `stride` tokens (so each starts
  `capacity - stride` tokens after the previous one); the last may be shorter.
- `average`: one vector per document, the mean of its window vectors weighted by the
  document tokens in each window (`token_end - token_start`), L2-normalised again.

A document that fits in one window gets exactly the token ids that truncation gives
it (window 0 of a long document is exactly its truncated form), so short documents
have identical vectors in all three modes. Spans are half-open: `token_start`/
`token_end` count the document's own tokens (no specials, no prefix);
`char_start`/`char_end` index the text as the caller gave it (via tokenizer offsets).

Windows of all documents go through the embedder's one length-sorted, token-budget
batching, as truncated documents do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from e5ray.errors import UsageError

LONG_TEXT_MODES = ("truncate", "chunk", "average")
# Output columns of chunk mode besides `id` and `embedding`, in file order.
WINDOW_COLUMNS = ("window", "token_start", "token_end", "char_start", "char_end")


def check_long_text(mode: str) -> str:
    if mode not in LONG_TEXT_MODES:
        raise UsageError(f"unknown long-text mode {mode!r}; valid: {', '.join(LONG_TEXT_MODES)}")
    return mode


def default_stride(max_length: int) -> int:
    """Overlap used when none is given: an eighth of the window (64 tokens at 512)."""
    return max_length // 8


@dataclass(frozen=True)
class Windows:
    """Per row of a tokenised batch: its document (index into the input) and span.

    Rows of one document are consecutive and in window order."""

    doc: np.ndarray  # int64
    window: np.ndarray  # int32, 0-based within the document
    token_start: np.ndarray  # int32
    token_end: np.ndarray  # int32
    char_start: np.ndarray  # int32
    char_end: np.ndarray  # int32
    documents: int

    def __len__(self) -> int:
        return len(self.doc)

    def columns(self, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """WINDOW_COLUMNS -> values (of `rows`, default all), ready for an output table."""
        picked = slice(None) if rows is None else rows
        return {name: getattr(self, name)[picked] for name in WINDOW_COLUMNS}


def special_counts(tokenizer: Any) -> tuple[int, int]:
    """How many special tokens the tokenizer's template puts before and after a text."""
    mask = tokenizer.encode("x", add_special_tokens=True).special_tokens_mask
    head = next((i for i, m in enumerate(mask) if not m), len(mask))
    tail = next((i for i, m in enumerate(reversed(mask)) if not m), 0)
    return head, tail


def window_starts(tokens: int, capacity: int, stride: int) -> list[int]:
    """Start offsets of the windows covering `tokens` document tokens (at least one window)."""
    step = capacity - stride
    starts = [0]
    while starts[-1] + capacity < tokens:
        starts.append(starts[-1] + step)
    return starts


def split_windows(
    encodings: Sequence[Any],
    texts: Sequence[str],
    prefix_chars: int,
    char_shift: Sequence[int],
    max_length: int,
    stride: int,
    specials: tuple[int, int],
) -> tuple[list[list[int]], Windows]:
    """Token ids of every window of every document, and their spans.

    `encodings`: the untruncated encodings (special tokens added) of prefix + text;
    `texts`: the caller's texts; `prefix_chars`: length of the prefix string the
    encodings start with; `char_shift[i]`: characters cut from text i before encoding
    (an E5 prefix it already carried), added back so spans index the caller's text.
    """
    head_n, tail_n = specials
    ids_out: list[list[int]] = []
    cols: dict[str, list[int]] = {name: [] for name in ("doc", *WINDOW_COLUMNS)}
    for d, enc in enumerate(encodings):
        ids, offsets = enc.ids, enc.offsets
        body_end = len(ids) - tail_n
        # Prefix tokens lie wholly inside the prefix string; the first token reaching
        # past it (e.g. XLM-R's "▁word", which carries the separating space) is the text's.
        p = head_n
        while p < body_end and offsets[p][1] <= prefix_chars:
            p += 1
        content = body_end - p
        capacity = max_length - head_n - tail_n - (p - head_n)
        if capacity <= stride:
            raise UsageError(
                f"stride {stride} leaves no room to advance: a window holds {capacity} document tokens "
                f"(max_length {max_length} minus special and prefix tokens); use a stride below {capacity}"
            )
        starts = window_starts(content, capacity, stride)
        for w, start in enumerate(starts):
            end = min(start + capacity, content)
            if len(starts) == 1:
                ids_out.append(list(ids))  # exactly what truncation would give a text that fits
            else:
                ids_out.append([*ids[:p], *ids[p + start : p + end], *ids[body_end:]])
            c0, c1 = _char_span(offsets, p + start, p + end, prefix_chars, char_shift[d], texts[d])
            for name, value in zip(("doc", *WINDOW_COLUMNS), (d, w, start, end, c0, c1), strict=True):
                cols[name].append(value)

    def int32(name: str) -> np.ndarray:
        return np.asarray(cols[name], dtype=np.int32)

    windows = Windows(
        doc=np.asarray(cols["doc"], dtype=np.int64),
        window=int32("window"),
        token_start=int32("token_start"),
        token_end=int32("token_end"),
        char_start=int32("char_start"),
        char_end=int32("char_end"),
        documents=len(encodings),
    )
    return ids_out, windows


def _char_span(
    offsets: Sequence[tuple[int, int]], first: int, stop: int, prefix_chars: int, shift: int, text: str
) -> tuple[int, int]:
    """Character span, in the caller's text, of tokens [first, stop); leading spaces skipped."""
    if stop <= first:
        return 0, 0
    start = max(offsets[first][0] - prefix_chars, 0) + shift
    end = max(offsets[stop - 1][1] - prefix_chars, 0) + shift
    while start < end and text[start].isspace():
        start += 1
    return start, end


class WindowTokenizer:
    """Cuts texts into windows with an untruncated copy of the embedder's tokenizer."""

    def __init__(self, tokenizer: Any, max_length: int, stride: int) -> None:
        self.tokenizer = tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.specials = special_counts(self.tokenizer)
        self.max_length = max_length
        self.stride = stride

    def split(
        self, texts: Sequence[str], bodies: Sequence[str], cut: Sequence[int], head: str
    ) -> tuple[list[list[int]], Windows]:
        """Windows of `head + body` for each text; `cut[i]` characters of texts[i] precede bodies[i]."""
        encodings = self.tokenizer.encode_batch([head + body for body in bodies], add_special_tokens=True)
        return split_windows(encodings, texts, len(head), cut, self.max_length, self.stride, self.specials)


def average_windows(vectors: np.ndarray, windows: Windows) -> np.ndarray:
    """One unit vector per document: token-weighted mean of its window vectors, renormalised.

    A document with one window keeps that window's vector unchanged (bit for bit)."""
    dim = vectors.shape[1]
    out = np.empty((windows.documents, dim), dtype=np.float32)
    if windows.documents == 0:
        return out
    firsts = np.flatnonzero(np.r_[True, windows.doc[1:] != windows.doc[:-1]])
    counts = np.diff(np.r_[firsts, len(windows.doc)])
    weights = (windows.token_end - windows.token_start).astype(np.float64)
    sums = np.add.reduceat(vectors.astype(np.float64) * weights[:, None], firsts, axis=0)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    averaged = (sums / np.maximum(norms, 1e-12)).astype(np.float32)
    single = counts == 1
    docs = windows.doc[firsts]
    out[docs[single]] = vectors[firsts[single]]
    out[docs[~single]] = averaged[~single]
    return out
