"""What finishing a big unit costs: hashing and uploading its output, against embedding it.

    python jobs/bench_finish.py --rows 2000 20000 --dim 1024 --repeat 3

A worker writes a unit's vectors to a local file as it embeds them (`e5ray.sinks.parquet`),
then hashes the file for its content-addressed name and uploads it in one go
(`e5ray.unit_commit`): those two steps are the time an actor spends on a unit after its last
batch. This script times them with the worker's own code (the Parquet sink, `sha256_of`,
`OutputDir.upload` and the stamp read), and the server-side copy that a streamed upload to a
temporary key would still need at the end, against an S3 store: SeaweedFS on loopback started here
(the suite's launcher, `tests/s3server.py`), or `--endpoint` (credentials from the environment).

It then states the share of an actor's time that finishing takes, with the embedding time
modelled as rows x `--tokens-per-doc` / `--actor-tokens-per-s` (defaults: 63.6 tokens per
document and 174,300 tokens/s, a third of the 523,000 tokens/s one H200 gave e5-large in
BENCHMARKS.md, the GPU default being three actors per GPU). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from e5ray.sinks.parquet import ParquetSink  # noqa: E402
from e5ray.storage import OutputDir, sha256_of  # noqa: E402

CHUNK_ROWS = 2048  # the sink receives vectors chunk by chunk, as from the embedder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 20000], help="rows per unit, one size each")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tokens-per-doc", type=float, default=63.6)
    parser.add_argument("--actor-tokens-per-s", type=float, default=174_300.0)
    parser.add_argument("--endpoint", help="an S3 endpoint to use instead of starting SeaweedFS")
    parser.add_argument("--bucket", help="an existing bucket on --endpoint")
    parser.add_argument("--json-out", help="also write the JSON here")
    return parser.parse_args(argv)


def time_unit(output: OutputDir, scratch: Path, rows: int, dim: int, name: str) -> dict[str, float]:
    """Write one unit's output as a worker does, then hash and upload it; seconds of each step."""
    rng = np.random.default_rng(rows)
    sink = ParquetSink()
    sink.open(str(scratch), name, pa.int64(), dim)
    t0 = time.perf_counter()
    for start in range(0, rows, CHUNK_ROWS):
        n = min(CHUNK_ROWS, rows - start)
        sink.write(list(range(start, start + n)), rng.standard_normal((n, dim), dtype=np.float32))
    (file,) = sink.close()
    t1 = time.perf_counter()
    size = os.path.getsize(file.local_path)
    sha = sha256_of(fsspec.filesystem("file"), file.local_path)
    t2 = time.perf_counter()
    target = f"shards/{name}-{sha[:12]}.parquet"
    output.upload(file.local_path, target)
    t3 = time.perf_counter()
    output.stamp(target)
    t4 = time.perf_counter()
    # What a streamed upload would still pay at the end: its parts go to a temporary key while
    # the unit is embedded (the content's name is known only at the end), then a server-side copy.
    output.fs.copy(output.path(target), output.path(target + ".copy"))
    t5 = time.perf_counter()
    times = {"write_s": t1 - t0, "sha256_s": t2 - t1, "upload_s": t3 - t2, "stamp_s": t4 - t3, "copy_s": t5 - t4}
    return {"bytes": size, **times}


def measure(output: OutputDir, args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    scratch = Path(tempfile.mkdtemp(prefix="e5fin-"))
    try:
        for rows in args.rows:
            runs = [time_unit(output, scratch, rows, args.dim, f"u{rows}-{i}") for i in range(args.repeat)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            finish = med["sha256_s"] + med["upload_s"] + med["stamp_s"]
            embed = rows * args.tokens_per_doc / args.actor_tokens_per_s
            results.append(
                {
                    "rows": rows,
                    "bytes": int(med["bytes"]),
                    "median_write_s": round(med["write_s"], 3),
                    "median_sha256_s": round(med["sha256_s"], 3),
                    "median_upload_s": round(med["upload_s"], 3),
                    "median_stamp_s": round(med["stamp_s"], 3),
                    "median_server_copy_s": round(med["copy_s"], 3),
                    "upload_MB_per_s": round(med["bytes"] / med["upload_s"] / 1e6, 1),
                    "modelled_embed_s": round(embed, 2),
                    "finish_share_of_actor_time": round(finish / (finish + embed), 3),
                    "runs": [{k: round(v, 3) for k, v in r.items()} for r in runs],
                }
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def main(args: argparse.Namespace) -> dict[str, Any]:
    server = None
    work = Path(tempfile.mkdtemp(prefix="e5fin-store-"))
    try:
        if args.endpoint:
            os.environ["AWS_ENDPOINT_URL"] = args.endpoint
            bucket = args.bucket or f"fin-{uuid.uuid4().hex[:8]}"
        else:
            sys.path.insert(0, str(REPO / "tests"))
            from s3server import SeaweedS3  # the suite's launcher: one copy of the port and process handling

            server = SeaweedS3(work / "seaweedfs")
            server.start()
            os.environ.update(server.env())
            bucket = server.make_bucket(f"fin-{uuid.uuid4().hex[:8]}")
        output = OutputDir(f"s3://{bucket}/out-{uuid.uuid4().hex[:6]}")
        result = {
            "command": " ".join(["python", "jobs/bench_finish.py", *sys.argv[1:]]),
            "store": args.endpoint or "SeaweedFS on loopback",
            "dim": args.dim,
            "tokens_per_doc": args.tokens_per_doc,
            "actor_tokens_per_s": args.actor_tokens_per_s,
            "units": measure(output, args),
        }
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main(parse_args())
