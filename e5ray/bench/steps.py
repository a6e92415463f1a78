"""Wall seconds of named planning steps, summed while installed: where a phase's time goes.

Each step is a module-level function, replaced by a timed wrapper for the duration of the
block (callers look it up in its module at call time, so the wrapper is what they call). A
step called from several threads at once sums its calls' seconds, so only steps called from
one thread at a time are listed here.
"""

from __future__ import annotations

import importlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# module -> functions timed there: the driver's planning steps, outermost first
STEPS = {
    "e5ray.job.plan": ("prepare_run", "read_footers", "recheck_carried", "plan_resume"),
    "e5ray.job.resume": ("list_output", "_cached_entries"),
}


@contextmanager
def timed_steps(steps: dict[str, tuple[str, ...]] = STEPS) -> Iterator[dict[str, float]]:
    """Yields {"module.function": seconds}, filled while the block runs."""
    seconds: dict[str, float] = defaultdict(float)
    originals: list[tuple[Any, str, Callable[..., Any]]] = []

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - t0

        return timed

    for module_name, names in steps.items():
        module = importlib.import_module(module_name)
        for name in names:
            fn = getattr(module, name)
            originals.append((module, name, fn))
            setattr(module, name, wrap(f"{module_name.rsplit('.', 1)[-1]}.{name}", fn))
    try:
        yield seconds
    finally:
        for module, name, fn in reversed(originals):
            setattr(module, name, fn)
