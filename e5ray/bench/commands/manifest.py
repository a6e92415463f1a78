"""Manifest size and load time at many units: plain JSON against the Parquet side file.

    python -m e5ray.bench manifest --output OUT --entries 10000 100000 --json-out bench-results/manifest-json-vs-side-file.json

OUT is a real run's output: its manifest's entries are repeated to each `--entries`, each
made a distinct unit (`e5ray.bench.manifest`), and written and loaded in both layouts; the
bytes per entry, the write and load seconds and the schema check's share are what it
measures. Prints one JSON document (also to `--json-out`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from e5ray.bench.commands.support import emit
from e5ray.bench.manifest import measure
from e5ray.output.versions import load_latest
from e5ray.store.filesystem import OutputDir


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m e5ray.bench manifest", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--output", required=True, help="a real run's output, whose entries are repeated")
    parser.add_argument("--entries", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--validate-entries", type=int, default=10_000, help="JSON schema check timed on at most this many entries"
    )
    parser.add_argument("--repeat", type=int, default=1, help="loads per layout (the best is kept)")
    parser.add_argument("--json-out", help="also write the JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    manifest = load_latest(OutputDir(args.output))
    if manifest is None:
        raise SystemExit(f"{args.output}: no manifest")
    results = {
        "source_output": args.output,
        "source_entries": len(manifest.shards),
        "runs": [measure(manifest, n, args.validate_entries, args.repeat) for n in args.entries],
    }
    emit(results, args.json_out)
    return 0
