"""Manifest size and load time at many units: plain JSON against the Parquet side file.

    python jobs/bench_manifest.py --output OUT --entries 10000 100000 --json-out bench-results/manifest-side-file.json

OUT is a real run's output (its manifest's entries are repeated to each `--entries`, made
distinct units: see `e5ray.bench.manifest`). Prints one JSON document (also to `--json-out`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from e5ray.bench.manifest import measure  # noqa: E402
from e5ray.output.versions import load_latest  # noqa: E402
from e5ray.store.filesystem import OutputDir  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--output", required=True, help="a real run's output, whose entries are repeated")
    parser.add_argument("--entries", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--validate-entries", type=int, default=10_000, help="JSON schema check timed on at most this many entries"
    )
    parser.add_argument("--repeat", type=int, default=1, help="loads per layout (the best is kept)")
    parser.add_argument("--json-out", help="also write the JSON here")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    manifest = load_latest(OutputDir(args.output))
    if manifest is None:
        raise SystemExit(f"{args.output}: no manifest")
    results = {
        "source_output": args.output,
        "source_entries": len(manifest.shards),
        "runs": [measure(manifest, n, args.validate_entries, args.repeat) for n in args.entries],
    }
    text = json.dumps(results, indent=1)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")


if __name__ == "__main__":
    main(parse_args())
