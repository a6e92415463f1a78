"""E5's instruction prefixes: `query: ` for search queries, `passage: ` for documents.

E5 was trained with exactly one prefix before each text. A caller that adds it
already (a habit from other tools) and then asks e5ray to add it again would embed
`query: query: ...` without any error: `strip_e5_prefixes` removes a prefix that a text
already carries, so the one e5ray adds is the only one.
"""

from __future__ import annotations

from collections.abc import Sequence

from e5ray.model.space import PREFIXES

# What a text may already start with; exact spelling, as E5 was trained.
KNOWN_PREFIXES = tuple(p for p in PREFIXES.values() if p)


def strip_e5_prefixes(texts: Sequence[str]) -> tuple[list[str], list[int]]:
    """Texts without the `query: `/`passage: ` they start with (repeats too), and the characters cut from each."""
    bodies, cut = [], []
    for text in texts:
        start = 0
        while found := next((p for p in KNOWN_PREFIXES if text.startswith(p, start)), ""):
            start += len(found)  # "query: query: x" was already prefixed twice
        bodies.append(text[start:])
        cut.append(start)
    return bodies, cut
