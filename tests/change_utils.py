"""A corpus that goes through three refreshes, for the change-feed tests (tests/output/test_change_feed.py,
tests/output/test_lance_sync.py): edits, inserts, deletes, a rewritten and reshuffled export, a row that
moves between files, an id deleted and re-added, a text edited and then edited back, and a file that
never changes (carried unchanged by every refresh)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from corpus_utils import make_texts, write_shard

Layout = dict[str, dict[int, str]]  # file name -> id -> text


def layouts() -> list[Layout]:
    """The corpus as version 1..4 see it."""
    texts = dict(enumerate(make_texts(80, seed=3)))
    stable = {i: texts[i] for i in range(60, 80)}
    v1 = {"stable.parquet": stable, "part-0.parquet": {i: texts[i] for i in range(30)}}
    v1["part-1.parquet"] = {i: texts[i] for i in range(30, 60)}
    # v2: the parts exported anew, reshuffled over three files; 1 and 2 edited, 3 and 4 deleted, 100, 101 new
    rows = {i: texts[i] for i in range(60) if i not in (3, 4)}
    rows |= {1: "edited one", 2: "edited two", 100: "inserted hundred", 101: "inserted hundred and one"}
    order = list(rows)
    random.Random(2).shuffle(order)
    v2: Layout = {"stable.parquet": stable}
    v2 |= {f"part-{f}.parquet": {i: rows[i] for i in order[f::3]} for f in range(3)}
    # v3: 100 deleted (inserted, then deleted), 3 back with a new text, 6 edited, 10 moved to another file
    v3 = {name: dict(part) for name, part in v2.items()}
    home = next(name for name, part in v3.items() if 10 in part)
    other = next(name for name in ("part-0.parquet", "part-1.parquet") if name != home)
    v3[other][10] = v3[home].pop(10)
    for part in v3.values():
        part.pop(100, None)
        if 6 in part:
            part[6] = "edited six"
    v3[other][3] = "three is back"
    # v4: 1 edited again, 7 deleted, 102 new, 2 edited back to its first text
    v4 = {name: dict(part) for name, part in v3.items()}
    for part in v4.values():
        part.pop(7, None)
        if 1 in part:
            part[1] = "edited one, twice"
        if 2 in part:
            part[2] = texts[2]
    v4["part-2.parquet"][102] = "inserted hundred and two"
    return [v1, v2, v3, v4]


def write_layout(root: str, layout: Layout, before: Layout | None, fs: Any = None) -> None:
    """Write the files of `layout` that differ from `before`, remove those it drops."""
    for name in before or {}:
        if name not in layout:
            path = f"{root}/{name}"
            fs.rm_file(path) if fs is not None else Path(path).unlink()
    for name, part in layout.items():
        if before is None or before.get(name) != part:
            write_shard(f"{root}/{name}", list(part), list(part.values()), fs)


def versions(root: str, run: Any, fs: Any = None) -> Iterator[int]:
    """Write each layout and run the job on it; yields the version committed."""
    before = None
    for number, layout in enumerate(layouts(), start=1):
        write_layout(root, layout, before, fs)
        before = layout
        run()
        yield number


def apply_feed(rows: dict[Any, np.ndarray], feed: Any) -> dict[Any, np.ndarray]:
    """A reader's copy of the rows, taken through a change feed."""
    out = dict(rows)
    for batch in feed.deletes():
        for i in batch.column("id").to_pylist():
            del out[i]
    for batch in feed.upserts():
        vectors = batch.column("embedding").flatten().to_numpy().reshape(batch.num_rows, -1)
        out.update(zip(batch.column("id").to_pylist(), vectors, strict=True))
    return out
