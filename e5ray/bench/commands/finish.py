"""What finishing a big unit costs an actor: plain (hash, then upload) against streamed.

    python -m e5ray.bench finish --rows 2000 20000 --dim 1024 --repeat 3

A worker writes a unit's vectors to a local file chunk by chunk as it embeds them
(`e5ray.output.sinks.parquet`). Plain: after the last chunk it hashes the file for its
content-addressed name and uploads it in one go. Streamed (`e5ray.store.stream_upload`, object
stores): a thread sends full parts while the file grows; after the last chunk only the last
part, the completion and a server-side copy to the final name are left. This benchmark writes
units with the worker's own code at a modelled embedding pace (a sleep per chunk of rows x
`--tokens-per-doc` / `--actor-tokens-per-s`; defaults 63.6 tokens per document and 174,300
tokens/s, a third of the 523,000 tokens/s one H200 gave e5-large in BENCHMARKS.md, the GPU
default being three actors per GPU), finishes each both ways, alternating (so load changes hit
both alike), and prints the seconds from the last chunk to the stored, stamped object, and
that time's share of the actor's time per unit. Invariant checked on every unit: the stored
object hashes to its name. Store: SeaweedFS on loopback started here
(`e5ray.bench.commands.support`), or `--endpoint` (credentials from the environment).
Prints one JSON document (also to `--json-out`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa

from e5ray.bench.commands.support import command_line, emit, start_seaweed
from e5ray.output.sinks.parquet import ParquetSink
from e5ray.store import stream_upload
from e5ray.store.filesystem import OutputDir, sha256_of
from e5ray.store.stream_upload import follow_sink

CHUNK_ROWS = 2048  # the sink receives vectors chunk by chunk, as from the embedder
MODES = ("plain", "streamed")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m e5ray.bench finish", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 20000], help="rows per unit, one size each")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tokens-per-doc", type=float, default=63.6)
    parser.add_argument("--actor-tokens-per-s", type=float, default=174_300.0)
    parser.add_argument("--endpoint", help="an S3 endpoint to use instead of starting SeaweedFS")
    parser.add_argument("--bucket", help="an existing bucket on --endpoint")
    parser.add_argument("--part-bytes", type=int, default=stream_upload.PART_BYTES, help="streamed part size")
    parser.add_argument("--json-out", help="also write the JSON here")
    return parser.parse_args(argv)


def write_unit(rows: int, args: argparse.Namespace, sink: ParquetSink) -> str:
    """Write one unit's vectors through `sink` as a worker does, chunk by chunk at the modelled
    embedding pace (a sleep per chunk: the accelerator's time, when the actor's CPU is free);
    returns the local file."""
    rng = np.random.default_rng(rows)
    pace = CHUNK_ROWS * args.tokens_per_doc / args.actor_tokens_per_s
    for start in range(0, rows, CHUNK_ROWS):
        n = min(CHUNK_ROWS, rows - start)
        vectors = rng.standard_normal((n, args.dim), dtype=np.float32)
        time.sleep(pace * n / CHUNK_ROWS)
        sink.write(list(range(start, start + n)), vectors)
    (file,) = sink.close()
    return str(file.local_path)


def time_unit(
    output: OutputDir, scratch: Path, rows: int, args: argparse.Namespace, name: str, streamed: bool
) -> dict[str, float]:
    """Write one unit, then finish it: plain (hash, one upload, stamp) or streamed (parts sent
    while it is written; at the end the last part, the server-side copy and the stamp).
    Seconds of each, the file's bytes and what streaming sent before the end."""
    sink = ParquetSink()
    sink.open(str(scratch), name, pa.int64(), args.dim)
    follow = follow_sink(sink.local_path, output, "shards") if streamed else None
    t0 = time.perf_counter()
    local_path = write_unit(rows, args, sink)
    t1 = time.perf_counter()
    size = os.path.getsize(local_path)
    sent = follow.finish() if follow is not None else None
    if sent is not None and follow is not None:
        sha = sent[0]
        target = f"shards/{name}-{sha[:12]}.parquet"
        follow.place(target)
        os.unlink(local_path)
    else:
        sha = sha256_of(fsspec.filesystem("file"), local_path)
        target = f"shards/{name}-{sha[:12]}.parquet"
        output.upload(local_path, target)
    output.stamp(target)
    t2 = time.perf_counter()
    if sha != hashlib.sha256(output.fs.cat_file(output.path(target))).hexdigest():
        raise AssertionError(f"{target}: the stored object does not hash to its name")
    before = follow.sent_before_finish if follow is not None else 0
    return {"bytes": size, "write_s": t1 - t0, "finish_s": t2 - t1, "sent_before_finish": before}


def summarise(rows: int, runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> dict[str, Any]:
    """One size's medians, shares of the actor's time and the runs themselves."""
    embed = rows * args.tokens_per_doc / args.actor_tokens_per_s
    row: dict[str, Any] = {"rows": rows, "bytes": int(runs["plain"][0]["bytes"]), "modelled_embed_s": round(embed, 2)}
    for mode, found in runs.items():
        finish = statistics.median(r["finish_s"] for r in found)
        row[f"{mode}_median_finish_s"] = round(finish, 3)
        row[f"{mode}_finish_share_of_actor_time"] = round(finish / (finish + embed), 3)
    row["streamed_sent_before_finish"] = [int(r["sent_before_finish"]) for r in runs["streamed"]]
    row["finish_ratio_plain_over_streamed"] = round(row["plain_median_finish_s"] / row["streamed_median_finish_s"], 2)
    row["runs"] = {mode: [{k: round(v, 3) for k, v in r.items()} for r in found] for mode, found in runs.items()}
    return row


def measure(output: OutputDir, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per size, plain and streamed alternating (so load changes hit both alike); medians."""
    results = []
    scratch = Path(tempfile.mkdtemp(prefix="e5fin-"))
    try:
        for rows in args.rows:
            runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
            for i in range(args.repeat):
                for mode in MODES:
                    name = f"u{rows}-{mode}-{i}"
                    runs[mode].append(time_unit(output, scratch, rows, args, name, mode == "streamed"))
            results.append(summarise(rows, runs, args))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    stream_upload.PART_BYTES = args.part_bytes  # read by every StreamingUpload made after this
    server = None
    work = Path(tempfile.mkdtemp(prefix="e5fin-store-"))
    try:
        if args.endpoint:
            os.environ["AWS_ENDPOINT_URL"] = args.endpoint
            bucket = args.bucket or f"fin-{uuid.uuid4().hex[:8]}"
        else:
            server = start_seaweed(work)
            bucket = server.make_bucket(f"fin-{uuid.uuid4().hex[:8]}")
        output = OutputDir(f"s3://{bucket}/out-{uuid.uuid4().hex[:6]}")
        result = {
            "command": command_line("finish", argv),
            "store": args.endpoint or "SeaweedFS on loopback",
            "dim": args.dim,
            "part_bytes": args.part_bytes,
            "tokens_per_doc": args.tokens_per_doc,
            "actor_tokens_per_s": args.actor_tokens_per_s,
            "units": measure(output, args),
        }
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    emit(result, args.json_out)
    return 0
