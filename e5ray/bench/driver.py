"""Driver cost at scale: the S3 requests and wall time of planning, resume, refresh and verify.

The driver's work before the first unit is handed out must not grow with the output's bytes,
and its serial requests must not grow with the number of units (issue 9). This measures it on
a real S3 endpoint (`python -m e5ray.bench driver` starts SeaweedFS on loopback):

- every S3 call this process makes is counted where every s3fs request passes,
  aiobotocore's `AioBaseClient._make_api_call`: by kind (LIST, HEAD, GET, PUT, DELETE), with
  its latency, and for GETs the bytes the store sent, by the output folder of the object
  (`shards`, `markers`, `manifests`, ...; `input` for the corpus). Retries inside botocore are
  one call; s3fs' own retries are one call each;
- the phases, each the driver's work before an executor gets units (`plan_run` and the
  row-reuse decision): (a) planning a fresh run; the job killed after `kill_after` units
  (an exception out of the executor: markers written, no commit; the driver's final
  checkpoint is not written, as a killed driver writes none: `e5ray.job.checkpoints`);
  (b) resume planning (with the seconds of its steps, `e5ray.bench.steps`); the job
  finished (the resume); (c) refresh planning with nothing
  changed; (d) `verify --quick` and full verify.

The job runs on the local executor, in this process, so its workers' requests are counted
too (phases `job-killed`, `job-resumed`); planning is the same code whichever executor embeds.
Nothing here imports Ray.
"""

from __future__ import annotations

import io
import json
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from e5ray.bench.steps import timed_steps
from e5ray.config import JobConfig
from e5ray.corpus.units import UnitTarget, needs_footer
from e5ray.job import checkpoints
from e5ray.job.run import PlannedRun, plan_run, run_job
from e5ray.output.listing import parallel_map
from e5ray.output.manifest import Manifest
from e5ray.output.verify import verify_output
from e5ray.output.versions import MANIFEST, SHARDS_FILE, read_manifest
from e5ray.refresh.prepare import prepare_reuse
from e5ray.store.filesystem import OutputDir, filesystem_for
from e5ray.testing.words import sample_words
from e5ray.worker.task import ShardTask
from e5ray.worker.worker import EmbeddingWorker, WorkerSpec

KINDS = {
    "ListObjectsV2": "LIST",
    "ListObjects": "LIST",
    "ListBuckets": "LIST",
    "HeadObject": "HEAD",
    "HeadBucket": "HEAD",
    "GetObject": "GET",
    "PutObject": "PUT",
    "CreateMultipartUpload": "PUT",
    "UploadPart": "PUT",
    "CompleteMultipartUpload": "PUT",
    "CopyObject": "PUT",
    "DeleteObject": "DELETE",
    "DeleteObjects": "DELETE",
}


@dataclass
class Tally:
    """What one phase asked of the store."""

    requests: Counter[str] = field(default_factory=Counter)  # kind -> calls
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # kind -> summed latency
    get_bytes: Counter[str] = field(default_factory=Counter)  # folder -> bytes sent
    by_folder: Counter[str] = field(default_factory=Counter)  # "KIND folder" -> calls

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "total_requests": sum(self.requests.values()),
            "mean_ms": {k: round(1000 * self.seconds[k] / n, 2) for k, n in sorted(self.requests.items())},
            "requests_by_folder": dict(sorted(self.by_folder.items())),
            "get_bytes_by_folder": dict(sorted(self.get_bytes.items())),
        }


class RequestCounter:
    """Counts every S3 call of this process while installed (a context manager), per phase."""

    def __init__(self, output_root: str) -> None:
        self.output_root = output_root.rstrip("/") + "/"  # bucket/prefix, as s3fs names it
        self.current: Tally | None = None
        self.phases: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._original: Any = None

    def folder(self, bucket: str, key: str) -> str:
        path = f"{bucket}/{key}"
        if not path.startswith(self.output_root):
            return "input"
        rel = path[len(self.output_root) :]
        return rel.split("/", 1)[0] if "/" in rel else rel

    def record(self, operation: str, params: dict[str, Any], seconds: float, response: Any) -> None:
        kind = KINDS.get(operation, operation)
        with self._lock:
            tally = self.current
            if tally is None:
                return
            tally.requests[kind] += 1
            tally.seconds[kind] += seconds
            key = params.get("Key", params.get("Prefix", ""))
            where = self.folder(str(params.get("Bucket", "")), str(key)) if "Bucket" in params else "-"
            tally.by_folder[f"{kind} {where}"] += 1
            if kind == "GET":
                tally.get_bytes[where] += int((response or {}).get("ContentLength") or 0)

    def __enter__(self) -> RequestCounter:
        from aiobotocore.client import AioBaseClient

        self._original = original = AioBaseClient._make_api_call
        counter = self

        async def counted(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            t0, response = time.perf_counter(), None
            try:
                response = await original(client, operation_name, api_params)
                return response
            finally:
                counter.record(operation_name, api_params, time.perf_counter() - t0, response)

        AioBaseClient._make_api_call = counted
        return self

    def __exit__(self, *exc: object) -> None:
        from aiobotocore.client import AioBaseClient

        AioBaseClient._make_api_call = self._original

    @contextmanager
    def phase(self, name: str) -> Iterator[dict[str, Any]]:
        """Count the block's requests and time it; the yielded dict takes the phase's own figures."""
        extra: dict[str, Any] = {}
        self.current = Tally()
        t0 = time.perf_counter()
        try:
            yield extra
        finally:
            seconds = time.perf_counter() - t0
            tally, self.current = self.current, None
            self.phases[name] = {"seconds": round(seconds, 3), **tally.to_dict(), **extra}


def _texts(rng: random.Random, words: list[str], n: int) -> list[str]:
    return [" ".join(rng.choice(words) for _ in range(rng.randint(8, 24))) for _ in range(n)]


def write_corpus(uri: str, small_files: int, split_files: int, row_groups: int, target: UnitTarget) -> int:
    """A corpus of `small_files` one-row Parquet files (one unit each, footers not read) and
    `split_files` files of `row_groups` one-row row groups, big enough at `target` for planning
    to read their footers and split them (`--unit-rows 1`). Returns the number of units."""
    fs, root = filesystem_for(uri)
    words = sample_words()

    def write(i: int) -> None:
        split = i >= small_files
        n = row_groups if split else 1
        table = pa.table({"id": [f"d{i:06d}-{r}" for r in range(n)], "text": _texts(random.Random(i), words, n)})
        sink = io.BytesIO()
        pq.write_table(table, sink, row_group_size=1)
        data = sink.getvalue()
        if needs_footer(len(data), target) != split:  # else planning would not do what is measured
            raise ValueError(
                f"a {'split' if split else 'small'} file of {len(data)} bytes at {target}: pick --unit-tokens"
            )
        fs.pipe_file(f"{root}/{'split' if split else 'small'}/{i // 1000:03d}/f{i:06d}.parquet", data)

    parallel_map(write, range(small_files + split_files))
    return small_files + split_files * row_groups


class DriverKilled(Exception):
    """Stands for a killed driver: raised out of the executor, so no clean-up code of the job runs."""


def threaded_executor(threads: int, kill_after: int | None = None) -> Callable[..., Iterator[Any]]:
    """Units on `threads` in-process workers (a unit's time here is mostly store latency, which
    threads overlap); with `kill_after`, `DriverKilled` once that many have finished (units in
    flight then finish, as on actors whose driver died; queued ones never start)."""

    def run(tasks: list[ShardTask], spec: WorkerSpec, compute: Any) -> Iterator[Any]:
        local = threading.local()

        def embed(task: ShardTask) -> Any:
            if not hasattr(local, "worker"):
                local.worker = EmbeddingWorker(spec, 1)
            return local.worker.embed(task)

        pool = ThreadPoolExecutor(max_workers=threads)
        try:
            futures = [pool.submit(embed, t) for t in tasks]
            for done, future in enumerate(as_completed(futures), start=1):
                yield future.result()
                if kill_after is not None and done >= kill_after:
                    raise DriverKilled(f"killed after {kill_after} units")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    return run


def driver_plan(config: JobConfig) -> PlannedRun:
    """What the driver does before the executor gets units: `run_job`'s planning steps."""
    output = OutputDir(config.output.uri, config.storage_options())
    planned = plan_run(config, output)
    prepare_reuse(
        config.reuse,
        config.full,
        planned.previous,
        config.output.format,
        config.model.long_text,
        output.uri,
        config.storage_options(),
        needs_index=bool(planned.todo),
    )
    return planned


def _plan_figures(planned: PlannedRun) -> dict[str, int]:
    return {
        "units_split": len(planned.units),  # units of the sources to embed
        "carried": len(planned.plan.carried),  # unit entries of unchanged sources
        "reused": len(planned.reused),  # units a killed run finished
        "todo": len(planned.todo),
    }


def manifest_figures(output: OutputDir, scale_to: int) -> dict[str, Any]:
    """Size of the real manifest, bytes per unit entry, and its parse time; the same at
    `scale_to` entries (the real entries repeated), to see where JSON stops being cheap."""
    blob = output.read_bytes(MANIFEST)
    data = json.loads(blob)
    if SHARDS_FILE in data:  # entries in a Parquet side file: `python -m e5ray.bench manifest` compares layouts
        t0 = time.perf_counter()
        loaded = read_manifest(output, MANIFEST)
        return {
            "entries": len(loaded.shards),
            "bytes": len(blob),
            "side_file_bytes": data[SHARDS_FILE]["bytes"],
            "load_seconds": round(time.perf_counter() - t0, 3),
        }
    entries = data["shards"]
    empty = len(json.dumps({**data, "shards": []}, indent=1, ensure_ascii=False).encode())
    per_entry = (len(blob) - empty) / max(1, len(entries))

    def parse(raw: bytes) -> float:
        t0 = time.perf_counter()
        Manifest.from_dict(json.loads(raw))
        return time.perf_counter() - t0

    out: dict[str, Any] = {
        "entries": len(entries),
        "bytes": len(blob),
        "bytes_per_entry": round(per_entry, 1),
        "parse_seconds": round(parse(blob), 3),
    }
    if scale_to > len(entries) and entries:
        copies = [entries[i % len(entries)] for i in range(scale_to)]
        big = json.dumps({**data, "shards": copies}, indent=1, ensure_ascii=False).encode()
        out |= {"scaled_entries": scale_to, "scaled_bytes": len(big), "scaled_parse_seconds": round(parse(big), 3)}
    return out


@contextmanager
def no_final_checkpoint() -> Iterator[None]:
    """A killed driver writes no final checkpoint: its last units are found by their markers."""
    close = checkpoints.CheckpointWriter.close

    def close_unflushed(
        self: checkpoints.CheckpointWriter, flush: bool = True, wait_s: float | None = checkpoints.CLOSE_WAIT_S
    ) -> None:
        close(self, flush=False, wait_s=wait_s)

    checkpoints.CheckpointWriter.close = close_unflushed  # type: ignore[method-assign]
    try:
        yield
    finally:
        checkpoints.CheckpointWriter.close = close  # type: ignore[method-assign]


def run_phases(
    options: dict[str, Any],
    kill_after: int,
    threads: int = 8,
    scale_to: int = 0,
    stop_after_resume_plan: bool = False,
) -> dict[str, Any]:
    """Every phase on a corpus and an empty output (`options`: `JobConfig.from_options`'s, the
    executor is the local one); returns each phase's figures and the manifest's.
    `stop_after_resume_plan`: phases a, job-killed and b only (no manifest figures)."""
    local = JobConfig.from_options(**options, executor="local")
    output = OutputDir(local.output.uri, local.storage_options())
    results: dict[str, Any] = {}
    with RequestCounter(output.root) as counter:
        with counter.phase("a-fresh-plan") as extra:
            extra |= _plan_figures(driver_plan(local))
        with counter.phase("job-killed") as extra, no_final_checkpoint():
            try:
                run_job(local, executor=threaded_executor(threads, kill_after))
            except DriverKilled:
                extra["killed_after_units"] = kill_after
        with counter.phase("b-resume-plan") as extra, timed_steps() as steps:
            planned = driver_plan(local)
            extra |= _plan_figures(planned) | {"checkpoints_read": len(planned.checkpoints)}
            extra["step_seconds"] = steps  # filled as the steps run: read when the phase ends
        if stop_after_resume_plan:
            results["phases"] = counter.phases
            return results
        with counter.phase("job-resumed") as extra:
            extra["run_seconds"] = run_job(local, executor=threaded_executor(threads)).run.seconds
        with counter.phase("c-refresh-plan") as extra:
            extra |= _plan_figures(driver_plan(local))
        for name, quick in (("d-verify-quick", True), ("d-verify-full", False)):
            with counter.phase(name) as extra:
                extra["problems"] = verify_output(output, quick=quick)
    results["phases"] = counter.phases
    results["manifest"] = manifest_figures(output, scale_to)
    return results
