"""The executor seam: who runs the shard tasks, and the name -> executor table.

An executor takes the tasks a run must embed and yields one result per task, in any
order: a `ShardEntry` for a shard whose files are committed, or a `ShardFailure` for a
shard whose data could not be embedded. It knows nothing of what embedding a shard
means (that is `e5ray.worker.worker`), and the job knows nothing of where it runs.

The table names each executor by a dotted path, so that choosing one imports only
that one (the Ray executor imports ray; the local one must not). A new executor is
one new module plus one line here.

`choose_executor` resolves `--executor auto` once per run, from the tokens the plan will
embed: under `--small-run-tokens` (CPU only) the run embeds in this process and never starts
Ray; else on Ray. It is a pure function of the configuration and the plan, so the choice is
tested without starting Ray, and the run records the executor that ran (a name of the table,
never "auto") with the reason (the manifest's run.executor_reason, the summary, the log).

`end_command` runs what an executor registered for the end of the command (`at_command_end`),
given the command's exit code: a joined Ray cluster is left there with a bound
(`e5ray.executors.ray_start.leave_cluster`), not in Ray's own atexit, which can wait for good.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # types only: this module stays importable without the worker's dependencies
    from e5ray.config import ComputeConfig
    from e5ray.worker.task import ShardTask
    from e5ray.worker.worker import ShardResult, WorkerSpec

# One entry per name in e5ray.config.EXECUTORS (the configuration validates against those).
EXECUTORS: dict[str, str] = {
    "ray": "e5ray.executors.ray:run_on_ray",
    "local": "e5ray.executors.local:run_local",
}

# Executors whose pool has more than one worker: how many, asked while the driver plans
# (work units are sized for it, `e5ray.corpus.units.balanced_target`). Others have one worker.
POOL_SIZES: dict[str, str] = {
    "ray": "e5ray.executors.ray:planned_pool_size",
}


_AT_END: list[Callable[[int], None]] = []


def at_command_end(hook: Callable[[int], None]) -> None:
    """Have `end_command` call `hook(exit_code)` once, when the command is over."""
    if hook not in _AT_END:
        _AT_END.append(hook)


def end_command(exit_code: int) -> None:
    """Run the hooks executors registered (the last first), each once; `exit_code` is the command's."""
    while _AT_END:
        _AT_END.pop()(exit_code)


class Executor(Protocol):
    """Embed `tasks` with workers built from `spec`, placed as `compute` says."""

    def __call__(self, tasks: list[ShardTask], spec: WorkerSpec, compute: ComputeConfig) -> Iterable[ShardResult]: ...


def get_executor(name: str) -> Executor:
    """The executor registered as `name`."""
    try:
        target = EXECUTORS[name]
    except KeyError:
        from e5ray.errors import UsageError

        raise UsageError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}") from None
    module, attr = target.split(":")
    executor: Executor = getattr(importlib.import_module(module), attr)
    return executor


def planned_pool_size(compute: ComputeConfig) -> int:
    """How many workers `compute.executor` will run at once (1 for the in-process executor)."""
    target = POOL_SIZES.get(compute.executor)
    if target is None:
        return 1
    module, attr = target.split(":")
    size: int = getattr(importlib.import_module(module), attr)(compute)
    return size


@dataclass(frozen=True)
class ExecutorChoice:
    """The executor a run uses (a name in EXECUTORS) and, when `--executor auto` chose it, why."""

    name: str
    reason: str | None = None  # None: named on the command line

    def describe(self) -> str:
        """For the summary and the log: e.g. 'local (auto: 42,000 tokens < 50,000)'."""
        return f"{self.name} ({self.reason})" if self.reason else self.name


def choose_executor(compute: ComputeConfig, planned_tokens: int) -> ExecutorChoice:
    """The executor for a run that plans `planned_tokens` tokens (text bytes / 4) to embed.

    A named executor is kept. `auto`: a GPU run goes to Ray (the driver's node may have no
    GPU); a CPU run under `compute.small_run_tokens` embeds in this process (Ray's start
    would cost more than its pool can win back), anything else on Ray."""
    if compute.executor != "auto":
        return ExecutorChoice(compute.executor)
    if compute.device != "cpu":
        return ExecutorChoice("ray", f"auto: a {compute.device} run")
    limit = compute.small_run_tokens
    if planned_tokens < limit:
        return ExecutorChoice("local", f"auto: {planned_tokens:,} tokens < {limit:,}")
    return ExecutorChoice("ray", f"auto: {planned_tokens:,} tokens >= {limit:,}")
