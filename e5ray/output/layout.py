"""The folders of an output, each holding one kind of file.

- `shards/`: the embedding files only (the output contract), so a reader globbing it finds
  nothing else;
- `markers/`: completion markers (`e5ray.worker.embed_unit`), read by a resumed run, and the driver's
  checkpoints of them (`checkpoint-<run>-<seq>.json`, never `*.done.json`: `e5ray.job.checkpoints`)
  and the planner's footer cache (`footers-<sha>.json`: `e5ray.job.footer_cache`);
- `rejects/`: rejected rows with their reasons;
- `ids/`: each unit's embedded ids, hashed, for the cross-shard duplicate check (`e5ray.output.dupes`);
- `index/v<version>/`: a version's row-level reuse index (`e5ray.refresh.index`);
- `progress.json`: the running job's progress (`e5ray.job.progress`).

Every name is defined here, in the output layer, so that the code that keeps an output tidy
(`e5ray.output.gc`) needs nothing from the layers that write it.

Outputs written before these folders existed kept markers and rejects in `shards/`; they
are still read (`e5ray.job.resume`, `e5ray.output.gc`). Every file of a unit is named from the
unit's stem, so the folder says what a file is and the name says whose it is.
"""

from __future__ import annotations

SHARDS_DIR = "shards"  # data files only
MARKERS_DIR = "markers"
REJECTS_DIR = "rejects"
IDS_DIR = "ids"
UNIT_FOLDERS = (SHARDS_DIR, MARKERS_DIR, REJECTS_DIR, IDS_DIR)
INDEX_DIR = "index"
PROGRESS_FILE = "progress.json"


def index_path(version: int) -> str:
    """The folder of `version`'s row-level reuse index."""
    return f"{INDEX_DIR}/v{version:06d}"


def in_folder(folder: str, path: str) -> str:
    """`path`'s file name in `folder` (`shards/a-1` -> `ids/a-1`): a unit's files share a name."""
    return f"{folder}/{path.rsplit('/', 1)[-1]}"
