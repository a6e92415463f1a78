"""What runs where the model is: build the embedder once, check its space, embed tasks.

An executor places `EmbeddingWorker`s (one per Ray actor, or one in-process) and feeds
them `ShardTask`s; each call returns a `ShardEntry` (the shard's files are committed
and its marker written) or a `ShardFailure`. No driver code lives here: a worker never
plans, lists versions or commits a manifest.

Only data errors become a `ShardFailure`: an unreadable or truncated file, a missing
column, bytes that do not decode. Retrying such a shard fails the same way, and it
must not cost the work done on the other shards. Transient errors (a refused or reset
connection, a timeout) are retried here, `retries` times with backoff, and then become
a failure too (the run commits nothing); a lost node is Ray's to retry, as often. Any
other exception is a bug and propagates, so that it is seen as one.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa

from e5ray.config import JobConfig, ModelConfig
from e5ray.corpus.sources import SourceShard
from e5ray.errors import EXIT_STORAGE_UNAVAILABLE, DataError, DeadlineExceeded, UsageError
from e5ray.output.manifest import ShardEntry
from e5ray.output.sinks.base import get_sink
from e5ray.store.failures import describe, endpoint_of, storage_step
from e5ray.store.filesystem import OutputDir, s3_options
from e5ray.store.timeouts import StoragePolicy
from e5ray.worker.embed_unit import embed_shard
from e5ray.worker.reuse_unit import embed_shard_reusing_rows
from e5ray.worker.shared_batches import can_share, iter_units_together
from e5ray.worker.task import ShardTask

log = logging.getLogger("e5ray")
T = TypeVar("T")

# What a shard's data can raise while being read: our own corpus errors, Arrow's parse
# errors, I/O errors (a missing or unreadable file, a bad gzip stream), a truncated
# gzip (EOFError), undecodable bytes.
DATA_ERRORS: tuple[type[BaseException], ...] = (
    DataError,
    pa.ArrowException,
    OSError,
    EOFError,
    UnicodeDecodeError,
    zlib.error,
)
# Errors that say nothing about the data: the same unit may well succeed on a later try.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, as plain picklable data (no filesystems, no sessions)."""

    model: ModelConfig
    device: str
    precision: str
    output_uri: str
    output_format: str
    chunk_rows: int
    space_fingerprint: str
    s3_endpoint: str | None = None
    storage: StoragePolicy = field(default_factory=StoragePolicy)  # e5ray.store.timeouts
    retries: int = 3

    @classmethod
    def for_job(cls, config: JobConfig, space_fingerprint: str) -> WorkerSpec:
        return cls(
            model=config.model,
            device=config.compute.device,
            precision=config.precision,
            output_uri=config.output.uri,
            output_format=config.output.format,
            chunk_rows=config.compute.rows_per_chunk,
            space_fingerprint=space_fingerprint,
            s3_endpoint=config.s3_endpoint,
            storage=config.storage,
            retries=config.compute.retries,
        )

    def storage_options(self) -> dict[str, Any] | None:
        return s3_options(self.s3_endpoint, self.storage) or None

    def embedder_kwargs(self, threads: int | None) -> dict[str, Any]:
        return {
            "model": self.model.name,
            "model_path": self.model.path,
            "device": self.device,
            "threads": threads,
            "max_length": self.model.max_length,
            "token_budget": self.model.token_budget,
            "precision": self.precision,
            "cache_dir": self.model.cache_dir,
            "storage_options": self.storage_options(),
            "int8_min_cosine": self.model.int8_min_cosine,
            "pooling": self.model.pooling,
            "long_text": self.model.long_text,
            "stride": self.model.stride,
        }


@dataclass(frozen=True)
class ShardFailure:
    """A shard whose data could not be embedded, and why."""

    source: SourceShard
    error: str
    exit_code: int | None = None  # set for storage failures (e5ray.store.failures): not the shard's fault

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error, "source": self.source.to_dict(), "exit_code": self.exit_code}


ShardResult = ShardEntry | ShardFailure


def result_from_dict(data: dict[str, Any]) -> ShardResult:
    """A result sent across processes as its `to_dict`."""
    if "error" in data:
        return ShardFailure(SourceShard.from_dict(data["source"]), data["error"], data.get("exit_code"))
    return ShardEntry.from_dict(data)


def check_embedder_space(embedder: Any, spec: WorkerSpec) -> None:
    """A worker whose model copy differs from the driver's must not write vectors."""
    actual = embedder.space.with_prefix(spec.model.prefix)
    if actual.fingerprint != spec.space_fingerprint:
        raise UsageError(
            f"this worker's model ({embedder.files.onnx_path}, sha256 {actual.model_sha256[:16]}) "
            f"gives embedding space {actual.fingerprint[:16]}, the job planned {spec.space_fingerprint[:16]}: "
            "the nodes hold different copies of the model"
        )


class EmbeddingWorker:
    """One embedder, loaded once, that embeds shard after shard into the output."""

    def __init__(self, spec: WorkerSpec, threads: int | None = None) -> None:
        from e5ray.model.embedder import E5Embedder

        self.spec = spec
        model = spec.model.path or spec.model.name
        with storage_step("staging the model from", str(model), spec.storage_options()):
            self.embedder = E5Embedder(**spec.embedder_kwargs(threads))
        check_embedder_space(self.embedder, spec)
        self.sink_class = get_sink(spec.output_format)
        self.output = OutputDir(spec.output_uri, spec.storage_options())  # this process's own handle
        # Set when a unit found the store not answering: the group's other units fail at once
        # with it instead of each waiting out the same timeouts (one retry budget, not one per unit).
        self.store_down: ShardFailure | None = None

    def embed(self, task: ShardTask) -> ShardResult:
        """The unit's entry, or a ShardFailure when its data cannot be embedded.

        A storage failure (refused, or no answer within the storage policy's timeouts) is
        reported at once: every unit would fail alike, and the policy already retried inside
        its timeouts, so a frozen store fails the run within them; the group's remaining
        units fail with it without trying. Other transient errors
        are tried again, at most `retries` times."""
        # Row-level reuse reads the shard twice and embeds only texts the output lacks (e5ray.worker.reuse_unit).
        embed = embed_shard_reusing_rows if task.reuse_rows else embed_shard
        options = self.spec.storage_options()
        return self.attempt(
            task, lambda: embed(task, self.embedder, self.output, self.sink_class(), options, self.spec.chunk_rows)
        )

    def embed_many(self, tasks: list[ShardTask]) -> list[ShardResult]:
        """One result per task, in order (see `embed_each`)."""
        results: list[ShardResult | None] = [None] * len(tasks)
        for i, result in self._embed_indexed(tasks):
            results[i] = result
        done = [r for r in results if r is not None]
        assert len(done) == len(tasks), "every task gets its result"
        return done

    def embed_each(self, tasks: list[ShardTask]) -> Iterator[ShardResult]:
        """One result per task, each as soon as its unit is committed (or failed), in any
        order. Small units share ONNX batches and write their (separate) outputs in threads
        (e5ray.worker.shared_batches); the others go one at a time, after them."""
        for _, result in self._embed_indexed(tasks):
            yield result

    def _embed_indexed(self, tasks: list[ShardTask]) -> Iterator[tuple[int, ShardResult]]:
        self.store_down = None  # a new group: the store is tried again
        shared = [i for i, t in enumerate(tasks) if can_share(t, self.embedder)]
        if len(shared) < 2:
            shared = []  # one small unit alone gains nothing from shared batches
        if shared:
            together = iter_units_together(
                [tasks[i] for i in shared],
                self.embedder,
                self.output,
                self.sink_class,
                self.attempt,
                self.spec.storage_options(),
                self.spec.chunk_rows,
            )
            for at, result in together:
                yield shared[at], result
        done_together = set(shared)
        for i, task in enumerate(tasks):
            if i not in done_together:
                yield i, self.embed(task)

    def attempt(self, task: ShardTask, step: Callable[[], T]) -> T | ShardFailure:
        """`step()` of `task` under the worker's error rules (see the module docstring):
        transient errors tried again, data errors a ShardFailure, anything else raised."""
        where = task.source.uri + (f" [{task.unit.label}]" if task.unit else "")
        if self.store_down is not None:  # the store stopped answering for an earlier unit of this group
            return ShardFailure(task.source, self.store_down.error, self.store_down.exit_code)
        options = self.spec.storage_options()
        for attempt in range(self.spec.retries + 1):
            try:
                return step()
            except DeadlineExceeded:
                raise
            except Exception as exc:
                found = describe(exc, f"embedding {where} into", self.spec.output_uri, endpoint_of(options))
                if found is not None:
                    log.error("unit %s: %s", where, found)
                    failure = ShardFailure(task.source, str(found), found.exit_code)
                    if found.exit_code == EXIT_STORAGE_UNAVAILABLE:
                        self.store_down = failure
                    return failure
                if isinstance(exc, TRANSIENT_ERRORS):
                    if attempt == self.spec.retries:
                        log.error("unit %s failed %d times: %s: %s", where, attempt + 1, type(exc).__name__, exc)
                        return ShardFailure(task.source, f"{type(exc).__name__} (after {attempt + 1} tries): {exc}")
                    log.warning("unit %s: %s: %s; trying again", where, type(exc).__name__, exc)
                    time.sleep(min(2.0**attempt, 30.0))
                    continue
                if not isinstance(exc, DATA_ERRORS):
                    raise
                log.error("unit %s failed: %s: %s", where, type(exc).__name__, exc)
                label = f"[{task.unit.label}] " if task.unit else ""
                return ShardFailure(task.source, f"{label}{type(exc).__name__}: {exc}")
        raise AssertionError("unreachable: the last attempt returns")
