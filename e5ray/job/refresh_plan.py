"""Refresh planning: which source shards to embed, which outputs to carry forward, and
the work units the sources to embed are split into.

Plain data in, plain data out: no I/O (Parquet footers are read by the caller and handed
in), so every case is a unit test. A source is carried or embedded as a whole: an
unchanged source carries every unit its previous version was embedded as (whatever the
unit target is now), a changed one is split again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from e5ray.corpus.sources import SourceShard
from e5ray.corpus.units import BYTES_PER_TOKEN, RowGroupStats, UnitTarget, estimated_tokens, is_compressed, source_units
from e5ray.output.manifest import Manifest, ShardEntry
from e5ray.worker.task import ShardTask


@dataclass
class RefreshPlan:
    tasks: list[ShardTask] = field(default_factory=list)  # to embed
    carried: list[ShardEntry] = field(default_factory=list)  # previous entries kept as they are
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def changes(self) -> dict[str, Any]:
        lists = {"added": self.added, "changed": self.changed, "removed": self.removed, "unchanged": self.unchanged}
        return {**{k: sorted(v) for k, v in lists.items()}, "counts": {k: len(v) for k, v in lists.items()}}


def plan_refresh(
    sources: list[SourceShard],
    previous: Manifest | None,
    make_task: Callable[[SourceShard], ShardTask],
    full: bool = False,
) -> RefreshPlan:
    """Compare the corpus now with the previous manifest.

    A source is *unchanged* when the previous manifest holds an output made from the
    same fingerprint with the same settings (the task key covers both); that output is
    carried forward without reading the source. `full` re-embeds everything.
    """
    before: dict[str, list[ShardEntry]] = {}
    for entry in previous.shards if previous else ():
        before.setdefault(entry.source.uri, []).append(entry)
    plan = RefreshPlan()
    for source in sources:
        task = make_task(source)
        old = before.pop(source.uri, None)
        if old is None:
            plan.added.append(source.uri)
        elif all(e.key == task.key for e in old):
            plan.unchanged.append(source.uri)
            if not full:
                plan.carried.extend(old)
                continue
        else:
            plan.changed.append(source.uri)
        plan.tasks.append(task)
    plan.removed = sorted(before)
    return plan


def split_tasks(
    tasks: list[ShardTask], target: UnitTarget, footers: dict[str, list[RowGroupStats]] | None = None
) -> list[ShardTask]:
    """Each whole-source task as its units (`footers`: row groups of the Parquet sources read)."""
    out = []
    for task in tasks:
        src = task.source
        groups = (footers or {}).get(src.uri)
        for unit, weight in source_units(src.uri, src.size, src.format, target, groups):
            out.append(task.with_unit(unit, weight))
    return out


def planned_tokens(tasks: list[ShardTask], footers: dict[str, list[RowGroupStats]] | None = None) -> int:
    """The tasks' estimated tokens: a Parquet footer's text bytes where read, else the file's size."""
    total = 0
    for task in tasks:
        src, groups = task.source, (footers or {}).get(task.source.uri)
        if groups:
            total += sum(g.text_bytes for g in groups) // BYTES_PER_TOKEN
        else:
            total += estimated_tokens(src.size, None, compressed=is_compressed(src.uri))
    return total
