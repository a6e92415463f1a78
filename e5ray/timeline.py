"""The start-up timeline of this process: when each step of a run first happened, in seconds
from the process's start.

Why: a small run is mostly fixed cost (imports, Ray's start, the actor and the model, the
exit), and only a timeline of the whole process says which step to cut. Each layer marks
the step it owns (the CLI its imports, the driver its plan and commit, the Ray executor
Ray and the pool), so this module sits at the bottom of the stack, beside `e5ray.errors`,
and imports nothing of the library.

Invariants: a mark is recorded once, the first time (a second call keeps the first time),
so `marks()` is in the order the steps happened; times count from the process's start as
the kernel knows it (`/proc/self/stat`), else from this module's import. A run forgets the
marks of the run before it in the same process (`start_run`); `reset` also restarts the clock.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("e5ray")

# The steps, in the order a run goes through them (a run may skip some: no Ray, nothing to embed).
STEPS = (
    "imports",  # the CLI's modules imported, its arguments parsed
    "planned",  # the driver knows the units to embed
    "ray_ready",  # Ray started, joined, or found running
    "pool_requested",  # the actor pool asked of Ray Data (it starts the actors on the first read)
    "first_actor_ready",  # the first unit began on a worker (its model loaded): first result - its seconds
    "first_vector",  # the first unit's result reached the driver
    "last_unit",  # the last unit's result reached the driver
    "committed",  # the manifest version committed
    "exit",  # the run returned to the CLI, which prints its summary and exits
)

_IMPORTED = time.time()


def process_start() -> float:
    """When this process started (epoch seconds), from the kernel; else this module's import time."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as fh:
            boot = next(float(line.split()[1]) for line in fh if line.startswith(b"btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return _IMPORTED


_START = process_start()
_marks: dict[str, float] = {}


def mark(step: str, at: float | None = None) -> None:
    """Record `step` (one of STEPS) at `at` (epoch seconds; default now), unless already recorded."""
    if step not in STEPS:
        raise ValueError(f"start-up step {step!r} is not known; known: {', '.join(STEPS)}")
    if step in _marks:
        return
    _marks[step] = round(max(0.0, (time.time() if at is None else at) - _START), 3)
    log.info("start-up: %s at %.2f s", step, _marks[step])


def marks() -> dict[str, float]:
    """Seconds from the process's start of each step recorded so far, in the order they happened."""
    return dict(sorted(_marks.items(), key=lambda kv: kv[1]))


def start_run() -> None:
    """Forget the marks of an earlier run in this process, but not the imports."""
    for step in STEPS[1:]:
        _marks.pop(step, None)


def reset() -> None:
    """Forget every mark (a new run in the same process), and count from now."""
    global _START
    _marks.clear()
    _START = time.time()
