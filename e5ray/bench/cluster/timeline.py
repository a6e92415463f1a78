"""A per-actor timeline for `scale big-file`: where an actor's time outside units goes.

Measured, not inferred: the Ray executor's actor class is swapped (in this process only,
before the job starts) for a subclass that appends JSON lines to a file on the shared
disk of the simulated cluster: the actor's process start, its `__init__` start and end
(model loaded), and each task's start and end with its node and units. The driver
records the job's start, the end of planning (the executor is called), each result's
arrival and the job's end (the manifest committed). Nothing reaches the manifests or
markers: the events live beside them, in the benchmark's own file.

`summarise` turns the events into seconds from the job's start and splits each actor's
run into: before ready, inside tasks, gaps between tasks, and after its last task.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from ray import cloudpickle

import e5ray.executors.ray as rayexec

# The timed actor travels to the workers by value: they need not import this benchmark module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def process_start_time() -> float:
    """This process's start as a wall-clock time (Linux /proc), or now elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def _emit(path: str, event: dict[str, Any]) -> None:
    with open(path, "a") as f:  # one short line per write: appends from several processes stay whole
        f.write(json.dumps(event) + "\n")


class TimedActor(rayexec.ShardEmbedActor):
    """The executor's actor, timed; `events` is set on the class before the job starts."""

    events = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        init_start = time.time()
        super().__init__(*args, **kwargs)
        import ray

        self.node = ray.get_runtime_context().get_node_id()[:8]
        event = {"kind": "ready", "pid": os.getpid(), "node": self.node, "process_start": process_start_time()}
        _emit(self.events, {**event, "init_start": init_start, "ready": time.time()})

    def __call__(self, batch: Any) -> Any:
        start = time.time()
        out = super().__call__(batch)
        entries = [json.loads(e) for e in out["entry"]]
        units = [(e.get("unit") or {}).get("start", "whole") for e in entries]
        rows = sum(e.get("rows", 0) for e in entries)
        busy = sum(e.get("seconds", 0.0) for e in entries)
        event = {"kind": "task", "pid": os.getpid(), "node": self.node, "start": start, "end": time.time()}
        _emit(self.events, {**event, "units": units, "rows": rows, "unit_seconds": busy})
        return out


def install(events: str) -> Callable[..., Any]:
    """Swap in the timed actor; returns a wrapper for the executor that stamps the driver's side."""
    TimedActor.events = events
    rayexec.ShardEmbedActor = TimedActor  # type: ignore[misc]

    def timed(tasks: Any, spec: Any, compute: Any) -> Iterator[Any]:
        _emit(events, {"kind": "planned", "t": time.time(), "units": len(tasks)})
        for result in rayexec.run_on_ray(tasks, spec, compute):
            _emit(events, {"kind": "result", "t": time.time()})
            yield result

    return timed


def summarise(events_path: str, job_start: float, job_end: float) -> dict[str, Any]:
    """Seconds from the job's start: per actor, its start, its tasks and its gaps; the driver's stamps."""
    with open(events_path) as f:
        events = [json.loads(line) for line in f if line.strip()]

    def at(t: float) -> float:
        return round(t - job_start, 2)

    planned = next(e["t"] for e in events if e["kind"] == "planned")
    tasks = [e for e in events if e["kind"] == "task"]
    last_end = max(e["end"] for e in tasks)
    actors = []
    for ready in sorted((e for e in events if e["kind"] == "ready"), key=lambda e: e["ready"]):
        mine = sorted((e for e in tasks if e["pid"] == ready["pid"]), key=lambda e: e["start"])
        inside = sum(e["end"] - e["start"] for e in mine)
        gaps = sum(b["start"] - a["end"] for a, b in zip(mine, mine[1:], strict=False))
        first = mine[0]["start"] if mine else job_end
        actors.append(
            {
                "node": ready["node"],
                "process_start": at(ready["process_start"]),
                "init_start": at(ready["init_start"]),
                "ready": at(ready["ready"]),
                "first_task": at(first),
                "tasks": [[at(e["start"]), at(e["end"]), e["rows"], e["units"]] for e in mine],
                "before_first_task_s": round(first - job_start, 2),
                "in_tasks_s": round(inside, 2),
                "unit_seconds": round(sum(e["unit_seconds"] for e in mine), 2),
                "gaps_between_tasks_s": round(gaps, 2),
                "after_last_task_s": round(job_end - (mine[-1]["end"] if mine else job_end), 2),
            }
        )
    return {
        "planned": at(planned),
        "last_unit_end": at(last_end),
        "commit_end": at(job_end),
        "actors": actors,
    }
