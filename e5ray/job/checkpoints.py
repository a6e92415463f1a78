"""Checkpoints: the driver's copy of finished units' markers, so a resume reads a few objects.

Every finished unit's worker writes its completion marker (`markers/<stem>.done.json`); the
marker is the exactly-once truth and stays as it is. The driver receives the same entry, so
it also batches the entries it receives into create-only checkpoint objects,
`markers/checkpoint-<run id>-<seq>.json`, every `EVERY_UNITS` units or `EVERY_S` seconds,
whichever comes first, from a background thread (off the loop that hands out units), and once
more when the run stops (finished, interrupted or failed: best effort, never raising).

A resume (`e5ray.job.resume`) reads the checkpoints the listing shows, a few objects in parallel,
instead of one GET per finished unit; a unit whose marker is in the listing but in no
checkpoint (it finished after the last one, or the checkpoint is unreadable) has its marker
read as before. A checkpoint is only a cache: an entry is used only when the unit's marker is
in the listing and every reuse check that a marker's entry passes holds for it; an entry that
fails them sends the resume to the marker itself. Paths inside a checkpoint are confined like a
marker's (`e5ray.store.paths`).

Names: checkpoints never end in `.done.json`, so nothing that looks for markers takes one for a
unit's marker. Each is listed in the run's lease before it is written, so a concurrent gc
spares it; after a commit the run removes its own and those it read (the manifest holds their
entries now); gc removes any other like every unreferenced file.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from e5ray.output.layout import MARKERS_DIR
from e5ray.output.manifest import ShardEntry
from e5ray.store.filesystem import OutputDir
from e5ray.store.paths import UnsafePathError, check_entry_paths, confined

log = logging.getLogger("e5ray")

PREFIX = f"{MARKERS_DIR}/checkpoint-"
FORMAT = "e5ray-checkpoint"
# 1,000 entries are ~1 MB of JSON: one PUT per 1,000 units, one GET per 1,000 on resume.
EVERY_UNITS = 1000
# A slow run still checkpoints: what a kill loses is re-read marker by marker, not re-embedded.
EVERY_S = 30.0
# A final write on a store that stopped answering must not hold the run (a healthy store takes
# well under a second for ~1 MB). A write that ends later is removed by gc; the thread is a
# daemon, it never keeps the process alive.
CLOSE_WAIT_S = 5.0


def checkpoint_path(run_id: str, seq: int) -> str:
    return f"{PREFIX}{run_id}-{seq:06d}.json"


def is_checkpoint(rel: str) -> bool:
    """Whether `rel` (relative to the output root) names a checkpoint, never a unit's marker."""
    return rel.startswith(PREFIX) and rel.endswith(".json") and not rel.endswith(".done.json")


class CheckpointWriter:
    """Batches finished units' entries into checkpoints; `start()` it, `add()` each, `close()` at the end.

    `register(paths)` is told each checkpoint's path before it is written (the run's lease)."""

    def __init__(
        self,
        output: OutputDir,
        run_id: str,
        register: Callable[[list[str]], None] | None = None,
        every_units: int | None = None,
        every_s: float | None = None,
    ) -> None:
        self.output, self.run_id, self.register = output, run_id, register
        self.every_units = every_units if every_units is not None else EVERY_UNITS
        self.every_s = every_s if every_s is not None else EVERY_S
        self.written: list[str] = []
        self._pending: list[dict[str, Any]] = []
        self._seq = 0
        self._cond = threading.Condition()
        self._stop = False
        self._flush_on_stop = True
        self._thread: threading.Thread | None = None
        self._due = 0.0  # monotonic time of the next time-based checkpoint

    def start(self) -> CheckpointWriter:
        self._thread = threading.Thread(target=self._loop, name=f"e5ray-checkpoints-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def add(self, marker: str, entry: ShardEntry) -> None:
        """A finished unit: its marker's path and the entry the marker holds."""
        with self._cond:
            self._pending.append({"marker": marker, "entry": entry.to_dict()})
            if len(self._pending) >= self.every_units:
                self._cond.notify()

    def close(self, flush: bool = True, wait_s: float | None = CLOSE_WAIT_S) -> None:
        """Stop the thread; with `flush`, write what is pending first; wait at most `wait_s`
        seconds for it (None: until it is done). Never raises."""
        with self._cond:
            self._stop, self._flush_on_stop = True, flush
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=wait_s)
            if self._thread.is_alive() and wait_s:
                log.warning("checkpoints of run %s: the last write did not finish in %.0f s", self.run_id, wait_s)

    def _take(self) -> list[dict[str, Any]]:
        """The next batch to write (the lock held): `every_units` entries whenever that many wait,
        so a checkpoint never grows past them; what waits, when it is due or the run stops."""
        if len(self._pending) >= self.every_units:
            batch = self._pending[: self.every_units]
            del self._pending[: self.every_units]
            return batch
        if self._pending and ((self._stop and self._flush_on_stop) or time.monotonic() >= self._due):
            batch, self._pending = self._pending, []
            return batch
        return []

    def _loop(self) -> None:
        self._due = time.monotonic() + self.every_s
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stop or len(self._pending) >= self.every_units,
                    timeout=max(0.0, self._due - time.monotonic()),
                )
                batch, stop = self._take(), self._stop
            if batch:
                self._write(batch)
            if batch or time.monotonic() >= self._due:
                self._due = time.monotonic() + self.every_s
            elif stop:
                return

    def _write(self, batch: list[dict[str, Any]]) -> None:
        rel = checkpoint_path(self.run_id, self._seq)
        self._seq += 1
        try:
            if self.register is not None:
                self.register([rel])
            data = json.dumps({"format": FORMAT, "run_id": self.run_id, "units": batch}).encode()
            self.output.write_create_only(rel, data)
            self.written.append(rel)
        except Exception as exc:  # a cache: the markers are still there, a resume reads them instead
            log.warning("checkpoint %s not written: %s: %s", rel, type(exc).__name__, exc)


def read_checkpoint(output: OutputDir, rel: str) -> dict[str, list[dict[str, Any]]]:
    """Marker path -> the entries (as dicts) one checkpoint holds for it; {} when it is gone or
    unreadable (the markers are read instead). A path outside the output root is refused
    (UnsafePathError), as in a marker."""
    try:
        data = json.loads(output.read_bytes(rel))
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("units"), list):
            raise ValueError(f"not a {FORMAT} object")
        found: dict[str, list[dict[str, Any]]] = {}
        for i, unit in enumerate(data["units"]):
            marker = confined(unit["marker"], f"{rel}: units[{i}].marker")
            entry = unit["entry"]
            if not isinstance(entry, dict):
                raise TypeError(f"units[{i}].entry is a {type(entry).__name__}")
            check_entry_paths(entry, f"{rel}: units[{i}].entry")
            found.setdefault(marker, []).append(entry)
        return found
    except UnsafePathError:
        raise
    except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
        log.warning("checkpoint %s ignored (its markers are read instead): %s: %s", rel, type(exc).__name__, exc)
        return {}


def remove_checkpoints(output: OutputDir, paths: Iterable[str]) -> None:
    """Remove checkpoints after a commit (best effort: gc removes any left)."""
    for rel in sorted(set(paths)):
        try:
            output.remove(rel)
        except FileNotFoundError:
            pass
        except Exception as exc:
            log.warning("checkpoint %s not removed (gc will): %s: %s", rel, type(exc).__name__, exc)
