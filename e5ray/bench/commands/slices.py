"""Row slices of one huge row group: read amplification and an actor's peak memory.

    python -m e5ray.bench slices --model-path DEMO --rows 1000000 --text-bytes 300 --actors 1 3

Writes one Parquet file of `--rows` rows (~`--text-bytes` bytes of text each) in a single row
group (pyarrow's default row group holds up to 1,048,576 rows), then, each in a fresh process
so that one phase's memory does not count in the next:
- `amplification`: for each pool size in `--actors`, the units planned with the default targets
  (`balanced_target`), each unit read in full through the Parquet reader over a file object that
  counts bytes: bytes read by all units / the file's size;
- `rss`: an EmbeddingWorker (the actor's worker) loads the model, then embeds the first and the
  last slice (the last streams the whole group before it); peak RSS (`ru_maxrss`) after the
  model load and after the slices.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_file(path: str, rows: int, text_bytes: int) -> None:
    from e5ray.testing import sample_words

    words = np.array(sample_words())
    rng = np.random.default_rng(0)
    mean = float(np.mean([len(w) + 1 for w in words]))
    per_row = max(1, int(text_bytes / mean))
    table_texts = [" ".join(words[rng.integers(0, len(words), per_row)]) for _ in range(rows)]
    pq.write_table(pa.table({"id": np.arange(rows, dtype=np.int64), "text": table_texts}), path)


class CountingFS:
    """A local filesystem whose files count the bytes read from them."""

    def __init__(self) -> None:
        self.read = 0

    def open(self, path: str, mode: str = "rb") -> Any:
        fs = self
        fh = open(path, mode)  # noqa: SIM115 - closed by the reader's context manager

        class Counting:
            def __getattr__(self, name: str) -> Any:
                return getattr(fh, name)

            def read(self, n: int = -1) -> bytes:
                data = fh.read(n)
                fs.read += len(data)
                return data

            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: Any) -> None:
                fh.close()

        return Counting()


def units_for(path: str, actors: int) -> list[Any]:
    from e5ray.corpus.sources import discover, parquet_row_groups
    from e5ray.corpus.units import BYTES_PER_TOKEN, UnitTarget, balanced_target, split_row_groups

    (shard,) = discover(path)
    groups = parquet_row_groups(shard, "text")
    total = sum(g.text_bytes for g in groups) // BYTES_PER_TOKEN
    return split_row_groups(groups, balanced_target(UnitTarget(), total, actors))


def amplification(path: str, actors: int) -> dict[str, Any]:
    from e5ray.corpus.parquet_reader import parquet_chunks

    units = units_for(path, actors)
    fs, t0 = CountingFS(), time.perf_counter()
    for unit in units:
        for _ in parquet_chunks(fs, path, path, "id", "text", 2048, unit):
            pass
    size = os.path.getsize(path)
    return {
        "actors": actors,
        "units": len(units),
        "file_bytes": size,
        "bytes_read": fs.read,
        "amplification": round(fs.read / size, 2),
        "read_seconds": round(time.perf_counter() - t0, 1),
    }


def peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss(path: str, model_path: str, out: str) -> dict[str, Any]:
    from e5ray.config import JobConfig
    from e5ray.job.plan import plan_run
    from e5ray.store.filesystem import OutputDir
    from e5ray.worker.worker import EmbeddingWorker, WorkerSpec

    before = peak_mb()
    config = JobConfig.from_options(input=path, output=out, model_path=model_path, executor="local", max_actors=3)
    planned = plan_run(config, OutputDir(out))
    worker = EmbeddingWorker(WorkerSpec.for_job(config, planned.space.fingerprint), 2)
    worker.embed(planned.units[0].with_unit(planned.units[0].unit, 1))  # warms the model on the first slice
    loaded = peak_mb()
    todo = sorted(planned.units, key=lambda t: t.unit.start if t.unit else 0)
    t0, rows = time.perf_counter(), 0
    for task in (todo[-1],):
        result = worker.embed(task)
        rows += getattr(result, "rows", 0)
    return {
        "units": len(planned.units),
        "unit": todo[-1].unit.label if todo[-1].unit else None,
        "peak_mb_at_start": before,
        "peak_mb_after_model_and_first_slice": loaded,
        "peak_mb_after_last_slice": peak_mb(),
        "last_slice_rows": rows,
        "last_slice_seconds": round(time.perf_counter() - t0, 1),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m e5ray.bench slices", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--text-bytes", type=int, default=300)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--phase", choices=["write", "amplification", "rss"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def child(args: argparse.Namespace, phase: str, *extra: str) -> Any:
    argv = [sys.executable, "-m", "e5ray.bench", "slices", "--model-path", args.model_path, "--phase", phase]
    argv += ["--file", args.file, "--rows", str(args.rows), "--text-bytes", str(args.text_bytes), *extra]
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase == "write":
        write_file(args.file, args.rows, args.text_bytes)
        print(json.dumps({"rows": args.rows, "bytes": os.path.getsize(args.file)}))
    elif args.phase == "amplification":
        print(json.dumps(amplification(args.file, args.actors[0])))
    elif args.phase == "rss":
        print(json.dumps(rss(args.file, args.model_path, str(Path(args.file).parent / "out"))))
    else:
        work = Path(args.workdir or tempfile.mkdtemp(prefix="e5sl-"))
        work.mkdir(parents=True, exist_ok=True)
        args.file = str(work / "in" / "one-group.parquet")
        Path(args.file).parent.mkdir(exist_ok=True)
        result: dict[str, Any] = {"load_at_start": os.getloadavg()[0], "file": child(args, "write")}
        result["amplification"] = [child(args, "amplification", "--actors", str(a)) for a in args.actors]
        result["rss"] = child(args, "rss")
        result["load_at_end"] = os.getloadavg()[0]
        print(json.dumps(result))
    return 0
