"""The folders of an output, each holding one kind of file.

- `shards/`: the embedding files only (the output contract), so a reader globbing it finds
  nothing else;
- `markers/`: completion markers (`e5ray.shards`), read by a resumed run, and the driver's
  checkpoints of them (`checkpoint-<run>-<seq>.json`, never `*.done.json`: `e5ray.checkpoints`);
- `rejects/`: rejected rows with their reasons;
- `ids/`: each unit's embedded ids, hashed, for the cross-shard duplicate check (`e5ray.dupes`).

Outputs written before these folders existed kept markers and rejects in `shards/`; they
are still read (`e5ray.resume`, `e5ray.gc`). Every file of a unit is named from the
unit's stem, so the folder says what a file is and the name says whose it is.
"""

from __future__ import annotations

SHARDS_DIR = "shards"  # data files only
MARKERS_DIR = "markers"
REJECTS_DIR = "rejects"
IDS_DIR = "ids"
UNIT_FOLDERS = (SHARDS_DIR, MARKERS_DIR, REJECTS_DIR, IDS_DIR)


def in_folder(folder: str, path: str) -> str:
    """`path`'s file name in `folder` (`shards/a-1` -> `ids/a-1`): a unit's files share a name."""
    return f"{folder}/{path.rsplit('/', 1)[-1]}"
